package mcptoken

import (
	"encoding/json"

	"errors"
	"github.com/caddyserver/caddy/v2"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

func TestParseCalls(t *testing.T) {
	cases := []struct {
		name  string
		body  string
		calls []rpcCall
		batch bool
		err   string
	}{
		{"call", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deploy"}}`, []rpcCall{{method: "tools/call", name: "deploy"}}, false, ""},
		{"resource uri", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///x"}}`, []rpcCall{{method: "resources/read", name: "file:///x"}}, false, ""},
		{"notification", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, []rpcCall{{method: "notifications/initialized", name: ""}}, false, ""},
		{"response", `{"jsonrpc":"2.0","id":1,"result":{}}`, []rpcCall{{method: "", name: ""}}, false, ""},
		{"batch", `[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}]`, []rpcCall{{method: "tools/list", name: ""}, {method: "tools/call", name: "echo"}}, true, ""},
		{"upper-case key is not method", `{"jsonrpc":"2.0","id":1,"METHOD":"tools/call","method":"tools/list"}`, []rpcCall{{method: "tools/list", name: ""}}, false, ""},
		{"duplicate method", `{"method":"tools/list","method":"tools/call"}`, nil, false, "duplicate key"},
		{"duplicate name", `{"method":"tools/call","params":{"name":"echo","name":"deploy"}}`, nil, false, "duplicate key"},
		{"not JSON", `hello`, nil, false, "not a JSON-RPC message"},
		{"empty batch", `[]`, nil, true, "not a JSON-RPC batch"},
		{"method not a string", `{"method":7}`, nil, false, "method is not a string"},
		{"trailing data", `{"method":"a"} {"method":"b"}`, nil, false, "trailing data"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			calls, batch, err := parseCalls([]byte(tc.body))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("want error %q, got %v", tc.err, err)
				}
				return
			}
			if err != nil || batch != tc.batch || len(calls) != len(tc.calls) {
				t.Fatalf("got %v %v %v", calls, batch, err)
			}
			for i := range calls {
				if calls[i] != tc.calls[i] {
					t.Fatalf("call %d: %+v, want %+v", i, calls[i], tc.calls[i])
				}
			}
		})
	}
}

func TestInspect(t *testing.T) {
	c := &core{
		requiredScopes: []string{"mcp:base"},
		rules:          scopeRules{method: map[string][]string{"tools/list": {"mcp:read"}}, tool: map[string][]string{"deploy": {"deploy:write", "mcp:read"}}},
		maxBody:        64,
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
			for k, v := range tc.headers {
				r.Header.Set(k, v)
			}
			needed, _, err := c.inspect(r)
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
