package mcptoken

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// adaptCaddyfile runs the Caddyfile adapter on src, as `caddy adapt` does.
func adaptCaddyfile(t *testing.T, src string) (string, error) {
	t.Helper()
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), map[string]any{"filename": "Caddyfile"})
	return string(out), err
}

func TestDiscoveryConfigErrors(t *testing.T) {
	const fix = "add `issuer <url>` (the iss of your tokens, also checked on every token) or `authorization_servers <url>`"
	const blocks = "use one mcp_token with an `issuer <iss> { ... }` block per issuer"
	cases := []struct {
		name string
		src  string
		want string // "" : adapts
	}{
		{"metadata without authorization server", "example.com {\n\tmcp_token /mcp* {\n\t\thmac_secret {env.S}\n\t\taudience api\n\t}\n}\n",
			"the protected-resource metadata it publishes must name the authorization server clients get tokens from (RFC 9728, MCP authorization): " + fix + ", at Caddyfile:2"},
		{"introspection without issuer", "example.com {\n\tmcp_token {\n\t\tintrospection https://as.example/introspect {\n\t\t\tclient_id c\n\t\t}\n\t}\n}\n", fix + ", at Caddyfile:2"},
		{"issuer names the server", "example.com {\n\tmcp_token /mcp* {\n\t\thmac_secret {env.S}\n\t\tissuer https://as.example\n\t}\n}\n", ""},
		{"authorization_servers names it", "example.com {\n\tmcp_token /mcp* {\n\t\thmac_secret {env.S}\n\t\tauthorization_servers https://as.example\n\t}\n}\n", ""},
		{"issuer behind a placeholder", "example.com {\n\tmcp_token /mcp* {\n\t\thmac_secret {env.S}\n\t\tissuer {env.ISS}\n\t}\n}\n", ""},
		{"static tokens only publish nothing", "example.com {\n\tmcp_token /mcp* {\n\t\tstatic_token dev-t c\n\t}\n}\n", ""},
		{"second mcp_token on the same path", "example.com {\n\tmcp_token /mcp* {\n\t\thmac_secret {env.S}\n\t\tissuer https://a\n\t}\n\tmcp_token /mcp* {\n\t\thmac_secret {env.T}\n\t\tissuer https://b\n\t}\n}\n",
			"mcp_token: a second mcp_token for the requests of the one at Caddyfile:2: the first removes the token from the request, so this one would answer 401 to every request. To accept tokens from several issuers, " + blocks + ", at Caddyfile:6"},
		{"second mcp_token without matcher", "example.com {\n\tmcp_token /mcp* {\n\t\thmac_secret {env.S}\n\t\tissuer https://a\n\t}\n\tmcp_token {\n\t\thmac_secret {env.T}\n\t\tissuer https://b\n\t}\n}\n", blocks + ", at Caddyfile:6"},
		{"nested in a handle of the same path", "example.com {\n\tmcp_token {\n\t\thmac_secret {env.S}\n\t\tissuer https://a\n\t}\n\thandle /mcp* {\n\t\tmcp_token {\n\t\t\thmac_secret {env.T}\n\t\t\tissuer https://b\n\t\t}\n\t}\n}\n", blocks + ", at Caddyfile:7"},
		{"two paths", "example.com {\n\tmcp_token /a* {\n\t\thmac_secret {env.S}\n\t\tissuer https://a\n\t}\n\tmcp_token /b* {\n\t\thmac_secret {env.T}\n\t\tissuer https://b\n\t}\n}\n", ""},
		{"a handle block under an mcp_token with a matcher", "example.com {\n\tmcp_token /mcp* {\n\t\thmac_secret {env.S}\n\t\tissuer https://a\n\t}\n\thandle /admin* {\n\t\tmcp_token {\n\t\t\thmac_secret {env.T}\n\t\t\tissuer https://b\n\t\t}\n\t}\n}\n", ""},
		{"same matcher in a handle block", "example.com {\n\tmcp_token /mcp* {\n\t\thmac_secret {env.S}\n\t\tissuer https://a\n\t}\n\thandle {\n\t\tmcp_token /mcp* {\n\t\t\thmac_secret {env.T}\n\t\t\tissuer https://b\n\t\t}\n\t}\n}\n", blocks + ", at Caddyfile:7"},
		{"sibling handle blocks", "example.com {\n\thandle /a* {\n\t\tmcp_token {\n\t\t\thmac_secret {env.S}\n\t\t\tissuer https://a\n\t\t}\n\t}\n\thandle /b* {\n\t\tmcp_token {\n\t\t\thmac_secret {env.T}\n\t\t\tissuer https://b\n\t\t}\n\t}\n}\n", ""},
		{"two sites", "a.example.com {\n\tmcp_token /mcp* {\n\t\thmac_secret {env.S}\n\t\tissuer https://a\n\t}\n}\nb.example.com {\n\tmcp_token /mcp* {\n\t\thmac_secret {env.S}\n\t\tissuer https://a\n\t}\n}\n", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, err := adaptCaddyfile(t, tc.src)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("adapt: %v", err)
				}
				if strings.Contains(tc.name, "static tokens only") == strings.Contains(out, "mcp_token_metadata") {
					t.Fatalf("metadata routes: %s", out)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}

// TestDiscoveryConfigErrorsCaddyAdapt runs `caddy adapt` (the command of
// ./cmd/caddy) on a Caddyfile with each mistake.
func TestDiscoveryConfigErrorsCaddyAdapt(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the caddy command")
	}
	bin := caddyBinary(t)
	cases := []struct{ name, src, want string }{
		{"no authorization server", "example.com {\n\tmcp_token /mcp* {\n\t\thmac_secret {env.S}\n\t}\n}\n", "or `authorization_servers <url>`, at Caddyfile:2"},
		{"second mcp_token", "example.com {\n\tmcp_token /mcp* {\n\t\thmac_secret {env.S}\n\t\tissuer https://a\n\t}\n\tmcp_token /mcp* {\n\t\tjwks_uri https://b/jwks\n\t\tissuer https://b\n\t}\n}\n", "`issuer <iss> { ... }` block per issuer, at Caddyfile:6"},
		{"scope_implies cycle", "example.com {\n\tmcp_token /mcp* {\n\t\thmac_secret {env.S}\n\t\tissuer https://a\n\t\tscope_implies mcp:admin mcp:write\n\t\tscope_implies mcp:write mcp:admin\n\t}\n}\n", "scope_implies: this line closes a cycle (mcp:write → mcp:admin → mcp:write); a broader scope implies narrower ones, never the reverse, at Caddyfile:6"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, "Caddyfile"), []byte(tc.src), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(bin, "adapt", "--config", "Caddyfile")
			cmd.Dir = dir
			out, err := cmd.CombinedOutput()
			if err == nil || !strings.Contains(string(out), tc.want) {
				t.Fatalf("caddy adapt: %v, want output containing %q:\n%s", err, tc.want, out)
			}
		})
	}
}
