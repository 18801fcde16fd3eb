package verifiers_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

func adminHierarchy(t *testing.T) *verifiers.ScopeHierarchy {
	t.Helper()
	h := new(verifiers.ScopeHierarchy)
	if err := h.Add("mcp:admin", "mcp:write"); err != nil {
		t.Fatal(err)
	}
	if err := h.Add("mcp:write", "mcp:read"); err != nil {
		t.Fatal(err)
	}
	return h
}

func TestScopeHierarchyTransitive(t *testing.T) {
	h := adminHierarchy(t)
	cases := []struct {
		name  string
		have  []string
		want  []string
		added bool
	}{
		{"admin implies write and read", []string{"mcp:admin"}, []string{"mcp:admin", "mcp:read", "mcp:write"}, true},
		{"write implies read", []string{"mcp:write"}, []string{"mcp:read", "mcp:write"}, true},
		{"read implies nothing", []string{"mcp:read"}, []string{"mcp:read"}, false},
		{"no repeats", []string{"mcp:read", "mcp:admin"}, []string{"mcp:admin", "mcp:read", "mcp:write"}, true},
		{"unrelated", []string{"other"}, []string{"other"}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := h.Expand(tc.have)
			sorted := slices.Sorted(slices.Values(got))
			if !slices.Equal(sorted, tc.want) {
				t.Fatalf("Expand(%v) = %v, want %v", tc.have, got, tc.want)
			}
			if !tc.added && &got[0] != &tc.have[0] {
				t.Fatal("nothing added, but the slice was copied")
			}
		})
	}
}

func TestScopeHierarchyCycles(t *testing.T) {
	cases := []struct {
		name  string
		rules [][]string
		path  string // the cycle reported for the last rule
	}{
		{"self", [][]string{{"a", "a"}}, "a → a"},
		{"two", [][]string{{"a", "b"}, {"b", "a"}}, "b → a → b"},
		{"three", [][]string{{"mcp:admin", "mcp:write"}, {"mcp:write", "mcp:read"}, {"mcp:read", "mcp:admin"}}, "mcp:read → mcp:admin → mcp:write → mcp:read"},
		{"among several narrow", [][]string{{"a", "b", "c"}, {"c", "x", "a"}}, "c → a → c"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := new(verifiers.ScopeHierarchy)
			var err error
			for _, r := range tc.rules {
				if err = h.Add(r[0], r[1:]...); err != nil {
					break
				}
			}
			var ce *verifiers.CycleError
			if !errors.As(err, &ce) || strings.Join(ce.Path, " → ") != tc.path {
				t.Fatalf("want cycle %s, got %v", tc.path, err)
			}
		})
	}
	t.Run("a refused rule changes nothing", func(t *testing.T) {
		h := new(verifiers.ScopeHierarchy)
		_ = h.Add("a", "b")
		if err := h.Add("b", "c", "a"); err == nil {
			t.Fatal("cycle accepted")
		}
		if h.Implied("b") != nil {
			t.Fatalf("b implies %v after a refused rule", h.Implied("b"))
		}
	})
	t.Run("diamonds are not cycles", func(t *testing.T) {
		h := new(verifiers.ScopeHierarchy)
		for _, r := range [][]string{{"top", "l", "r"}, {"l", "bottom"}, {"r", "bottom"}} {
			if err := h.Add(r[0], r[1:]...); err != nil {
				t.Fatal(err)
			}
		}
		if got := h.Implied("top"); !slices.Equal(got, []string{"bottom", "l", "r"}) {
			t.Fatalf("top implies %v", got)
		}
	})
}

func TestScopeHierarchyApply(t *testing.T) {
	h := adminHierarchy(t)
	shared := &verifiers.AccessToken{ClientID: "c", Scopes: []string{"mcp:admin"}}
	tok := h.Apply(shared)
	if tok == shared {
		t.Fatal("Apply modified the shared token instead of copying it")
	}
	if !slices.Equal(shared.Scopes, []string{"mcp:admin"}) || shared.HasScopes([]string{"mcp:read"}) {
		t.Fatalf("the shared token changed: %v", shared.Granted())
	}
	if !slices.Equal(tok.Scopes, []string{"mcp:admin"}) {
		t.Fatalf("Scopes must stay the token's own: %v", tok.Scopes)
	}
	if !tok.HasScopes([]string{"mcp:read", "mcp:write"}) {
		t.Fatalf("granted %v", tok.Granted())
	}
	err := verifiers.RequireScopes(&verifiers.AccessToken{Scopes: []string{"mcp:read"}}, []string{"mcp:write"})
	var se *verifiers.ScopeError
	if !errors.As(err, &se) || !slices.Equal(se.Required, []string{"mcp:write"}) {
		t.Fatalf("the challenge must name the needed scope, not its parents: %v", err)
	}
	if got := h.Apply(&verifiers.AccessToken{Scopes: []string{"mcp:read"}}); got.Granted()[0] != "mcp:read" || len(got.Granted()) != 1 {
		t.Fatalf("read: %v", got.Granted())
	}
	var nilH *verifiers.ScopeHierarchy
	if nilH.Apply(shared) != shared || !nilH.Empty() {
		t.Fatal("a nil hierarchy must change nothing")
	}
}

// fixed is a Verifier that accepts every token as tok.
type fixed struct{ tok *verifiers.AccessToken }

func (f fixed) Verify(context.Context, string) (*verifiers.AccessToken, error) { return f.tok, nil }

func TestChainScopesAfterHierarchy(t *testing.T) {
	h := adminHierarchy(t)
	admin := &verifiers.AccessToken{Issuer: "https://as", Scopes: []string{"mcp:admin"}}
	reader := &verifiers.AccessToken{Issuer: "https://as", Scopes: []string{"mcp:read"}}
	cases := []struct {
		name    string
		chain   verifiers.Chain
		wantErr []string // the ScopeError's Required; nil: accepted
	}{
		{"global, JWT admin", verifiers.Chain{JWT: fixed{admin}, RequiredScopes: []string{"mcp:read"}, Implies: h}, nil},
		{"issuer scopes, JWT admin", verifiers.Chain{JWT: fixed{admin}, IssuerScopes: map[string][]string{"https://as": {"mcp:write"}}, Implies: h}, nil},
		{"introspection scopes, admin", verifiers.Chain{Opaque: fixed{admin}, OpaqueScopes: []string{"mcp:write"}, Implies: h}, nil},
		{"issuer scopes, reader", verifiers.Chain{JWT: fixed{reader}, RequiredScopes: []string{"mcp:read"}, IssuerScopes: map[string][]string{"https://as": {"mcp:write"}}, Implies: h}, []string{"mcp:read", "mcp:write"}},
		{"introspection scopes, reader", verifiers.Chain{Opaque: fixed{reader}, OpaqueScopes: []string{"mcp:write"}, Implies: h}, []string{"mcp:write"}},
		{"another issuer's scopes do not apply", verifiers.Chain{JWT: fixed{reader}, IssuerScopes: map[string][]string{"https://other": {"mcp:write"}}, Implies: h}, nil},
		{"no hierarchy", verifiers.Chain{JWT: fixed{admin}, RequiredScopes: []string{"mcp:read"}}, []string{"mcp:read"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok, _, err := tc.chain.VerifyKind(context.Background(), "opaque-token")
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if !slices.Equal(tok.Scopes, []string{"mcp:admin"}) && !slices.Equal(tok.Scopes, []string{"mcp:read"}) {
					t.Fatalf("Scopes changed: %v", tok.Scopes)
				}
				return
			}
			var se *verifiers.ScopeError
			if !errors.As(err, &se) || !slices.Equal(se.Required, tc.wantErr) {
				t.Fatalf("want ScopeError requiring %v, got %v", tc.wantErr, err)
			}
		})
	}
}
