package mcptoken

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// TestMetadataHandlerPaths: the directive emits one metadata route per
// block, a /.well-known/oauth-protected-resource* prefix (Caddy merges
// them into one), in block order and before the token checks; its handler answers its own paths exactly
// as the two exact path routes it replaces matched them (Caddy's path
// matcher: case-insensitive, cleaned path) and passes every other request
// on; a handler without paths (a JSON route) answers all it is routed.
func TestMetadataHandlerPaths(t *testing.T) {
	out, err := adaptCaddyfile(t, `example.com {
	mcp_token /mcp* {
		hmac_secret {env.S}
		issuer https://a.example
	}
	mcp_token /opaque* {
		hmac_secret {env.T}
		issuer https://b.example
	}
}
`)
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Apps struct {
			HTTP struct {
				Servers map[string]struct {
					Routes []struct {
						Handle []struct {
							Routes []struct {
								Match  []map[string][]string `json:"match"`
								Handle []json.RawMessage     `json:"handle"`
							} `json:"routes"`
						} `json:"handle"`
					} `json:"routes"`
				} `json:"servers"`
			} `json:"http"`
		} `json:"apps"`
	}
	if err := json.Unmarshal([]byte(out), &cfg); err != nil {
		t.Fatal(err)
	}
	var got []string // one line per route: handler, matched paths, metadata paths
	for _, srv := range cfg.Apps.HTTP.Servers {
		for _, site := range srv.Routes {
			for _, sub := range site.Handle {
				for _, r := range sub.Routes {
					var match []string
					if len(r.Match) == 1 {
						match = r.Match[0]["path"]
					}
					line := jsonString(match) + ":"
					for _, raw := range r.Handle {
						var h struct {
							Handler string   `json:"handler"`
							Paths   []string `json:"paths"`
						}
						_ = json.Unmarshal(raw, &h)
						line += " " + h.Handler
						if h.Paths != nil {
							line += jsonString(h.Paths)
						}
					}
					got = append(got, line)
				}
			}
		}
	}
	// Caddy merges the two metadata routes (same matcher) into one, their
	// handlers in block order: the first block's answers the root URL.
	want := []string{
		`["` + WellKnownPath + `*"]: mcp_token_metadata["` + WellKnownPath + `/mcp","` + WellKnownPath + `"]` +
			` mcp_token_metadata["` + WellKnownPath + `/opaque","` + WellKnownPath + `"]`,
		`["/opaque*"]: mcp_token`,
		`["/mcp*"]: mcp_token`,
	}
	if !slices.Equal(got, want) {
		t.Fatalf("routes:\n%q\nwant\n%q", got, want)
	}

	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	m := &MetadataHandler{ProtectedResource: ProtectedResource{ResourcePath: "/mcp", AuthorizationServers: []string{"https://a.example"}},
		Paths: []string{WellKnownPath + "/mcp", WellKnownPath}}
	if err := m.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Cleanup() })
	all := &MetadataHandler{ProtectedResource: m.ProtectedResource}
	if err := all.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = all.Cleanup() })
	// The two exact routes the directive emitted before.
	exact := []caddyhttp.MatchPath{{WellKnownPath + "/mcp"}, {WellKnownPath}}
	for _, tc := range []struct {
		path   string
		answer bool
	}{
		{WellKnownPath + "/mcp", true},
		{WellKnownPath, true},
		{"/.WELL-KNOWN/OAUTH-PROTECTED-RESOURCE/MCP", true},
		{WellKnownPath + "//mcp", true},
		{"/.well-known/x/../oauth-protected-resource/mcp", true},
		{WellKnownPath + "/mcp/", false},
		{WellKnownPath + "/mcp/x", false},
		{WellKnownPath + "/other", false},
		{WellKnownPath + "x", false},
		{WellKnownPath + "/", false},
	} {
		t.Run(tc.path, func(t *testing.T) {
			for _, h := range []*MetadataHandler{m, all} {
				r := httptest.NewRequest(http.MethodGet, "http://example.com/", nil)
				r.URL.Path = tc.path
				r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
				old := exact[0].Match(r) || exact[1].Match(r)
				if h == m && old != tc.answer {
					t.Fatalf("the exact routes matched %v, the case says %v", old, tc.answer)
				}
				w := httptest.NewRecorder()
				passed := false
				next := caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { passed = true; return nil })
				if err := h.ServeHTTP(w, r, next); err != nil {
					t.Fatal(err)
				}
				answer := tc.answer || h == all
				if passed == answer || (answer && w.Code != 200) {
					t.Fatalf("paths %q: passed on %v, status %d; want answered %v", h.Paths, passed, w.Code, answer)
				}
			}
		})
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestMetadataDocumentPathVariants: the path matcher answers variants of
// a well-known URL (case, double slashes); the document names the
// configured resource path, never the variant, and a derived one trims
// the well-known prefix whatever its case.
func TestMetadataDocumentPathVariants(t *testing.T) {
	for _, tc := range []struct{ resourcePath, path, want string }{
		{"/mcp", WellKnownPath + "/mcp", "http://example.com/mcp"},
		{"/mcp", "/.WELL-KNOWN/OAUTH-PROTECTED-RESOURCE/MCP", "http://example.com/mcp"},
		{"/mcp", WellKnownPath + "//mcp", "http://example.com/mcp"},
		{"", "/.Well-Known/Oauth-Protected-Resource/tools", "http://example.com/tools"},
		{"", WellKnownPath + "/tools", "http://example.com/tools"},
	} {
		p := &ProtectedResource{ResourcePath: tc.resourcePath}
		r := httptest.NewRequest(http.MethodGet, "http://example.com"+tc.path, nil)
		if got := p.document(r)["resource"]; got != tc.want {
			t.Errorf("resource_path %q, GET %s: resource %v, want %s", tc.resourcePath, tc.path, got, tc.want)
		}
	}
}
