package introspection

import (
	"context"
	"testing"
	"time"

	"github.com/mcptoken/caddy-mcp-token/devtools"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// BenchmarkVerify compares an introspection cache hit with verifying a JWT
// (RS256 and ES256), same run.
func BenchmarkVerify(b *testing.B) {
	ctx := context.Background()
	b.Run("introspection/cache-hit", func(b *testing.B) {
		e := newEndpointB(b)
		c, err := New(Options{URL: e.URL, ClientID: "gateway", ClientSecret: "s"})
		if err != nil {
			b.Fatal(err)
		}
		v, _ := c.Verifier(Rules{Issuers: []string{"https://as.example"}, Audiences: []string{"mcp-api"}, RequiredScopes: []string{"mcp:read"}})
		tok := "bZ2mXuZWrHlOYegJuMGuo12o4_FW3mGcNNijt9xWEdR" // oidc-provider's opaque token shape
		if _, err := v.Verify(ctx, tok); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := v.Verify(ctx, tok); err != nil {
				b.Fatal(err)
			}
		}
		if c.Stats().Calls != 1 {
			b.Fatalf("%d calls", c.Stats().Calls)
		}
	})
	for _, alg := range []string{"RS256", "ES256"} {
		kp := devtools.MustGenerateKey(alg)
		tok := kp.MustToken(devtools.TokenOptions{Issuer: "https://as.example", Audience: []string{"mcp-api"}, Scopes: []string{"mcp:read"}, ExpiresIn: time.Hour})
		v, err := verifiers.NewJWT(verifiers.JWTConfig{Issuers: []string{"https://as.example"}, Audiences: []string{"mcp-api"},
			Keys: verifiers.NewStaticKey(kp.Public), Algorithms: []string{alg}, RequiredScopes: []string{"mcp:read"}})
		if err != nil {
			b.Fatal(err)
		}
		b.Run("jwt/"+alg, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := v.Verify(ctx, tok); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
