package verifiers_test

import (
	"context"
	"errors"
	"testing"

	"github.com/mcptoken/caddy-mcp-token/devtools"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

func TestByIssuer(t *testing.T) {
	keyA, keyB := devtools.MustGenerateKey("RS256"), devtools.MustGenerateKey("ES256")
	mk := func(iss string, key any, aud string) *verifiers.JWT {
		v, err := verifiers.NewJWT(verifiers.JWTConfig{Issuers: []string{iss}, Audiences: []string{aud}, Keys: verifiers.NewStaticKey(key), Now: fixedNow})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	b, err := verifiers.NewByIssuer([]*verifiers.JWT{mk("https://a", keyA.Public, "api-a"), mk("https://b", keyB.Public, "api-b")})
	if err != nil {
		t.Fatal(err)
	}
	tok := func(kp *devtools.KeyPair, iss, aud string) string {
		return kp.MustToken(devtools.TokenOptions{Issuer: iss, Audience: []string{aud}, Now: fixedNow})
	}
	cases := []struct {
		name  string
		token string
		want  error
	}{
		{"A's token", tok(keyA, "https://a", "api-a"), nil},
		{"B's token", tok(keyB, "https://b", "api-b"), nil},
		{"claims issuer A, signed with B's key", tok(keyB, "https://a", "api-a"), verifiers.ErrUnsupportedAlgorithm},
		{"claims issuer B, signed with A's key", tok(keyA, "https://b", "api-b"), verifiers.ErrUnsupportedAlgorithm},
		{"A's token with B's audience", tok(keyA, "https://a", "api-b"), verifiers.ErrBadAudience},
		{"unknown issuer", tok(keyA, "https://c", "api-a"), verifiers.ErrUnknownIssuer},
		{"not a JWT", "opaque", verifiers.ErrMalformed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := b.Verify(context.Background(), tc.token)
			if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("want %v, got %v", tc.want, err)
			}
		})
	}
	// Same key family: A's RSA key cannot stand in for B's RSA key either.
	keyC := devtools.MustGenerateKey("RS256")
	b2, _ := verifiers.NewByIssuer([]*verifiers.JWT{mk("https://a", keyA.Public, "api"), mk("https://c", keyC.Public, "api")})
	if _, err := b2.Verify(context.Background(), tok(keyC, "https://a", "api")); !errors.Is(err, verifiers.ErrBadSignature) {
		t.Fatalf("issuer A's token signed with issuer C's RSA key: %v", err)
	}
	if _, err := verifiers.NewByIssuer([]*verifiers.JWT{mk("https://a", keyA.Public, "x"), mk("https://a", keyC.Public, "y")}); err == nil {
		t.Fatal("duplicate issuer accepted")
	}
}
