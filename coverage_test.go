package mcptoken

import (
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// TestAdaptRefusesUncoveredSubpaths (issue 10 item 2): a path matcher that
// leaves the endpoint's subpaths (or the endpoint) without a token fails
// `caddy adapt` at the directive's line, with the fix.
func TestAdaptRefusesUncoveredSubpaths(t *testing.T) {
	cases := []struct {
		name, matcher, want string
	}{
		{"exact path", "mcp_token /mcp", "path /mcp protects only that exact path, not /mcp, /mcp/ and its subpaths"},
		{"exact path with a slash", "mcp_token /mcp/", "use mcp_token /mcp* to cover /mcp, /mcp/ and its subpaths"},
		{"subpaths only", "mcp_token /mcp/*", "path /mcp/* protects the subpaths of /mcp but not /mcp itself"},
		{"named matcher", "@mcp path /api/mcp\n\tmcp_token @mcp", "use mcp_token /api/mcp* to cover"},
		{"one of several paths", "@m path /a* /b\n\tmcp_token @m", "path /b protects only"},
		{"case does not hide it", "@m path /MCP /mcp/*\n\tmcp_token @m", ""},
		{"method matcher", "@post {\n\t\tpath /mcp*\n\t\tmethod POST\n\t}\n\tmcp_token @post", "a method matcher leaves the endpoint's other methods without a token"},
		{"prefix", "mcp_token /mcp*", ""},
		{"endpoint and subpaths", "@m path /mcp /mcp/*\n\tmcp_token @m", ""},
		{"everything", "mcp_token *", ""},
		{"root wildcard", "mcp_token /*", ""},
		{"no matcher", "mcp_token", ""},
		{"regexp left to the user", "@m path_regexp ^/mcp$\n\tmcp_token @m", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			src := "example.com {\n\t" + tc.matcher + " {\n\t\tstatic_token dev-token c1\n\t}\n}\n"
			_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
			if tc.want == "" {
				if err != nil {
					t.Fatalf("adapt: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("adapt: %v, want %q", err, tc.want)
			}
			if !strings.Contains(err.Error(), "Caddyfile:") {
				t.Fatalf("the error does not name the line: %v", err)
			}
		})
	}
}
