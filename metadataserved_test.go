package mcptoken

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestMetadataServedCheck: a core whose challenges name a metadata URL
// warns once when no metadata handler describes its path, and not at all
// when one does (for that path, or for any path it is routed).
func TestMetadataServedCheck(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	// The registry is process-wide: set aside what a running e2e Caddy
	// registered.
	metadataHandlers.Lock()
	saved := metadataHandlers.paths
	metadataHandlers.paths = map[*MetadataHandler]string{}
	metadataHandlers.Unlock()
	defer func() {
		metadataHandlers.Lock()
		metadataHandlers.paths = saved
		metadataHandlers.Unlock()
	}()
	cases := []struct {
		name     string
		resource ProtectedResource
		handlers []ProtectedResource
		warn     string // substring of add_route; "" for no warning
	}{
		{"no handler, path from the request", ProtectedResource{}, nil, `"resource_path":"/mcp"`},
		{"no handler, resource set", ProtectedResource{Resource: "https://mcp.example.com/api"}, nil,
			`{"handle":[{"handler":"mcp_token_metadata","resource":"https://mcp.example.com/api"}],"match":[{"path":["/.well-known/oauth-protected-resource/api","/.well-known/oauth-protected-resource"]}]}`},
		{"a handler for another path", ProtectedResource{ResourcePath: "/mcp"}, []ProtectedResource{{ResourcePath: "/other"}}, `"resource_path":"/mcp"`},
		{"a handler for the path", ProtectedResource{ResourcePath: "/mcp"}, []ProtectedResource{{Resource: "https://x.example/mcp"}}, ""},
		{"a handler deriving its path from the request", ProtectedResource{ResourcePath: "/mcp"}, []ProtectedResource{{}}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, pr := range tc.handlers {
				pr.AuthorizationServers = []string{"https://as.example"}
				m := &MetadataHandler{ProtectedResource: pr}
				if err := m.Provision(ctx); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = m.Cleanup() })
			}
			obs, logs := observer.New(zap.WarnLevel)
			c := &core{resource: tc.resource, logger: zap.New(obs)}
			for i := 0; i < 3; i++ {
				r := httptest.NewRequest("POST", "http://localhost/mcp", nil)
				if h := c.challenge(r, nil); !strings.Contains(h, "resource_metadata=") {
					t.Fatalf("challenge %q", h)
				}
			}
			entries := logs.FilterFieldKey("add_route").All()
			if tc.warn == "" {
				if len(entries) != 0 {
					t.Fatalf("warned although a handler serves the path: %v", entries[0].ContextMap())
				}
				return
			}
			if len(entries) != 1 {
				t.Fatalf("3 challenges logged %d warnings, want 1", len(entries))
			}
			if got := entries[0].ContextMap()["add_route"].(string); !strings.Contains(got, tc.warn) {
				t.Fatalf("add_route %s lacks %s", got, tc.warn)
			}
		})
	}
	metadataHandlers.Lock()
	n := len(metadataHandlers.paths)
	metadataHandlers.Unlock()
	if n != 0 {
		t.Fatalf("%d metadata handlers still registered after Cleanup", n)
	}
}
