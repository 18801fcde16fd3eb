package mcptoken

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcptoken/caddy-mcp-token/internal/testpeers"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// dpopCaddy starts oidc-provider (DPoP-bound JWT access tokens for the
// MCP endpoint), an MCP backend, and Caddy with extra mcp_token options.
func dpopCaddy(t *testing.T, extra string) (op *testpeers.OIDC, ran func() int) {
	t.Helper()
	resource := e2eBase + "/mcp"
	op = testpeers.StartOIDCWith(t, testpeers.OIDCOptions{JWTResources: []string{resource}})
	rec, backend := startBackend(t)
	startCaddy(t, caddyGlobal+fmt.Sprintf(`
http://localhost:9080 {
	mcp_token /mcp* {
		issuer %[1]s
		jwks_uri %[1]s/jwks
		audience %[2]s
		token_type at+jwt
		required_scopes mcp:read
		%[4]s
	}
	handle /mcp* {
		reverse_proxy %[3]s
	}
}
`, op.Issuer, resource, backend, extra), "caddyfile")
	remember(testpeers.ClientSecret)
	return op, func() int { return rec.Ran("") }
}

// ecKeyFromJWK is the client's private key, from the JWK the Node client
// exported.
func ecKeyFromJWK(t *testing.T, jwk map[string]any) *ecdsa.PrivateKey {
	t.Helper()
	num := func(name string) *big.Int {
		s, _ := jwk[name].(string)
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil || len(b) == 0 {
			t.Fatalf("client key: %s: %v", name, err)
		}
		return new(big.Int).SetBytes(b)
	}
	return &ecdsa.PrivateKey{PublicKey: ecdsa.PublicKey{Curve: elliptic.P256(), X: num("x"), Y: num("y")}, D: num("d")}
}

// signProof signs a proof with key for method, url, token and iat.
func signProof(t *testing.T, key *ecdsa.PrivateKey, method, url, token string, iat time.Time) string {
	t.Helper()
	enc := base64.RawURLEncoding.EncodeToString
	ath := sha256.Sum256([]byte(token))
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"jti": fmt.Sprintf("go-%d", time.Now().UnixNano()), "htm": method, "htu": url, "iat": iat.Unix(), "ath": enc(ath[:]),
	})
	tok.Header["typ"] = "dpop+jwt"
	tok.Header["jwk"] = map[string]string{"kty": "EC", "crv": "P-256",
		"x": enc(key.X.FillBytes(make([]byte, 32))), "y": enc(key.Y.FillBytes(make([]byte, 32)))}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestE2EDPoP: oidc-provider issues a DPoP-bound token to a real DPoP
// client (oauth4webapi), which calls an MCP backend through Caddy with a
// fresh proof; the same token is then refused with a replayed proof, a
// proof for another URL or method, a too old one, one by another key, none,
// and as a bearer token; none of these reaches the backend.
func TestE2EDPoP(t *testing.T) {
	op, ran := dpopCaddy(t, "dpop required")
	resource := e2eBase + "/mcp"
	call := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"bound by dpop"}}}`
	res := testpeers.RunDPoPClient(t, op.Issuer, resource, "mcp:read", call)
	remember(res.Token)
	if res.Error != "" || len(res.Statuses) != 1 || res.Statuses[0] != 200 || !strings.Contains(res.Body, "bound by dpop") || res.NonceRetry {
		t.Fatalf("oauth4webapi through Caddy: %+v", res)
	}
	if n := ran(); n != 1 {
		t.Fatalf("backend ran %d tools, want 1", n)
	}
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(res.Token, claims); err != nil {
		t.Fatal(err)
	}
	jkt, _, err := verifiers.Confirmation(&verifiers.AccessToken{Claims: claims})
	if err != nil || jkt == "" {
		t.Fatalf("the provider's token carries no cnf.jkt: %v %v", claims["cnf"], err)
	}

	key := ecKeyFromJWK(t, res.Key)
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	cases := []struct {
		name, scheme, proof string
		code                string
	}{
		{"replayed proof", "DPoP", res.Proofs[0], "invalid_dpop_proof"},
		{"proof for another URL", "DPoP", signProof(t, key, "POST", e2eBase+"/other", res.Token, now), "invalid_dpop_proof"},
		{"proof for another method", "DPoP", signProof(t, key, "GET", resource, res.Token, now), "invalid_dpop_proof"},
		{"proof too old", "DPoP", signProof(t, key, "POST", resource, res.Token, now.Add(-6*time.Minute)), "invalid_dpop_proof"},
		{"proof by another key", "DPoP", signProof(t, other, "POST", resource, res.Token, now), "invalid_dpop_proof"},
		{"no proof", "DPoP", "", "invalid_dpop_proof"},
		{"token as bearer", "Bearer", "", "invalid_token"},
		{"token as bearer with a valid proof", "Bearer", signProof(t, key, "POST", resource, res.Token, now), "invalid_token"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{"Authorization": tc.scheme + " " + res.Token}
			if tc.proof != "" {
				h["DPoP"] = tc.proof
			}
			resp, body := postWith(t, resource, "", call, h)
			www := resp.Header.Get("WWW-Authenticate")
			if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(www, "DPoP ") || !strings.Contains(www, `error="`+tc.code+`"`) {
				t.Fatalf("%d %q %s", resp.StatusCode, www, body)
			}
		})
	}
	if n := ran(); n != 1 {
		t.Fatalf("refused requests reached the backend: %d tool runs", n)
	}
	// The same token with a fresh proof by its key still passes: the
	// refusals above were for the reason each case names.
	resp, body := postWith(t, resource, "", call, map[string]string{
		"Authorization": "DPoP " + res.Token, "DPoP": signProof(t, key, "POST", resource, res.Token, now)})
	if resp.StatusCode != 200 || !strings.Contains(body, "bound by dpop") || ran() != 2 {
		t.Fatalf("fresh Go proof: %d %s", resp.StatusCode, body)
	}
}

// TestE2EDPoPNonce: with dpop_nonce, oauth4webapi's first request gets
// use_dpop_nonce and a DPoP-Nonce, and its retry with the nonce passes.
func TestE2EDPoPNonce(t *testing.T) {
	t.Setenv("MCP_E2E_DPOP_NONCE_KEY", "an e2e dpop nonce key, 32 bytes+")
	op, ran := dpopCaddy(t, "dpop_nonce {env.MCP_E2E_DPOP_NONCE_KEY}")
	res := testpeers.RunDPoPClient(t, op.Issuer, e2eBase+"/mcp", "mcp:read", toolsList)
	remember(res.Token)
	if res.Error != "" || !res.NonceRetry || fmt.Sprint(res.Statuses) != "[401 200]" || !strings.Contains(res.Body, "echo") {
		t.Fatalf("nonce round trip: %+v", res)
	}
	if n := ran(); n != 0 {
		t.Fatalf("tools/list ran %d tools", n)
	}
}
