package jwks

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/mcptoken/caddy-mcp-token/devtools"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// TestRefreshKeepsUnchangedKeyObjects: a refresh that brings the same keys
// keeps their objects (so a token-cache hit is an identity check that
// allocates nothing), while a key changed behind its kid, or dropped,
// still invalidates the cached tokens it verified at once.
func TestRefreshKeepsUnchangedKeyObjects(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256", "EdDSA"} {
		t.Run(alg, func(t *testing.T) {
			k1, k2 := newKey(t, alg, "k1"), newKey(t, alg, "k2")
			srv := devtools.NewJWKSServer(k1, k2)
			defer srv.Close()
			c := newCache(t, srv, Options{})
			waitReady(t, c)
			v := verifier(t, c, alg)
			a, _ := verifiers.LookupAlgorithm(alg)
			tokens, err := verifiers.NewTokenCache(10, time.Hour, nil)
			if err != nil {
				t.Fatal(err)
			}
			ctx := context.Background()
			cached := map[string]string{}
			for _, kp := range []*devtools.KeyPair{k1, k2} {
				tok := mint(kp)
				at, err := v.Verify(ctx, tok)
				if err != nil {
					t.Fatal(err)
				}
				tokens.Put(tok, verifiers.KindJWT, at, nil)
				cached[kp.Kid] = tok
			}
			before1, _ := c.CurrentKey(a, "k1")

			// The same document again: same objects, hits that allocate nothing.
			if err := c.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			after1, _ := c.CurrentKey(a, "k1")
			if !sameObjectForTest(before1, after1) {
				t.Fatal("an unchanged key got a new object on refresh")
			}
			if tokens.Get(cached["k1"]) == nil {
				t.Fatal("a refresh that changed nothing invalidated the entry")
			}
			if n := testing.AllocsPerRun(100, func() { tokens.Get(cached["k1"]) }); n != 0 {
				t.Fatalf("a hit allocates %v times, want 0", n)
			}

			// k2 replaced behind its kid; k1 unchanged.
			k2b := newKey(t, alg, "k2")
			srv.SetKeys(k1, k2b)
			if err := c.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			if tokens.Get(cached["k2"]) != nil {
				t.Fatal("a changed key behind kid k2 left its token cached")
			}
			if tokens.Get(cached["k1"]) == nil {
				t.Fatal("k1 unchanged, yet its entry went")
			}

			// k1 dropped.
			srv.SetKeys(k2b)
			if err := c.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			if tokens.Get(cached["k1"]) != nil {
				t.Fatal("a dropped kid left its token cached")
			}
		})
	}
}

// sameObjectForTest: the same pointer, or for a slice key (Ed25519) the
// same bytes in memory.
func sameObjectForTest(a, b any) bool {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	return a != nil && va.Type() == vb.Type() && va.Pointer() == vb.Pointer()
}
