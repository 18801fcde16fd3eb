package mcptoken

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
)

// TestCaddyfileExampleAdapts keeps Caddyfile.example true to the code: it
// must adapt, and every mcp_token block must become the handler.
func TestCaddyfileExampleAdapts(t *testing.T) {
	src, err := os.ReadFile("Caddyfile.example")
	if err != nil {
		t.Fatal(err)
	}
	out, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt(src, map[string]any{"filename": "Caddyfile.example"})
	if err != nil {
		t.Fatalf("Caddyfile.example does not adapt: %v", err)
	}
	for _, w := range warnings {
		t.Errorf("warning: %s", w.String())
	}
	var cfg any
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(out), `"handler":"mcp_token"`); n != 3 {
		t.Fatalf("want 3 mcp_token handlers, got %d in %s", n, out)
	}
	for _, want := range []string{`"hmac_secret":"{env.MCP_HMAC_SECRET}"`, `"token_type":"at+jwt"`, `"static_tokens"`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("adapted config lacks %s", want)
		}
	}
}
