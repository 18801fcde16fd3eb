package verifiers_test

import (
	"context"
	"strings"
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

// BenchmarkTokenCacheHit is a verified-token cache hit (a 700-byte token,
// a static key): one goroutine, and GOMAXPROCS goroutines hitting the
// same cache as concurrent requests do.
func BenchmarkTokenCacheHit(b *testing.B) {
	kp := devtools.MustGenerateKey("ES256")
	tok := kp.MustToken(devtools.TokenOptions{Issuer: issuer, Audience: []string{audience}, ExpiresIn: time.Hour,
		Claims: map[string]any{"pad": strings.Repeat("x", 300)}})
	if len(tok) < 600 || len(tok) > 800 {
		b.Fatalf("token of %d bytes", len(tok))
	}
	v, err := verifiers.NewJWT(verifiers.JWTConfig{Issuers: []string{issuer}, Audiences: []string{audience},
		Algorithms: []string{"ES256"}, Keys: verifiers.NewStaticKey(kp.Public)})
	if err != nil {
		b.Fatal(err)
	}
	cache, err := verifiers.NewTokenCache(verifiers.DefaultTokenCacheSize, verifiers.DefaultTokenCacheTTL, nil)
	if err != nil {
		b.Fatal(err)
	}
	at, err := v.Verify(context.Background(), tok)
	if err != nil {
		b.Fatal(err)
	}
	cache.Put(tok, verifiers.KindJWT, at, nil)
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if cache.Get(tok) == nil {
				b.Fatal("miss")
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if cache.Get(tok) == nil {
					b.Error("miss")
					return
				}
			}
		})
	})
}
