package verifiers_test

import (
	"testing"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

func TestAudienceEqual(t *testing.T) {
	cases := []struct {
		a, b string
		want bool
	}{
		{"mcp-api", "mcp-api", true},
		{"mcp-api", "MCP-API", false},
		{"https://mcp.example.com/mcp", "https://mcp.example.com/mcp", true},
		{"https://MCP.Example.com/mcp", "https://mcp.example.com/mcp", true},
		{"HTTPS://mcp.example.com/mcp", "https://mcp.example.com/mcp", true},
		{"https://mcp.example.com/mcp/", "https://mcp.example.com/mcp", true},
		{"https://mcp.example.com/", "https://mcp.example.com", true},
		{"https://mcp.example.com/mcp//", "https://mcp.example.com/mcp", false},
		{"https://mcp.example.com/MCP", "https://mcp.example.com/mcp", false},
		{"http://mcp.example.com/mcp", "https://mcp.example.com/mcp", false},
		{"https://mcp.example.com:8443/mcp", "https://mcp.example.com/mcp", false},
		{"https://evil.example.com/mcp", "https://mcp.example.com/mcp", false},
		{"https://mcp.example.com/mcp#x", "https://mcp.example.com/mcp", false},
		{"https://mcp.example.com/mcp?a=1", "https://mcp.example.com/mcp", false},
		{"https://u@mcp.example.com/mcp", "https://mcp.example.com/mcp", false},
	}
	for _, tc := range cases {
		if got := verifiers.AudienceEqual(tc.a, tc.b); got != tc.want {
			t.Errorf("AudienceEqual(%q, %q) = %v", tc.a, tc.b, got)
		}
	}
}
