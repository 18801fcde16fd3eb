package jwks

import (
	"context"
	"crypto"
	"strings"
	"testing"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

func TestStatusAndCurrentKey(t *testing.T) {
	k1, k2 := newKey(t, "RS256", "k1"), newKey(t, "ES256", "k2")
	f := newFaultJWKS(t, "normal", k1, k2)
	u := strings.Replace(f.url(), "http://", "http://user:pw@", 1) + "?key=s3cret"
	c := startCache(t, Options{URL: u})
	rs256, es256 := mustAlg("RS256"), mustAlg("ES256")
	if err := c.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := c.Status()
	if !st.Ready || st.Keys != 2 || strings.Join(st.Kids, ",") != "k1,k2" || st.LastSuccess.IsZero() || st.Stale || st.FailureStreak != 0 {
		t.Fatalf("loaded: %+v", st)
	}
	cases := []struct {
		name string
		alg  *verifiers.Algorithm
		kid  string
		want any
	}{
		{"kid and alg fit", rs256, "k1", k1.Public},
		{"other key", es256, "k2", k2.Public},
		{"alg does not fit the key", es256, "k1", nil},
		{"unknown kid", rs256, "nope", nil},
		{"no kid, one key fits", rs256, "", k1.Public},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := c.CurrentKey(tc.alg, tc.kid)
			if ok != (tc.want != nil) || (ok && !keyEqual(got, tc.want)) {
				t.Fatalf("CurrentKey(%s, %q) = %v, %v", tc.alg.Name, tc.kid, got, ok)
			}
		})
	}
	hits := f.hits.Load()
	f.set("500", k2)
	_ = c.Refresh(context.Background())
	st = c.Status()
	if !st.Stale || st.FailureStreak != 1 || !strings.Contains(st.LastError, "status 500") {
		t.Fatalf("after a failed fetch: %+v", st)
	}
	for _, secret := range []string{"pw", "s3cret"} {
		if strings.Contains(st.Source+st.LastError, secret) {
			t.Fatalf("the status shows %q: %+v", secret, st)
		}
	}
	f.set("normal")
	_ = c.Refresh(context.Background())
	if _, ok := c.CurrentKey(rs256, "k1"); ok {
		t.Fatal("a key dropped from the set is still current")
	}
	if f.hits.Load() != hits+2 {
		t.Fatal("CurrentKey fetched")
	}
	empty := startCache(t, Options{URL: newFaultJWKS(t, "hung").url()})
	if _, ok := empty.CurrentKey(rs256, "k1"); ok || empty.Status().Ready {
		t.Fatal("a cache without keys has a current key")
	}
}

func keyEqual(a, b any) bool {
	e, ok := a.(interface{ Equal(x crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

func mustAlg(name string) *verifiers.Algorithm {
	a, err := verifiers.LookupAlgorithm(name)
	if err != nil {
		panic(err)
	}
	return a
}
