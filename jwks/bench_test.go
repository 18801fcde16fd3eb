package jwks

import (
	"context"
	"testing"
	"time"

	"github.com/mcptoken/caddy-mcp-token/devtools"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// BenchmarkKeySource compares verifying with a key from a loaded JWKS
// cache against the same key configured statically, same algorithm.
func BenchmarkKeySource(b *testing.B) {
	for _, alg := range []string{"RS256", "ES256"} {
		kp, err := devtools.GenerateKey(alg, 0, "bench")
		if err != nil {
			b.Fatal(err)
		}
		// A realistic set: the signing key among a few others.
		others := []*devtools.KeyPair{kp}
		for i := 0; i < 3; i++ {
			o, _ := devtools.GenerateKey(alg, 0, "")
			others = append(others, o)
		}
		srv := devtools.NewJWKSServer(others...)
		cache, err := New(Options{URL: srv.JWKSURL()})
		if err != nil {
			b.Fatal(err)
		}
		for !cache.Ready() {
			time.Sleep(time.Millisecond)
		}
		tok := kp.MustToken(devtools.TokenOptions{Issuer: testIssuer, Audience: []string{"api"}})
		sources := []struct {
			name string
			keys verifiers.KeySource
		}{
			{"static", verifiers.NewStaticKey(kp.Public)},
			{"jwks", cache},
		}
		for _, src := range sources {
			v, err := verifiers.NewJWT(verifiers.JWTConfig{Keys: src.keys, Issuers: []string{testIssuer},
				Audiences: []string{"api"}, Algorithms: []string{alg}, ClockSkew: verifiers.DefaultClockSkew})
			if err != nil {
				b.Fatal(err)
			}
			b.Run(alg+"/"+src.name, func(b *testing.B) {
				ctx := context.Background()
				b.ReportAllocs()
				for b.Loop() {
					if _, err := v.Verify(ctx, tok); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
		cache.Close()
		srv.Close()
	}
}
