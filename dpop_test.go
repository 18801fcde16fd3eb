package mcptoken

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// dpopChallenge is the DPoP challenge after a Bearer one with the default
// algorithms.
const dpopChallenge = `, DPoP algs="ES256 ES384 ES512 EdDSA PS256 PS384 PS512 RS256"`

// dpopClient holds a proof key and signs proofs with it.
type dpopClient struct {
	key *ecdsa.PrivateKey
	jwk map[string]any
	jkt string
	n   int
}

func newDPoPClient(t testing.TB) *dpopClient {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	jwk := map[string]any{"kty": "EC", "crv": "P-256", "x": enc(k.X.FillBytes(make([]byte, 32))), "y": enc(k.Y.FillBytes(make([]byte, 32)))}
	raw, _ := json.Marshal(jwk)
	jkt, err := verifiers.JWKThumbprint(raw)
	if err != nil {
		t.Fatal(err)
	}
	return &dpopClient{key: k, jwk: jwk, jkt: jkt}
}

// proof signs a fresh proof for method, url and token, with a server
// nonce when one is given.
func (c *dpopClient) proof(t *testing.T, method, url, token string, nonce ...string) string {
	t.Helper()
	c.n++
	ath := sha256.Sum256([]byte(token))
	claims := jwt.MapClaims{
		"jti": "jti-" + string(rune('a'+c.n%26)) + time.Now().Format(time.RFC3339Nano), "htm": method, "htu": url,
		"iat": time.Now().Unix(), "ath": base64.RawURLEncoding.EncodeToString(ath[:]),
	}
	if len(nonce) > 0 {
		claims["nonce"] = nonce[0]
	}
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tok.Header["typ"], tok.Header["jwk"] = "dpop+jwt", c.jwk
	s, err := tok.SignedString(c.key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

var dpopSecret = []byte("0123456789abcdef0123456789abcdef")

// dpopToken is an HS256 access token, bound to jkt when it is not empty.
func dpopToken(t testing.TB, jkt string) string {
	t.Helper()
	claims := jwt.MapClaims{"sub": "s1", "client_id": "c1", "exp": time.Now().Add(time.Hour).Unix()}
	if jkt != "" {
		claims["cnf"] = map[string]any{"jkt": jkt}
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(dpopSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// newDPoPCore is a core with JWT verification, the token cache and DPoP
// in mode.
func newDPoPCore(t *testing.T, mode string) *core {
	return newDPoPCoreWith(t, &DPoPConfig{Mode: mode, Algorithms: []string{"ES256"}})
}

func newDPoPCoreWith(t testing.TB, dc *DPoPConfig) *core {
	t.Helper()
	v, err := verifiers.NewJWT(verifiers.JWTConfig{Keys: verifiers.NewStaticKey(dpopSecret), Algorithms: []string{"HS256"}})
	if err != nil {
		t.Fatal(err)
	}
	tokens, err := verifiers.NewTokenCache(100, time.Minute, nil)
	if err != nil {
		t.Fatal(err)
	}
	c := &core{verifier: v, tokens: tokens, logger: zap.NewNop(), maxBody: DefaultMaxBody, noMetadata: true}
	if err := c.provisionDPoP(&Config{DPoP: dc}, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.release() })
	return c
}

// TestDPoPGate: the sender-constraint step of the request path.
func TestDPoPGate(t *testing.T) {
	const url = "http://example.com/mcp"
	client, thief := newDPoPClient(t), newDPoPClient(t)
	bound, plain := dpopToken(t, client.jkt), dpopToken(t, "")
	fresh := func(tok string) func(*testing.T) []string {
		return func(t *testing.T) []string { return []string{client.proof(t, "POST", url, tok)} }
	}
	allowedChallenge := `Bearer, DPoP algs="ES256"`
	tests := []struct {
		name, mode, auth string
		proofs           func(*testing.T) []string
		status           int
		challenge        string
	}{
		{name: "DPoP token with a fresh proof", mode: DPoPAllowed, auth: "DPoP " + bound, proofs: fresh(bound), status: 200},
		{name: "bearer token in allowed mode", mode: DPoPAllowed, auth: "Bearer " + plain, status: 200},
		{name: "no credentials in allowed mode", mode: DPoPAllowed, status: 401, challenge: allowedChallenge},
		{name: "no credentials in required mode", mode: DPoPRequired, status: 401, challenge: `DPoP algs="ES256"`},
		{name: "bound token presented as bearer", mode: DPoPAllowed, auth: "Bearer " + bound, status: 401,
			challenge: `Bearer error="invalid_token", error_description="Sender-constrained token required with its proof", DPoP algs="ES256"`},
		{name: "bound token as bearer with dpop off", mode: DPoPOff, auth: "Bearer " + bound, status: 401,
			challenge: `Bearer error="invalid_token", error_description="Sender-constrained token required with its proof"`},
		{name: "DPoP scheme with dpop off", mode: DPoPOff, auth: "DPoP " + bound, proofs: fresh(bound), status: 401, challenge: "Bearer"},
		{name: "bearer token in required mode", mode: DPoPRequired, auth: "Bearer " + plain, status: 401,
			challenge: `DPoP algs="ES256", error="invalid_token", error_description="Sender-constrained token required with its proof"`},
		{name: "DPoP scheme with an unbound token", mode: DPoPAllowed, auth: "DPoP " + plain, proofs: fresh(plain), status: 401,
			challenge: `Bearer, DPoP algs="ES256", error="invalid_token", error_description="Token is not bound to a DPoP key"`},
		{name: "no proof", mode: DPoPAllowed, auth: "DPoP " + bound, status: 401,
			challenge: `Bearer, DPoP algs="ES256", error="invalid_dpop_proof", error_description="Invalid DPoP proof"`},
		{name: "proof for another URL", mode: DPoPAllowed, auth: "DPoP " + bound, status: 401,
			proofs: func(t *testing.T) []string {
				return []string{client.proof(t, "POST", "http://example.com/other", bound)}
			},
			challenge: `Bearer, DPoP algs="ES256", error="invalid_dpop_proof", error_description="Invalid DPoP proof"`},
		{name: "proof for another method", mode: DPoPAllowed, auth: "DPoP " + bound, status: 401,
			proofs:    func(t *testing.T) []string { return []string{client.proof(t, "GET", url, bound)} },
			challenge: `Bearer, DPoP algs="ES256", error="invalid_dpop_proof", error_description="Invalid DPoP proof"`},
		{name: "proof by another key", mode: DPoPAllowed, auth: "DPoP " + bound, status: 401,
			proofs:    func(t *testing.T) []string { return []string{thief.proof(t, "POST", url, bound)} },
			challenge: `Bearer, DPoP algs="ES256", error="invalid_dpop_proof", error_description="Invalid DPoP proof"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newDPoPCore(t, tc.mode)
			h := &Handler{module{core: c}}
			r := newRequest()
			r.Host = "example.com"
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			if tc.proofs != nil {
				r.Header["Dpop"] = tc.proofs(t)
			}
			w := httptest.NewRecorder()
			next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				if r.Header.Get("Authorization") != "" || r.Header.Get("DPoP") != "" {
					t.Error("credentials reached next")
				}
				w.WriteHeader(200)
				return nil
			})
			if err := h.ServeHTTP(w, r, next); err != nil {
				t.Fatal(err)
			}
			if w.Code != tc.status || w.Header().Get("WWW-Authenticate") != tc.challenge {
				t.Fatalf("got %d %q, want %d %q", w.Code, w.Header().Get("WWW-Authenticate"), tc.status, tc.challenge)
			}
		})
	}
}

// TestDPoPGateEveryRequest: the token cache keeps the token, never the
// proof: a cached token needs a fresh proof on every request, and a proof
// is accepted once.
func TestDPoPGateEveryRequest(t *testing.T) {
	const url = "http://example.com/mcp"
	c := newDPoPCore(t, DPoPAllowed)
	client := newDPoPClient(t)
	token := dpopToken(t, client.jkt)
	send := func(proof string) outcome {
		r := newRequest("DPoP " + token)
		r.Host = "example.com"
		if proof != "" {
			r.Header.Set("DPoP", proof)
		}
		return c.authenticate(r, true)
	}
	first := client.proof(t, "POST", url, token)
	if out := send(first); out.err != nil || out.cache != cacheMiss {
		t.Fatalf("first request: %v (cache %d)", out.err, out.cache)
	}
	if out := send(client.proof(t, "POST", url, token)); out.err != nil || out.cache != cacheHit {
		t.Fatalf("second request, fresh proof: %v (cache %d)", out.err, out.cache)
	}
	if out := send(""); verifiers.Classify(out.err).Code != "invalid_dpop_proof" || out.cache != cacheHit {
		t.Fatalf("cached token without a proof: %v (cache %d)", out.err, out.cache)
	}
	if out := send(first); !strings.Contains(out.err.Error(), "replayed") {
		t.Fatalf("replayed proof: %v", out.err)
	}
}

// TestDPoPCaddyfile: dpop, dpop_algorithms and dpop_window parsed and
// checked at adapt time.
func TestDPoPCaddyfile(t *testing.T) {
	tests := []struct {
		name, input string
		want        *DPoPConfig
		err         string
	}{
		{"default: no dpop block", "mcp_token {\n hmac_secret " + string(dpopSecret) + "\n}", nil, ""},
		{"required with algorithms and window", "mcp_token {\n hmac_secret " + string(dpopSecret) + "\n dpop required\n dpop_algorithms ES256 EdDSA\n dpop_window 2m\n}",
			&DPoPConfig{Mode: "required", Algorithms: []string{"ES256", "EdDSA"}, Window: 120_000_000_000}, ""},
		{"off", "mcp_token {\n hmac_secret " + string(dpopSecret) + "\n dpop off\n}", &DPoPConfig{Mode: "off"}, ""},
		{"unknown mode", "mcp_token {\n dpop maybe\n}", nil, `mode "maybe"`},
		{"symmetric algorithm", "mcp_token {\n dpop_algorithms HS256\n}", nil, `"HS256"`},
		{"window over an hour", "mcp_token {\n dpop_window 2h\n}", nil, "dpop_window"},
		{"dpop without its argument", "mcp_token {\n dpop\n}", nil, "argument"},
		{"nonce key and lifetime", "mcp_token {\n hmac_secret " + string(dpopSecret) + "\n dpop_nonce {env.K} 2m\n}",
			&DPoPConfig{NonceKey: "{env.K}", NonceLifetime: 120_000_000_000}, ""},
		{"short nonce key", "mcp_token {\n dpop_nonce short\n}", nil, "at least 32 bytes"},
		{"nonce lifetime over an hour", "mcp_token {\n dpop_nonce {env.K} 2h\n}", nil, "up to 1h"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			err := c.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(c.DPoP)
			want, _ := json.Marshal(tc.want)
			if string(got) != string(want) {
				t.Fatalf("dpop = %s, want %s", got, want)
			}
		})
	}
}

// TestDPoPMetadata: RFC 9449 §5.1 fields in the protected-resource
// metadata, by mode.
func TestDPoPMetadata(t *testing.T) {
	tests := []struct {
		name     string
		dpop     *DPoPConfig
		algs     any
		required any
	}{
		{"default (allowed)", nil, []any{"ES256", "ES384", "ES512", "EdDSA", "PS256", "PS384", "PS512", "RS256"}, nil},
		{"required, configured algorithms", &DPoPConfig{Mode: "required", Algorithms: []string{"EdDSA"}}, []any{"EdDSA"}, true},
		{"off", &DPoPConfig{Mode: "off"}, nil, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{DPoP: tc.dpop}
			pr := cfg.metadata()
			raw, _ := json.Marshal(pr.document(httptest.NewRequest("GET", "https://mcp.example.com"+WellKnownPath+"/mcp", nil)))
			var doc map[string]any
			_ = json.Unmarshal(raw, &doc)
			got, _ := json.Marshal([]any{doc["dpop_signing_alg_values_supported"], doc["dpop_bound_access_tokens_required"]})
			want, _ := json.Marshal([]any{tc.algs, tc.required})
			if string(got) != string(want) {
				t.Fatalf("metadata %s, want %s", got, want)
			}
		})
	}
}

// TestDPoPNonceRoundTrip: with dpop_nonce, a proof without a nonce gets
// use_dpop_nonce and a DPoP-Nonce; a proof carrying it passes, also at
// another instance holding the same key.
func TestDPoPNonceRoundTrip(t *testing.T) {
	const url = "http://example.com/mcp"
	dc := &DPoPConfig{Algorithms: []string{"ES256"}, NonceKey: "{env.MCP_DPOP_TEST_NONCE_KEY}"}
	t.Setenv("MCP_DPOP_TEST_NONCE_KEY", "a nonce key shared by instances!")
	first, second := newDPoPCoreWith(t, dc), newDPoPCoreWith(t, dc)
	client := newDPoPClient(t)
	token := dpopToken(t, client.jkt)
	send := func(c *core, proof string) *httptest.ResponseRecorder {
		r := newRequest("DPoP " + token)
		r.Host = "example.com"
		r.Header.Set("DPoP", proof)
		w := httptest.NewRecorder()
		next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { w.WriteHeader(200); return nil })
		if err := (&Handler{module{core: c}}).ServeHTTP(w, r, next); err != nil {
			t.Fatal(err)
		}
		return w
	}
	w := send(first, client.proof(t, "POST", url, token))
	nonce := w.Header().Get("DPoP-Nonce")
	want := `Bearer, DPoP algs="ES256", error="use_dpop_nonce", error_description="Resource server requires nonce in DPoP proof"`
	if w.Code != 401 || nonce == "" || w.Header().Get("WWW-Authenticate") != want {
		t.Fatalf("no nonce: %d %q nonce %q", w.Code, w.Header().Get("WWW-Authenticate"), nonce)
	}
	if w := send(first, client.proof(t, "POST", url, token, nonce)); w.Code != 200 {
		t.Fatalf("with the nonce: %d %q", w.Code, w.Header().Get("WWW-Authenticate"))
	}
	if w := send(second, client.proof(t, "POST", url, token, nonce)); w.Code != 200 {
		t.Fatalf("with the nonce at another instance: %d %q", w.Code, w.Header().Get("WWW-Authenticate"))
	}
	if w := send(first, client.proof(t, "POST", url, token, "forged"+nonce[6:])); w.Code != 401 || w.Header().Get("DPoP-Nonce") == "" {
		t.Fatalf("forged nonce: %d", w.Code)
	}
}

// BenchmarkDPoPGate: the added cost of a proof per request on the gate's
// hot path (authenticate with a cached token): Bearer (baseline) vs DPoP
// with an ES256 or EdDSA proof and the memory replay cache.
func BenchmarkDPoPGate(b *testing.B) {
	const url = "http://example.com/mcp"
	t := b
	c := newDPoPCoreWith(t, &DPoPConfig{Algorithms: []string{"ES256", "EdDSA"}, ReplayCacheSize: 1 << 20})
	client := newDPoPClient(t)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	edJWK := map[string]any{"kty": "OKP", "crv": "Ed25519", "x": base64.RawURLEncoding.EncodeToString(edPub)}
	raw, _ := json.Marshal(edJWK)
	edJKT, _ := verifiers.JWKThumbprint(raw)
	run := func(b *testing.B, auth string, proofs []string) {
		r := newRequest()
		r.Host = "example.com"
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			r.Header.Set("Authorization", auth)
			if proofs != nil {
				r.Header.Set("DPoP", proofs[i%len(proofs)])
			}
			if out := c.authenticate(r, false); out.err != nil && i < len(proofs) {
				b.Fatal(out.err)
			}
		}
	}
	sign := func(alg jwt.SigningMethod, key any, jwk map[string]any, token string, n int) []string {
		ath := sha256.Sum256([]byte(token))
		out := make([]string, n)
		for i := range out {
			tok := jwt.NewWithClaims(alg, jwt.MapClaims{"jti": fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), i), "htm": "POST", "htu": url,
				"iat": time.Now().Unix(), "ath": base64.RawURLEncoding.EncodeToString(ath[:])})
			tok.Header["typ"], tok.Header["jwk"] = "dpop+jwt", jwk
			out[i], _ = tok.SignedString(key)
		}
		return out
	}
	plain := dpopToken(t, "")
	b.Run("bearer", func(b *testing.B) { run(b, "Bearer "+plain, nil) })
	esToken, edToken := dpopToken(t, client.jkt), dpopToken(t, edJKT)
	b.Run("dpop-ES256", func(b *testing.B) {
		run(b, "DPoP "+esToken, sign(jwt.SigningMethodES256, client.key, client.jwk, esToken, max(b.N, 1)))
	})
	b.Run("dpop-EdDSA", func(b *testing.B) {
		run(b, "DPoP "+edToken, sign(jwt.SigningMethodEdDSA, edPriv, edJWK, edToken, max(b.N, 1)))
	})
}
