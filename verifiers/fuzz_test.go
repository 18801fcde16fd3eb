package verifiers_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/mcptoken/caddy-mcp-token/devtools"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// FuzzJWTVerify: whatever the token, verification with a static key
// returns a client error (401/403) or a verified token, never a panic and
// never a technical failure.
func FuzzJWTVerify(f *testing.F) {
	kp := devtools.MustGenerateKey("ES256")
	good := kp.MustToken(devtools.TokenOptions{Issuer: issuer, Audience: []string{audience}, Scopes: []string{"mcp:read"}})
	for _, seed := range []string{good, good + "x", "", ".", "..", "eyJ.eyJ.", "eyJhbGciOiJub25lIn0.e30.", rawToken(map[string]any{"alg": "ES256", "crit": []string{"x"}}, validClaims(), nil),
		rawToken(map[string]any{"alg": "ES256", "kid": 7}, validClaims(), []byte{1, 2}), "a.b.c.d"} {
		f.Add(seed)
	}
	v, err := verifiers.NewJWT(verifiers.JWTConfig{Issuers: []string{issuer}, Audiences: []string{audience},
		Keys: verifiers.NewStaticKey(kp.Public), Algorithms: []string{"ES256"}, ClockSkew: verifiers.DefaultClockSkew})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, token string) {
		tok, err := v.Verify(context.Background(), token)
		if err == nil {
			if tok == nil || tok.Issuer != issuer {
				t.Fatalf("accepted without identity: %+v", tok)
			}
			return
		}
		if st := verifiers.Classify(err).Status; st != http.StatusUnauthorized && st != http.StatusForbidden {
			t.Fatalf("status %d for %q: %v", st, token, err)
		}
		if _, err := v.VerifySignature(context.Background(), token); err != nil && verifiers.Classify(err).Status != http.StatusUnauthorized {
			t.Fatalf("VerifySignature status %d: %v", verifiers.Classify(err).Status, err)
		}
	})
}
