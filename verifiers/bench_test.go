package verifiers_test

import (
	"context"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcptoken/caddy-mcp-token/devtools"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// BenchmarkVerify compares, per algorithm, bare jwt.Parse (the baseline:
// signature and exp only) with this module's full verify path (the Chain
// the handler calls: header rules, key selection, iss/aud, scopes).
func BenchmarkVerify(b *testing.B) {
	for _, alg := range []string{"HS256", "RS256", "ES256", "EdDSA"} {
		kp := devtools.MustGenerateKey(alg)
		tok := kp.MustToken(devtools.TokenOptions{
			Issuer: issuer, Audience: []string{audience}, Scopes: []string{"mcp:read"},
			ExpiresIn: time.Hour,
		})
		b.Run(alg+"/jwt.Parse", func(b *testing.B) {
			keyFunc := func(*jwt.Token) (any, error) { return kp.Public, nil }
			b.ReportAllocs()
			for b.Loop() {
				if _, err := jwt.Parse(tok, keyFunc, jwt.WithValidMethods([]string{alg})); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(alg+"/module", func(b *testing.B) {
			v, err := verifiers.NewJWT(verifiers.JWTConfig{
				Issuers: []string{issuer}, Audiences: []string{audience}, Algorithms: []string{alg},
				Keys: verifiers.NewStaticKey(kp.Public), ClockSkew: verifiers.DefaultClockSkew,
			})
			if err != nil {
				b.Fatal(err)
			}
			chain := &verifiers.Chain{JWT: v, RequiredScopes: []string{"mcp:read"}}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := chain.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
