package mcptoken

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/modules/standard"
	"github.com/mcptoken/caddy-mcp-token/devtools"
)

// caddyBinary builds ./cmd/caddy once per test process, for tests that
// run the caddy command as a user would.
func caddyBinary(t *testing.T) string {
	t.Helper()
	caddyBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "mcp-token-caddy-")
		if err != nil {
			caddyBin.err = err
			return
		}
		caddyBin.path = filepath.Join(dir, "caddy")
		if out, err := exec.Command("go", "build", "-o", caddyBin.path, "./cmd/caddy").CombinedOutput(); err != nil {
			caddyBin.err = fmt.Errorf("go build ./cmd/caddy: %v\n%s", err, out)
		}
	})
	if caddyBin.err != nil {
		t.Fatal(caddyBin.err)
	}
	return caddyBin.path
}

var caddyBin struct {
	once sync.Once
	path string
	err  error
}

// TestCaddyfileExampleValidates follows the example's first lines: with
// the three secrets it names in place, `caddy validate` accepts it, and
// without one it names what is missing.
func TestCaddyfileExampleValidates(t *testing.T) {
	bin := caddyBinary(t)
	dir := t.TempDir()
	kp := devtools.MustGenerateKey("ES256")
	pemText, _ := kp.PublicPEM()
	keyFile := filepath.Join(dir, "public.pem")
	if err := os.WriteFile(keyFile, []byte(pemText), 0o600); err != nil {
		t.Fatal(err)
	}
	validate := func(env ...string) (string, error) {
		cmd := exec.Command(bin, "validate", "--config", "Caddyfile.example", "--adapter", "caddyfile")
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	env := []string{"MCP_HMAC_SECRET=" + strings.Repeat("s", 64), "INTROSPECTION_SECRET=the-client-secret-of-mcp-gateway", "PARTNER_PUBLIC_KEY_FILE=" + keyFile}
	if out, err := validate(env...); err != nil || !strings.Contains(out, "Valid configuration") {
		t.Fatalf("Caddyfile.example does not validate with its environment: %v\n%s", err, out)
	}
	if out, err := validate(env[1:]...); err == nil || !strings.Contains(out, "MCP_HMAC_SECRET is unset or empty") {
		t.Fatalf("without MCP_HMAC_SECRET: %v\n%s", err, out)
	}
}

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
	if n := strings.Count(string(out), `"handler":"mcp_token"`); n != 5 {
		t.Fatalf("want 5 mcp_token handlers, got %d in %s", n, out)
	}
	for _, want := range []string{`"hmac_secret":"{env.MCP_HMAC_SECRET}"`, `"token_type":"at+jwt"`, `"static_tokens"`, `"jwks_uri":"https://auth.example.com/.well-known/jwks.json"`, `"issuer_configs"`, `"discover":true`, `"introspection":{`, `"handler":"mcp_token_metadata"`, `"/.well-known/oauth-protected-resource/mcp"`, `"tool_scopes":{"deploy":["deploy:write"]}`} {
		if !strings.Contains(string(out), want) {
			t.Errorf("adapted config lacks %s", want)
		}
	}
}

// TestReadmeJSONProvisions keeps the README's JSON examples true: each
// decodes strictly into the module and provisions.
func TestReadmeJSONProvisions(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := strings.Split(string(readme), "```json\n")[1:]
	if len(blocks) < 2 {
		t.Fatalf("found %d JSON examples in the README", len(blocks))
	}
	// The examples read secrets from the environment, as they should.
	t.Setenv("INTROSPECTION_SECRET", "example-introspection-secret")
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	for i, b := range blocks {
		src := b[:strings.Index(b, "```")]
		var probe struct {
			Handler   string                     `json:"handler"`
			Providers map[string]json.RawMessage `json:"providers"`
			Apps      json.RawMessage            `json:"apps"`
		}
		if err := json.Unmarshal([]byte(src), &probe); err != nil {
			t.Fatalf("README JSON example %d: %v", i+1, err)
		}
		if probe.Apps != nil {
			continue // a whole configuration: loaded by TestE2EReadmeJSONConfig
		}
		var mod interface {
			caddy.Provisioner
			caddy.CleanerUpper
		}
		var fields map[string]json.RawMessage
		_ = json.Unmarshal([]byte(src), &fields)
		delete(fields, "handler")
		raw, _ := json.Marshal(fields)
		switch probe.Handler {
		case "mcp_token":
			mod = new(Handler)
		case "authentication":
			mod, raw = new(Authenticator), probe.Providers["mcp_token"]
		default:
			t.Fatalf("README JSON example %d: unexpected handler %q", i+1, probe.Handler)
		}
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(mod); err != nil {
			t.Fatalf("README JSON example %d does not match the config: %v", i+1, err)
		}
		if err := mod.Provision(ctx); err != nil {
			t.Fatalf("README JSON example %d does not provision: %v", i+1, err)
		}
		_ = mod.Cleanup()
	}
}

// TestReadmeCaddyfileSnippets adapts every Caddyfile snippet of the README
// that is a whole site (or a handle block, wrapped in one).
func TestReadmeCaddyfileSnippets(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var snippets []string
	var cur []string
	inside, lang := false, ""
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "```") {
			if inside && lang == "" {
				snippets = append(snippets, strings.Join(cur, "\n")+"\n")
			}
			inside, lang, cur = !inside, strings.TrimPrefix(line, "```"), nil
			continue
		}
		if inside {
			cur = append(cur, line)
		}
	}
	n := 0
	for _, snippet := range snippets {
		first, _, _ := strings.Cut(snippet, "\n")
		switch {
		case strings.HasPrefix(first, "mcp.example.com {"):
		case strings.HasPrefix(first, "handle "):
			snippet = "example.com {\n" + snippet + "}\n"
		default:
			continue
		}
		n++
		if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(snippet), nil); err != nil {
			t.Errorf("README snippet does not adapt: %v\n%s", err, snippet)
		}
	}
	t.Logf("%d README site snippets adapt", n)
	if n < 3 {
		t.Fatalf("found %d README site snippets", n)
	}
}
