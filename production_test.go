package mcptoken

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/mcptoken/caddy-mcp-token/jwks"
)

// fakeIdP answers discovery with a chosen jwks_uri and records every URL
// requested; it stands in for the guarded client's transport, so no test
// traffic leaves the process.
type fakeIdP struct {
	issuer, jwksURI string
	mu              sync.Mutex
	seen            []string
}

func (f *fakeIdP) RoundTrip(r *http.Request) (*http.Response, error) {
	f.mu.Lock()
	f.seen = append(f.seen, r.URL.String())
	f.mu.Unlock()
	body := `{"keys":[]}`
	if strings.Contains(r.URL.Path, "/.well-known/") {
		body = `{"issuer":"` + f.issuer + `","jwks_uri":"` + f.jwksURI + `"}`
	}
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(body)), Request: r}, nil
}

func (f *fakeIdP) requested(u string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, s := range f.seen {
		if s == u {
			return true
		}
	}
	return false
}

// TestProductionDiscoveredJWKSURI (issue 10 item 7): in production, a
// jwks_uri found by discovery is held to the endpoint rule (https, not
// loopback in any spelling) before any request is made to it.
func TestProductionDiscoveredJWKSURI(t *testing.T) {
	t.Setenv("ENVIRONMENT", "")
	const issuer = "https://idp.example.test"
	cases := []struct {
		name, jwksURI, refusal string
	}{
		{"plain http", "http://keys.example.test/jwks", "plain http"},
		{"numeric loopback", "https://127.1/jwks", "localhost"},
		{"IPv4-mapped loopback", "https://[::ffff:127.0.0.1]/jwks", "localhost"},
		{"trailing-dot localhost", "https://localhost./jwks", "localhost"},
		{"https public host", "https://keys.example.test/jwks", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			idp := &fakeIdP{issuer: issuer, jwksURI: tc.jwksURI}
			saved := guardedNext
			guardedNext = func(http.RoundTripper) http.RoundTripper { return idp }
			defer func() { guardedNext = saved }()
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			h := &Handler{module{Config: Config{Production: true, Issuers: []string{issuer},
				KeyConfig: KeyConfig{Discover: true}, Audiences: []string{"mcp-api"},
				ProtectedResource: ProtectedResource{Resource: "https://mcp.example.test/mcp"}}}}
			if err := h.Provision(ctx); err != nil {
				t.Fatal(err)
			}
			defer h.Cleanup()
			cache := pooledDiscovery(issuer)
			if cache == nil {
				t.Fatal("no pooled JWKS cache")
			}
			err := cache.Refresh(context.Background())
			if tc.refusal == "" {
				if !idp.requested(tc.jwksURI) {
					t.Fatalf("the discovered https jwks_uri was not fetched: %v (seen %v)", err, idp.seen)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.refusal) {
				t.Fatalf("refresh with jwks_uri %s: %v, want a %q refusal", tc.jwksURI, err, tc.refusal)
			}
			if idp.requested(tc.jwksURI) {
				t.Fatalf("a request was made to the refused jwks_uri %s", tc.jwksURI)
			}
		})
	}
}

// pooledDiscovery returns the pooled JWKS cache that discovers from issuer.
func pooledDiscovery(issuer string) *jwks.Cache {
	var found *jwks.Cache
	jwksPool.Range(func(key, value any) bool {
		if strings.Contains(key.(string), "discover="+issuer+" ") {
			found = value.(pooled[*jwks.Cache]).value
			return false
		}
		return true
	})
	return found
}

// TestMetadataHostDerived (issue 10 item 9): metadata derived from the
// request's Host is never cacheable by a shared cache and varies on Host;
// a configured resource is served publicly; production requires resource.
func TestMetadataHostDerived(t *testing.T) {
	t.Setenv("ENVIRONMENT", "")
	cases := []struct {
		name, resource, cacheControl, vary string
	}{
		{"derived from Host", "", "private, max-age=3600", "Host"},
		{"configured resource", "https://mcp.example.test/mcp", "public, max-age=3600", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := &MetadataHandler{ProtectedResource: ProtectedResource{Resource: tc.resource, ResourcePath: "/mcp"}}
			r := httptest.NewRequest(http.MethodGet, WellKnownPath+"/mcp", nil)
			r.Host = "attacker.example"
			w := httptest.NewRecorder()
			if err := m.ServeHTTP(w, r, nil); err != nil {
				t.Fatal(err)
			}
			if got := w.Header().Get("Cache-Control"); got != tc.cacheControl {
				t.Fatalf("Cache-Control %q, want %q", got, tc.cacheControl)
			}
			if got := strings.Join(w.Header().Values("Vary"), ","); got != tc.vary {
				t.Fatalf("Vary %q, want %q", got, tc.vary)
			}
		})
	}
	t.Run("production handler without resource", func(t *testing.T) {
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		defer cancel()
		h := &Handler{module{Config: Config{Production: true, KeyConfig: KeyConfig{PublicKey: mustPEM(t, testRSA)}, Audiences: []string{"mcp-api"}}}}
		err := h.Provision(ctx)
		_ = h.Cleanup()
		if err == nil || !strings.Contains(err.Error(), "resource is required in production") {
			t.Fatalf("production without resource: %v", err)
		}
	})
	t.Run("production metadata handler without resource", func(t *testing.T) {
		t.Setenv("ENVIRONMENT", "production")
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		defer cancel()
		m := &MetadataHandler{ProtectedResource: ProtectedResource{ResourcePath: "/mcp"}}
		if err := m.Provision(ctx); err == nil || !strings.Contains(err.Error(), "resource is required") {
			t.Fatalf("metadata handler in production without resource: %v", err)
		}
		m.Resource = "https://mcp.example.test/mcp"
		if err := m.Provision(ctx); err != nil {
			t.Fatal(err)
		}
	})
	// A JSON config skips the Caddyfile's check of resource: Provision
	// makes it. A resource without a host would otherwise pass the
	// production guard and leave the origin of DPoP's htu and of the
	// metadata URL to the request's Host header.
	for _, bad := range []string{"mcp.example.com/mcp", "{env.MCP_RESOURCE}", "ftp://mcp.example.com/mcp", "https:///mcp", "https://mcp.example.com/mcp#x"} {
		for _, production := range []bool{false, true} {
			t.Run(fmt.Sprintf("resource %q, production %v", bad, production), func(t *testing.T) {
				ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
				defer cancel()
				h := &Handler{module{Config: Config{Production: production, KeyConfig: KeyConfig{PublicKey: mustPEM(t, testRSA)},
					Audiences: []string{"mcp-api"}, ProtectedResource: ProtectedResource{Resource: bad}}}}
				err := h.Provision(ctx)
				_ = h.Cleanup()
				if err == nil || !strings.Contains(err.Error(), "is not an absolute http(s) URI") {
					t.Fatalf("handler: %v", err)
				}
				if production {
					t.Setenv("ENVIRONMENT", "production")
				}
				m := &MetadataHandler{ProtectedResource: ProtectedResource{Resource: bad}}
				if err := m.Provision(ctx); err == nil || !strings.Contains(err.Error(), "is not an absolute http(s) URI") {
					t.Fatalf("metadata handler: %v", err)
				}
			})
		}
	}
}
