package mcptoken

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"golang.org/x/sync/semaphore"

	"github.com/mcptoken/caddy-mcp-token/internal/mcprpc"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

func TestInspect(t *testing.T) {
	c := &core{
		requiredScopes: []string{"mcp:base"},
		rules:          scopeRules{method: map[string][]string{"tools/list": {"mcp:read"}}, tool: map[string][]string{"deploy": {"deploy:write", "mcp:read"}}},
		maxBody:        64,
		bodies:         semaphore.NewWeighted(1 << 20),
	}
	cases := []struct {
		name, method, body string
		headers            map[string]string
		want               string
		err                error
	}{
		{"list", "POST", `{"method":"tools/list"}`, nil, "mcp:base mcp:read", nil},
		{"deploy", "POST", `{"method":"tools/call","params":{"name":"deploy"}}`, nil, "mcp:base deploy:write mcp:read", nil},
		{"echo", "POST", `{"method":"tools/call","params":{"name":"echo"}}`, nil, "mcp:base", nil},
		{"GET needs only the global scopes", "GET", ``, nil, "mcp:base", nil},
		{"DELETE needs only the global scopes", "DELETE", ``, nil, "mcp:base", nil},
		{"too large", "POST", `{"method":"tools/call","params":{"name":"deploy","x":"` + strings.Repeat("y", 64) + `"}}`, nil, "", verifiers.ErrBodyTooLarge},
		{"not JSON-RPC", "POST", `garbage`, nil, "", verifiers.ErrBadBody},
		{"headers agree", "POST", `{"method":"tools/call","params":{"name":"echo"}}`, map[string]string{"Mcp-Method": "tools/call", "Mcp-Name": "echo"}, "mcp:base", nil},
		{"Mcp-Method disagrees", "POST", `{"method":"tools/call","params":{"name":"echo"}}`, map[string]string{"Mcp-Method": "tools/list"}, "", verifiers.ErrHeaderMismatch},
		{"Mcp-Name disagrees", "POST", `{"method":"tools/call","params":{"name":"echo"}}`, map[string]string{"Mcp-Method": "tools/call", "Mcp-Name": "deploy"}, "", verifiers.ErrHeaderMismatch},
		{"Mcp-Method on a batch", "POST", `[{"method":"tools/list"}]`, map[string]string{"Mcp-Method": "tools/list"}, "", verifiers.ErrHeaderMismatch},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(tc.method, "/mcp", strings.NewReader(tc.body))
			if tc.body == "" {
				r.Body, r.ContentLength = http.NoBody, 0
			}
			r.Header.Set("Content-Type", "application/json")
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			needed, _, err := c.inspect(httptest.NewRecorder(), r)
			if tc.err != nil {
				if !errors.Is(err, tc.err) {
					t.Fatalf("want %v, got %v", tc.err, err)
				}
				return
			}
			if err != nil || strings.Join(needed, " ") != tc.want {
				t.Fatalf("needed %q (%v), want %q", needed, err, tc.want)
			}
		})
	}
}

func TestCaddyfileMCPOptions(t *testing.T) {
	var c Config
	err := c.UnmarshalCaddyfile(caddyfile.NewTestDispenser(`mcp_token {
		static_token dev d
		resource https://mcp.example.com/mcp
		authorization_servers https://auth.example.com https://backup.example.com
		resource_name "Example MCP"
		resource_documentation https://docs.example.com
		method_scopes tools/list mcp:read
		tool_scopes deploy deploy:write ops:write
		cors_preflight off
		max_body 256KiB
	}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Resource != "https://mcp.example.com/mcp" || len(c.AuthorizationServers) != 2 || c.ResourceName != "Example MCP" ||
		strings.Join(c.ToolScopes["deploy"], " ") != "deploy:write ops:write" || c.MethodScopes["tools/list"][0] != "mcp:read" ||
		c.CORSPreflight == nil || *c.CORSPreflight || c.MaxBody != 256<<10 {
		t.Fatalf("parsed %+v", c)
	}
	for _, tc := range []struct{ input, want string }{
		{"mcp_token {\n static_token a b\n resource /mcp\n}", "resource: \"/mcp\" is not an absolute http(s) URI"},
		{"mcp_token {\n static_token a b\n resource https://x/mcp#frag\n}", "without a fragment"},
		{"mcp_token {\n static_token a b\n method_scopes tools/list\n}", "method_scopes: want <name> <scope> [<scope>...], at Testfile:3"},
		{"mcp_token {\n static_token a b\n tool_scopes deploy a\n tool_scopes deploy b\n}", `tool_scopes: "deploy" is already configured, at Testfile:4`},
		{"mcp_token {\n static_token a b\n cors_preflight maybe\n}", `cors_preflight: "maybe", want on or off`},
		{"mcp_token {\n static_token a b\n max_body huge\n}", `max_body: "huge" is not a size`},
	} {
		var c Config
		if err := c.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input)); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: want %q, got %v", tc.input, tc.want, err)
		}
	}
}

func TestMatcherPath(t *testing.T) {
	for raw, want := range map[string]string{`["/mcp*"]`: "/mcp", `["/mcp/*"]`: "/mcp", `["/mcp"]`: "/mcp", `["/a","/b"]`: "", `["*.json"]`: "", `["/api/*/mcp"]`: ""} {
		if got := matcherPath(caddy.ModuleMap{"path": json.RawMessage(raw)}); got != want {
			t.Errorf("%s: %q, want %q", raw, got, want)
		}
	}
}

// TestScopeRulesNeeded: the global scopes are returned as they are when
// the calls add none (no copy per request), and never written to.
func TestScopeRulesNeeded(t *testing.T) {
	rules := scopeRules{method: map[string][]string{"tools/call": {"mcp:read"}}, tool: map[string][]string{"deploy": {"deploy:write"}}}
	global := make([]string, 1, 4) // spare capacity an append would write into
	global[0] = "mcp:read"
	echo := []mcprpc.Call{{Method: "tools/call", Name: "echo"}}
	deploy := []mcprpc.Call{{Method: "tools/call", Name: "deploy"}}
	if got := rules.needed(global, echo); len(got) != 1 || &got[0] != &global[0] {
		t.Fatalf("nothing added: %q is a copy", got)
	}
	if n := testing.AllocsPerRun(50, func() { rules.needed(global, echo) }); n != 0 {
		t.Fatalf("nothing added: %v allocations", n)
	}
	a := rules.needed(global, deploy)
	b := rules.needed(global, echo)
	if strings.Join(a, " ") != "mcp:read deploy:write" || strings.Join(b, " ") != "mcp:read" || global[:2][1] != "" {
		t.Fatalf("a %q, b %q, global's spare capacity %q", a, b, global[:2])
	}
}
