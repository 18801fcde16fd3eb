package mcptoken

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// TestIntrospectionRequireAudienceDefault (issue 10 item 8): with an
// audience (or a resource) configured, an introspection result without
// aud is refused unless require_audience is turned off, which production
// does not allow.
func TestIntrospectionRequireAudienceDefault(t *testing.T) {
	t.Setenv("ENVIRONMENT", "")
	as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"active":true,"client_id":"c1","scope":"mcp:read"}`))
	}))
	defer as.Close()
	off, on := false, true
	cases := []struct {
		name      string
		audiences []string
		resource  string
		require   *bool
		want      error
	}{
		{"audience configured: no aud refused", []string{"mcp-api"}, "", nil, verifiers.ErrBadAudience},
		{"resource configured: no aud refused", nil, "https://mcp.example.test/mcp", nil, verifiers.ErrBadAudience},
		{"opt-out for servers that never send aud", []string{"mcp-api"}, "", &off, nil},
		{"nothing configured: nothing to require", nil, "", nil, nil},
		{"required explicitly without an audience", nil, "", &on, verifiers.ErrBadAudience},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			h := &Handler{module{Config: Config{Audiences: tc.audiences,
				ProtectedResource: ProtectedResource{Resource: tc.resource},
				Introspection:     &IntrospectionConfig{URL: as.URL, ClientID: "rs", ClientSecret: "s", RequireAudience: tc.require}}}}
			if err := h.Provision(ctx); err != nil {
				t.Fatal(err)
			}
			defer h.Cleanup()
			_, err := h.core.verifier.Verify(context.Background(), "opaque-token-1")
			if !errors.Is(err, tc.want) && !(err == nil && tc.want == nil) {
				t.Fatalf("verify: %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("cannot be off in production", func(t *testing.T) {
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		defer cancel()
		h := &Handler{module{Config: Config{Production: true, Audiences: []string{"mcp-api"},
			ProtectedResource: ProtectedResource{Resource: "https://mcp.example.test/mcp"},
			Introspection:     &IntrospectionConfig{URL: "https://as.example.test/introspect", ClientID: "rs", RequireAudience: &off}}}}
		err := h.Provision(ctx)
		_ = h.Cleanup()
		if err == nil || !strings.Contains(err.Error(), "require_audience cannot be off in production") {
			t.Fatalf("production with require_audience off: %v", err)
		}
	})
}
