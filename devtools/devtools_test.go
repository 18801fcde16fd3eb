package devtools_test

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcptoken/caddy-mcp-token/devtools"
	"github.com/mcptoken/caddy-mcp-token/jwks"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

var algorithms = []string{"RS256", "PS256", "ES256", "ES384", "ES512", "EdDSA", "HS256", "HS384", "HS512"}

// parse verifies tok with kp's public key (golang-jwt, independent of the
// module's verifiers) and returns its claims.
func parse(t *testing.T, kp *devtools.KeyPair, tok string) jwt.MapClaims {
	t.Helper()
	claims := jwt.MapClaims{}
	_, err := jwt.ParseWithClaims(tok, claims, func(*jwt.Token) (any, error) { return kp.Public, nil },
		jwt.WithValidMethods([]string{kp.Alg}), jwt.WithExpirationRequired())
	if err != nil {
		t.Fatalf("%s token does not verify with its public key: %v", kp.Alg, err)
	}
	return claims
}

// TestTokenRoundTrip: every algorithm mints a token that verifies with
// its own public key and carries the requested claims and header.
func TestTokenRoundTrip(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	for _, alg := range algorithms {
		t.Run(alg, func(t *testing.T) {
			kp, err := devtools.GenerateKey(alg, 0, "")
			if err != nil {
				t.Fatal(err)
			}
			if kp.Kid == "" || kp.Kid != devtools.Thumbprint(kp) {
				t.Fatalf("kid %q, want the thumbprint %q", kp.Kid, devtools.Thumbprint(kp))
			}
			tok := kp.MustToken(devtools.TokenOptions{
				Subject: "alice", Issuer: "https://as.example", Audience: []string{"a", "b"},
				Scopes: []string{"mcp:read", "mcp:write"}, ExpiresIn: 10 * time.Minute,
				Claims: map[string]any{"client_id": "c1"}, Header: map[string]any{"typ": "at+jwt"},
				Now: func() time.Time { return now },
			})
			c := parse(t, kp, tok)
			want := map[string]any{"sub": "alice", "iss": "https://as.example", "scope": "mcp:read mcp:write", "client_id": "c1",
				"exp": float64(now.Add(10 * time.Minute).Unix()), "iat": float64(now.Unix())}
			for k, v := range want {
				if c[k] != v {
					t.Errorf("claim %s = %v, want %v", k, c[k], v)
				}
			}
			if aud, _ := c.GetAudience(); strings.Join(aud, ",") != "a,b" {
				t.Errorf("aud %v", aud)
			}
			header, claims, err := devtools.Decode(tok)
			if err != nil || header["kid"] != kp.Kid || header["typ"] != "at+jwt" || header["alg"] != alg || claims["sub"] != "alice" {
				t.Fatalf("Decode: %v %v %v", header, claims, err)
			}
			// Another key of the same algorithm does not verify it.
			other := devtools.MustGenerateKey(alg)
			if _, err := jwt.Parse(tok, func(*jwt.Token) (any, error) { return other.Public, nil }, jwt.WithValidMethods([]string{alg})); err == nil {
				t.Fatal("a token verified with another key")
			}
		})
	}
}

func TestTokenDefaultsAndExpiry(t *testing.T) {
	kp := devtools.MustGenerateKey("ES256")
	now := time.Now().Truncate(time.Second)
	_, c, _ := devtools.Decode(kp.MustToken(devtools.TokenOptions{Now: func() time.Time { return now }}))
	if c["sub"] != "fastmcp-user" || c["iss"] != "https://fastmcp.example.com" || c["aud"] != nil || c["scope"] != nil ||
		c["exp"] != json.Number(jsonInt(now.Add(time.Hour).Unix())) {
		t.Fatalf("defaults: %v", c)
	}
	_, c, _ = devtools.Decode(kp.MustToken(devtools.TokenOptions{Audience: []string{"one"}, NoExpiry: true}))
	if c["aud"] != "one" || c["exp"] != nil {
		t.Fatalf("one audience is a string, NoExpiry leaves exp out: %v", c)
	}
	expired := kp.MustToken(devtools.TokenOptions{ExpiresIn: -time.Minute})
	if _, err := jwt.Parse(expired, func(*jwt.Token) (any, error) { return kp.Public, nil }); err == nil {
		t.Fatal("a negative ExpiresIn did not mint an expired token")
	}
}

func jsonInt(n int64) string { b, _ := json.Marshal(n); return string(b) }

func TestGenerateKeyRefusals(t *testing.T) {
	for _, alg := range []string{"", "ES1", "HS1", "XX256", "RS1", "RS999", "PS1"} {
		if kp, err := devtools.GenerateKey(alg, 0, ""); err == nil || !strings.Contains(err.Error(), "unsupported algorithm") {
			t.Errorf("GenerateKey(%q) = %v, %v", alg, kp, err)
		}
	}
	if kp, err := devtools.GenerateKey("none", 0, ""); err == nil || !strings.Contains(err.Error(), `"none" is never accepted`) {
		t.Errorf(`GenerateKey("none") = %v, %v`, kp, err)
	}
	if kp, err := devtools.GenerateKey("RS256", 3072, "my-kid"); err != nil || kp.Kid != "my-kid" || kp.Public.(interface{ Size() int }).Size() != 384 {
		t.Fatalf("RS256 3072 bits with a kid: %v", err)
	}
}

// TestPEMRoundTrip: a written private key reads back (ParseSigningKey)
// as a key that signs tokens the original public key verifies, and the
// public PEM is a standard PKIX key.
func TestPEMRoundTrip(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256", "ES384", "ES512", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			kp := devtools.MustGenerateKey(alg)
			priv, err := kp.PrivatePEM()
			if err != nil {
				t.Fatal(err)
			}
			back, err := devtools.ParseSigningKey([]byte(priv), "")
			if err != nil || back.Alg != alg {
				t.Fatalf("ParseSigningKey: %v (alg %v)", err, back)
			}
			parse(t, kp, back.MustToken(devtools.TokenOptions{}))
			pub, err := kp.PublicPEM()
			if err != nil {
				t.Fatal(err)
			}
			block, _ := pem.Decode([]byte(pub))
			if block == nil || block.Type != "PUBLIC KEY" {
				t.Fatalf("public PEM: %q", pub)
			}
			if _, err := x509.ParsePKIXPublicKey(block.Bytes); err != nil {
				t.Fatal(err)
			}
		})
	}
	t.Run("HMAC secret file", func(t *testing.T) {
		back, err := devtools.ParseSigningKey([]byte("a-shared-secret-of-at-least-32-bytes!!\n"), "")
		if err != nil || back.Alg != "HS256" || string(back.Private.([]byte)) != "a-shared-secret-of-at-least-32-bytes!!" {
			t.Fatalf("%+v %v", back, err)
		}
	})
	for _, tc := range []struct{ name, data, alg, want string }{
		{"empty file", "", "", "empty"},
		{"secret for RS256", "secret", "RS256", "cannot sign RS256"},
		{"public key PEM", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", "", "a private key is needed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := devtools.ParseSigningKey([]byte(tc.data), tc.alg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

// TestJWKSDocument: the published JWKS holds exactly the public keys, which
// the module's own JWKS parser accepts and binds to their kid and alg; an
// HMAC key is never published.
func TestJWKSDocument(t *testing.T) {
	rsa, ec, ed := devtools.MustGenerateKey("RS256"), devtools.MustGenerateKey("ES384"), devtools.MustGenerateKey("EdDSA")
	doc, err := devtools.JWKSDocument(rsa, ec, ed)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(doc), `"d"`) || strings.Contains(string(doc), `"p"`) {
		t.Fatalf("private parts in the JWKS: %s", doc)
	}
	set, dropped, err := jwks.ParseSet(doc, false)
	if err != nil || len(dropped) != 0 {
		t.Fatalf("ParseSet: %v, dropped %v", err, dropped)
	}
	for _, kp := range []*devtools.KeyPair{rsa, ec, ed} {
		v, err := verifiers.NewJWT(verifiers.JWTConfig{Keys: set, Algorithms: []string{kp.Alg}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v.Verify(context.Background(), kp.MustToken(devtools.TokenOptions{})); err != nil {
			t.Fatalf("%s token against the JWKS: %v", kp.Alg, err)
		}
	}
	if _, err := devtools.JWKSDocument(devtools.MustGenerateKey("HS256")); err == nil {
		t.Fatal("an HMAC secret was published in a JWKS")
	}
}

// TestJWKSServer: it serves the document, counts hits, rotates keys and
// misbehaves on demand.
func TestJWKSServer(t *testing.T) {
	k1, k2 := devtools.MustGenerateKey("ES256"), devtools.MustGenerateKey("ES256")
	srv := devtools.NewJWKSServer(k1)
	defer srv.Close()
	get := func() (int, string) {
		resp, err := (&http.Client{Timeout: 5 * time.Second}).Get(srv.JWKSURL())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	kids := func(body string) string {
		var doc struct{ Keys []struct{ Kid string } }
		_ = json.Unmarshal([]byte(body), &doc)
		var out []string
		for _, k := range doc.Keys {
			out = append(out, k.Kid)
		}
		return strings.Join(out, ",")
	}
	if code, body := get(); code != 200 || kids(body) != k1.Kid {
		t.Fatalf("initial: %d %s", code, body)
	}
	srv.SetKeys(k1, k2)
	if _, body := get(); kids(body) != k1.Kid+","+k2.Kid {
		t.Fatalf("after SetKeys: %s", body)
	}
	srv.AddRaw(map[string]any{"kty": "oct", "kid": "raw"})
	if _, body := get(); kids(body) != k1.Kid+","+k2.Kid+",raw" {
		t.Fatalf("after AddRaw: %s", body)
	}
	srv.Fail(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusBadGateway) })
	if code, _ := get(); code != http.StatusBadGateway {
		t.Fatalf("Fail: %d", code)
	}
	srv.Fail(nil)
	if code, _ := get(); code != 200 {
		t.Fatalf("after Fail(nil): %d", code)
	}
	if srv.Hits() != 5 {
		t.Fatalf("hits %d, want 5", srv.Hits())
	}
}
