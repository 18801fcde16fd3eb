package mcptoken

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/mcptoken/caddy-mcp-token/devtools"
	"github.com/mcptoken/caddy-mcp-token/jwks"
)

// cliResult is what one `caddy mcp-token` run printed and how it ended.
type cliResult struct {
	stdout, stderr string
	code           int // the status caddycmd.Main would exit with
	err            error
}

func (r cliResult) String() string {
	return fmt.Sprintf("exit %d (%v)\nstdout:\n%s\nstderr:\n%s", r.code, r.err, r.stdout, r.stderr)
}

// runCLI runs `caddy mcp-token <args>` in-process, with stdin as given,
// under a root command set up as Caddy's is. stderr includes what was
// written to the process's stderr (logs), which it captures meanwhile.
func runCLI(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	root := &cobra.Command{Use: "caddy", SilenceUsage: true}
	sub := &cobra.Command{Use: "mcp-token"}
	addMCPTokenCommands(sub)
	root.AddCommand(sub)
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetIn(strings.NewReader(stdin))
	root.SetArgs(append([]string{"mcp-token"}, args...))

	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stderr
	os.Stderr = f
	err = root.Execute()
	os.Stderr = saved
	_ = f.Close()
	logged, _ := os.ReadFile(f.Name())
	return cliResult{stdout: out.String(), stderr: errOut.String() + string(logged), code: mainExitCode(err), err: err}
}

// mainExitCode is the status caddycmd.Main exits with after err: the
// ExitCode of Caddy's (unexported) exit error found in err's tree, else 1.
func mainExitCode(err error) int {
	if err == nil {
		return 0
	}
	code := 1
	var walk func(e error) bool
	walk = func(e error) bool {
		if e == nil {
			return false
		}
		if v := reflect.ValueOf(e); v.Type().String() == "*caddycmd.exitError" {
			code = int(v.Elem().FieldByName("ExitCode").Int())
			return true
		}
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			return walk(u.Unwrap())
		case interface{ Unwrap() []error }:
			for _, e := range u.Unwrap() {
				if walk(e) {
					return true
				}
			}
		}
		return false
	}
	walk(err)
	return code
}

// mustCLI runs the CLI and fails the test unless it exits 0.
func mustCLI(t *testing.T, stdin string, args ...string) cliResult {
	t.Helper()
	r := runCLI(t, stdin, args...)
	if r.code != 0 {
		t.Fatalf("caddy mcp-token %s: %s", strings.Join(args, " "), r)
	}
	return r
}

func writeTestFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCLIRoundTrip(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256", "EdDSA", "HS256"} {
		t.Run(alg, func(t *testing.T) {
			dir := t.TempDir()
			mustCLI(t, "", "keygen", "--alg", alg, "--out", dir)
			keyFile, keyLine := filepath.Join(dir, "private.pem"), "public_key "+filepath.Join(dir, "public.pem")
			if alg == "HS256" {
				keyFile, keyLine = filepath.Join(dir, "secret.txt"), "hmac_secret {file."+filepath.Join(dir, "secret.txt")+"}"
			} else {
				var jwks struct{ Keys []map[string]any }
				b, _ := os.ReadFile(filepath.Join(dir, "jwks.json"))
				if json.Unmarshal(b, &jwks) != nil || len(jwks.Keys) != 1 || jwks.Keys[0]["alg"] != alg {
					t.Fatalf("jwks.json: %s", b)
				}
				if st, _ := os.Stat(keyFile); st.Mode().Perm() != 0o600 {
					t.Fatalf("private key mode %v", st.Mode())
				}
			}
			caddyfile := writeTestFile(t, dir, "Caddyfile", fmt.Sprintf("example.com {\n\tmcp_token /mcp* {\n\t\t%s\n\t\taudience cli-api\n\t\trequired_scopes mcp:read\n\t}\n}\n", keyLine))
			tok := strings.TrimSpace(mustCLI(t, "", "mint", "--key", keyFile, "--aud", "cli-api", "--scope", "mcp:read mcp:write", "--claim", "client_id=cli-client", "--claim", "tier=3").stdout)
			r := runCLI(t, "", "verify", "--config", caddyfile, tok)
			if r.code != 0 || !strings.Contains(r.stdout, "mcp_token at example.com /mcp*: ACCEPT (jwt verifier)") ||
				!strings.Contains(r.stdout, `client_id="cli-client"`) || !strings.Contains(r.stdout, `scopes="mcp:read mcp:write"`) {
				t.Fatalf("verify: %s", r)
			}
			wrongAud := strings.TrimSpace(mustCLI(t, "", "mint", "--key", keyFile, "--aud", "other", "--scope", "mcp:read").stdout)
			r = runCLI(t, "", "verify", "--config", caddyfile, wrongAud)
			if r.code != 1 || !strings.Contains(r.stdout, "REJECT (jwt verifier) 401 bad_audience: Invalid audience") {
				t.Fatalf("verify, wrong audience: %s", r)
			}
			expired := strings.TrimSpace(mustCLI(t, "", "mint", "--key", keyFile, "--aud", "cli-api", "--ttl", "-5m").stdout)
			if r = runCLI(t, "", "verify", "--config", caddyfile, expired); r.code != 1 || !strings.Contains(r.stdout, "401 expired: Token has expired") {
				t.Fatalf("verify, expired: %s", r)
			}
		})
	}
}

func TestCLIInspect(t *testing.T) {
	dir := t.TempDir()
	mustCLI(t, "", "keygen", "--alg", "ES256", "--kid", "k-1", "--out", dir)
	tok := strings.TrimSpace(mustCLI(t, "", "mint", "--key", filepath.Join(dir, "private.pem"), "--iss", "https://iss.example", "--sub", "alice", "--typ", "at+jwt", "--ttl", "2h", "--kid", "k-1").stdout)
	r := mustCLI(t, "", "inspect", tok)
	for _, want := range []string{`"alg": "ES256"`, `"kid": "k-1"`, `"typ": "at+jwt"`, `"iss": "https://iss.example"`, `"sub": "alice"`, "exp: ", "iat: "} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, r)
		}
	}
	if !regexp.MustCompile(`exp: \S+ \(in (1h59m\d+s|2h0m0s)\)`).MatchString(r.stdout) {
		t.Errorf("inspect does not show exp in human form:\n%s", r)
	}
	// The reminder goes to stderr, so that stdout can be piped.
	const warning = "WARNING: decoded only; the signature and claims were NOT verified."
	if strings.Contains(r.stdout, "WARNING") || !strings.Contains(r.stderr, warning) {
		t.Errorf("the not-verified warning belongs on stderr only:\n%s", r)
	}
	if r := runCLI(t, "", "inspect", "not-a-token"); r.code != 1 || !strings.Contains(r.stderr, "Error: not a JWT") {
		t.Errorf("inspect accepted garbage: %s", r)
	}
	if r := runCLI(t, "", "mint", "--key", filepath.Join(dir, "public.pem")); r.code != 2 || !strings.Contains(r.stderr, "a private key is needed") {
		t.Errorf("mint with a public key: %s", r)
	}
	if r := mustCLI(t, "", "keygen", "--alg", "RS256"); !strings.Contains(r.stdout, "# private.pem") || !strings.Contains(r.stdout, "# jwks.json") {
		t.Errorf("keygen to stdout: %s", r)
	}
}

func TestCLIKeygenRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"unknown algorithm", []string{"--alg", "RS999"}, `unsupported algorithm "RS999" (supported: RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA HS256 HS384 HS512)`},
		{"none", []string{"--alg", "none"}, `algorithm "none" is never accepted`},
		{"weak RSA", []string{"--alg", "RS256", "--bits", "1024"}, "RSA key size 1024 bits is not offered: use 2048, 3072, 4096 (mcp_token refuses RSA keys under 2048 bits)"},
		{"odd RSA size", []string{"--alg", "PS256", "--bits", "2047"}, "RSA key size 2047 bits is not offered: use 2048, 3072, 4096"},
		{"bits for EC", []string{"--alg", "ES256", "--bits", "4096"}, "a key size applies to RSA algorithms only"},
		{"force without out", []string{"--alg", "ES256", "--force"}, "--force applies to --out only"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{"keygen", "--out", dir}, tc.args...)
			if tc.name == "force without out" {
				args = append([]string{"keygen"}, tc.args...)
			}
			r := runCLI(t, "", args...)
			if r.code != 2 || !strings.Contains(r.stderr, tc.want) || r.stdout != "" {
				t.Fatalf("want exit 2 and %q on stderr: %s", tc.want, r)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 0 {
				t.Fatalf("files written after a refusal: %v", entries)
			}
		})
	}

	t.Run("existing key kept without --force", func(t *testing.T) {
		dir := t.TempDir()
		mustCLI(t, "", "keygen", "--alg", "ES256", "--out", dir)
		before, _ := os.ReadFile(filepath.Join(dir, "private.pem"))
		r := runCLI(t, "", "keygen", "--alg", "ES256", "--out", dir)
		if r.code != 2 || !strings.Contains(r.stderr, filepath.Join(dir, "private.pem")+" exists: refusing to replace it") || !strings.Contains(r.stderr, "--force") {
			t.Fatalf("overwrite without --force: %s", r)
		}
		if after, _ := os.ReadFile(filepath.Join(dir, "private.pem")); !bytes.Equal(before, after) {
			t.Fatal("the private key was replaced without --force")
		}
		// Only the public files left: still refused (they belong to the key).
		_ = os.Remove(filepath.Join(dir, "private.pem"))
		if r := runCLI(t, "", "keygen", "--alg", "ES256", "--out", dir); r.code != 2 || !strings.Contains(r.stderr, "public.pem exists") {
			t.Fatalf("overwrite of public.pem without --force: %s", r)
		}
		_ = os.WriteFile(filepath.Join(dir, "private.pem"), before, 0o644)
		mustCLI(t, "", "keygen", "--alg", "ES256", "--out", dir, "--force")
		after, _ := os.ReadFile(filepath.Join(dir, "private.pem"))
		if bytes.Equal(before, after) {
			t.Fatal("--force did not replace the key")
		}
		if st, _ := os.Stat(filepath.Join(dir, "private.pem")); st.Mode().Perm() != 0o600 {
			t.Fatalf("a replaced private key has mode %v, want 0600", st.Mode().Perm())
		}
	})

	t.Run("RSA sizes offered", func(t *testing.T) {
		r := mustCLI(t, "", "keygen", "--alg", "PS384", "--bits", "3072", "--json")
		var out struct{ Alg, Kid string }
		if json.Unmarshal([]byte(r.stdout), &out) != nil || out.Alg != "PS384" || out.Kid == "" {
			t.Fatalf("keygen PS384 3072: %s", r)
		}
	})
}

func TestCLIMintKeyMustFitAlg(t *testing.T) {
	dir := t.TempDir()
	mustCLI(t, "", "keygen", "--alg", "ES256", "--out", dir)
	key := filepath.Join(dir, "private.pem")
	for _, tc := range []struct{ alg, want string }{
		{"RS256", "the key is EC P-256, which cannot sign RS256; use ES256"},
		{"ES384", "the key is EC P-256, which cannot sign ES384; use ES256"},
		{"HS256", "the key is EC P-256, which cannot sign HS256"},
		{"RS999", `unsupported algorithm "RS999"`},
	} {
		t.Run(tc.alg, func(t *testing.T) {
			r := runCLI(t, "", "mint", "--key", key, "--alg", tc.alg)
			if r.code != 2 || !strings.Contains(r.stderr, key+" with --alg "+tc.alg+": "+tc.want) || r.stdout != "" {
				t.Fatalf("want exit 2 and %q: %s", tc.want, r)
			}
		})
	}
	t.Run("short HMAC secret", func(t *testing.T) {
		secret := writeTestFile(t, dir, "short.txt", "too-short\n")
		r := runCLI(t, "", "mint", "--key", secret)
		if r.code != 2 || !strings.Contains(r.stderr, "HMAC key for HS256 must be at least 32 bytes (got 9)") {
			t.Fatalf("mint with a short secret: %s", r)
		}
	})
}

// staticCaddyfile has a handler that accepts "dev-token-0123" and one
// that accepts nothing (another static token), in sites the adapter
// reorders.
const staticCaddyfile = `b.example.com, c.example.com {
	mcp_token /mcp* {
		static_token dev-token-0123 cli-client mcp:read
	}
	mcp_token /other/long/path* {
		static_token another-token-4567 someone
	}
}
http://localhost:9080 {
	route /api/* {
		mcp_token {
			static_token another-token-4567 someone
		}
	}
}
:8081 {
	@m path /q*
	mcp_token @m {
		static_token another-token-4567 someone
	}
}
`

func TestCLIVerifyNamesHandlersInCaddyfileOrder(t *testing.T) {
	config := writeTestFile(t, t.TempDir(), "Caddyfile", staticCaddyfile)
	r := mustCLI(t, "", "verify", "--config", config, "dev-token-0123")
	var got []string
	for _, line := range strings.Split(r.stdout, "\n") {
		if site, _, ok := strings.Cut(line, ": "); ok && strings.HasPrefix(site, "mcp_token at ") {
			got = append(got, strings.TrimPrefix(site, "mcp_token at "))
		}
	}
	want := []string{"b.example.com, c.example.com /mcp*", "b.example.com, c.example.com /other/long/path*", "http://localhost:9080 /api/*", ":8081 /q*"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("handlers named %q, want %q:\n%s", got, want, r)
	}
	if !strings.Contains(r.stdout, `mcp_token at b.example.com, c.example.com /mcp*: ACCEPT (static verifier) client_id="cli-client"`) {
		t.Fatalf("verdict of the first handler:\n%s", r)
	}
}

// TestCLIVerifyJSONConfig: in a JSON config, handlers and authentication
// providers are named by host, listener and path; one that cannot be
// provisioned is a configuration error (exit 2) unless another accepts.
func TestCLIVerifyJSONConfig(t *testing.T) {
	route := func(path, handler string) string {
		return `{"match": [{"path": ["` + path + `"]}], "handle": [` + handler + `]}`
	}
	static := `{"static_tokens": [{"token": "dev-token-0123", "client_id": "json-client"}]}`
	doc := func(first string) string {
		return `{"apps": {"http": {"servers": {
	"srv10": {"listen": [":8443"], "routes": [` + route("/late*", `{"handler": "mcp_token", "static_tokens": [{"token": "x-token-000000", "client_id": "c"}]}`) + `]},
	"srv2": {"listen": [":9443"], "routes": [{"match": [{"host": ["api.example.com"]}], "handle": [{"handler": "subroute", "routes": [
		` + route("/mcp*", first) + `,
		` + route("/auth*", `{"handler": "authentication", "providers": {"mcp_token": `+static+`}}`) + `]}]}]}}}}}`
	}
	dir := t.TempDir()
	good := writeTestFile(t, dir, "good.json", doc(`{"handler": "mcp_token", "static_tokens": [{"token": "other-token-99", "client_id": "c"}]}`))
	r := mustCLI(t, "", "verify", "-c", good, "--json", "dev-token-0123")
	var out verifyOutput
	if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || len(out.Handlers) != 3 {
		t.Fatalf("verify a JSON config: %v %s", err, r)
	}
	type named struct {
		Site, Path         string
		Provider, Accepted bool
	}
	var got []named
	for _, h := range out.Handlers {
		got = append(got, named{h.Site, h.Path, h.Provider, h.Accepted})
	}
	want := []named{{"api.example.com (:9443)", "/mcp*", false, false}, {"api.example.com (:9443)", "/auth*", true, true}, {"srv10 (:8443)", "/late*", false, false}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("handlers %+v, want %+v", got, want)
	}

	broken := writeTestFile(t, dir, "broken.json", doc(`{"handler": "mcp_token", "hmac_secret": "short"}`))
	r = runCLI(t, "", "verify", "-c", broken, "--json", "other-token")
	if r.code != 2 || json.Unmarshal([]byte(r.stdout), &out) != nil || !strings.Contains(out.Handlers[0].ConfigError, "at least 32 bytes") ||
		!strings.Contains(r.stderr, "1 of 3 mcp_token configurations in "+broken+" could not be loaded") {
		t.Fatalf("verify with a config error: %s", r)
	}
	if r = runCLI(t, "", "verify", "-c", broken, "dev-token-0123"); r.code != 0 || !strings.Contains(r.stdout, "mcp_token at api.example.com (:9443) /mcp*: CONFIG ERROR: ") {
		t.Fatalf("verify with a config error and an acceptance: %s", r)
	}
}

// TestCLIWarningsArePlainLinesOnStderr: provisioning warnings reach stderr
// as one plain line each, never stdout, and never with a Go stack trace.
func TestCLIWarningsArePlainLinesOnStderr(t *testing.T) {
	config := writeTestFile(t, t.TempDir(), "Caddyfile", staticCaddyfile)
	r := mustCLI(t, "", "verify", "--config", config, "dev-token-0123")
	if !regexp.MustCompile(`(?m)^WARN\tstatic tokens are configured: for DEVELOPMENT ONLY, never in production\t\{"count": 1\}$`).MatchString(r.stderr) {
		t.Fatalf("no plain warning line on stderr: %s", r)
	}
	if strings.Contains(r.stdout, "WARN") {
		t.Fatalf("a warning on stdout: %s", r)
	}
	if strings.Contains(r.stderr, ".go:") || strings.Contains(r.stderr, "github.com/") {
		t.Fatalf("a stack trace or caller on stderr: %s", r)
	}
}

func TestCLITokenFromStdinAndBearer(t *testing.T) {
	config := writeTestFile(t, t.TempDir(), "Caddyfile", staticCaddyfile)
	for _, tc := range []struct {
		name, stdin, arg string
		code             int
	}{
		{"stdin", "dev-token-0123\n", "-", 0},
		{"stdin with Bearer", "Bearer dev-token-0123\r\n", "-", 0},
		{"stdin with the header line", "Authorization: Bearer dev-token-0123\n", "-", 0},
		{"argument with Bearer", "", "Bearer dev-token-0123", 0},
		{"argument with lowercase bearer", "", "bearer dev-token-0123", 0},
		{"wrong token on stdin", "Bearer nope-token\n", "-", 1},
		{"empty stdin", "", "-", 2},
		{"only Bearer", "", "Bearer ", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, tc.stdin, "verify", "--config", config, "--json", tc.arg)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d: %s", r.code, tc.code, r)
			}
		})
	}
	t.Run("inspect reads stdin", func(t *testing.T) {
		kp := devtools.MustGenerateKey("ES256")
		tok := kp.MustToken(devtools.TokenOptions{Subject: "from-stdin"})
		r := mustCLI(t, "Bearer "+tok+"\n", "inspect", "--json", "-")
		var out inspectOutput
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || out.Claims["sub"] != "from-stdin" {
			t.Fatalf("inspect from stdin: %v %s", err, r)
		}
	})
}

func TestCLIExitCodes(t *testing.T) {
	dir := t.TempDir()
	config := writeTestFile(t, dir, "Caddyfile", staticCaddyfile)
	broken := writeTestFile(t, dir, "Broken", "example.com {\n\tmcp_token {\n\t\tfrobnicate\n\t}\n}\n")
	none := writeTestFile(t, dir, "None", "example.com {\n\trespond ok\n}\n")
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"accepted", []string{"verify", "-c", config, "dev-token-0123"}, 0, ""},
		{"refused", []string{"verify", "-c", config, "wrong-token"}, 1, "Error: the token is refused by every mcp_token in " + config},
		{"no config flag", []string{"verify", "dev-token-0123"}, 2, "Error: --config is required\nRun 'caddy mcp-token verify --help' for usage."},
		{"missing config file", []string{"verify", "-c", filepath.Join(dir, "nope"), "t"}, 2, "no such file or directory"},
		{"config that does not adapt", []string{"verify", "-c", broken, "t"}, 2, "unrecognized subdirective 'frobnicate'"},
		{"config without mcp_token", []string{"verify", "-c", none, "t"}, 2, "has no mcp_token handler or provider"},
		{"unknown adapter", []string{"verify", "-c", config, "-a", "yaml9", "t"}, 2, `unknown adapter "yaml9"`},
		{"unknown flag", []string{"verify", "--bogus"}, 2, "Error: unknown flag: --bogus\nRun 'caddy mcp-token verify --help' for usage."},
		{"bad flag value", []string{"verify", "--timeout", "soon", "-c", config, "t"}, 2, `invalid argument "soon" for "--timeout"`},
		{"no token", []string{"verify", "-c", config}, 2, "Error: accepts 1 arg(s), received 0"},
		{"two tokens", []string{"inspect", "a", "b"}, 2, "Error: accepts 1 arg(s), received 2"},
		{"argument to keygen", []string{"keygen", "RS256"}, 2, `unknown command "RS256" for "caddy mcp-token keygen"`},
		{"unknown subcommand", []string{"verfy"}, 2, `Error: unknown command "verfy" for "caddy mcp-token"; did you mean "verify"?`},
		{"garbage to inspect", []string{"inspect", "garbage"}, 1, "Error: not a JWT"},
		{"zero ttl", []string{"mint", "--key", config, "--ttl", "0"}, 2, "--ttl must not be 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, "", tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
				t.Fatalf("want exit %d and %q on stderr: %s", tc.code, tc.stderr, r)
			}
			if strings.Count(r.stderr, "Error:") > 1 {
				t.Fatalf("the error is reported more than once: %s", r)
			}
		})
	}
}

func TestCLIJSONOutput(t *testing.T) {
	dir := t.TempDir()
	t.Run("keygen", func(t *testing.T) {
		var printed keygenOutput
		r := mustCLI(t, "", "keygen", "--alg", "ES256", "--kid", "j-1", "--json")
		if err := json.Unmarshal([]byte(r.stdout), &printed); err != nil || printed.Alg != "ES256" || printed.Kid != "j-1" ||
			!strings.HasPrefix(printed.PrivateKey, "-----BEGIN PRIVATE KEY-----") || !strings.HasPrefix(printed.PublicKey, "-----BEGIN PUBLIC KEY-----") {
			t.Fatalf("keygen --json: %v %s", err, r)
		}
		if _, _, err := jwks.ParseSet(printed.JWKS, false); err != nil {
			t.Fatalf("keygen --json jwks: %v", err)
		}
		var written map[string]any
		r = mustCLI(t, "", "keygen", "--alg", "HS384", "--out", dir, "--json")
		if err := json.Unmarshal([]byte(r.stdout), &written); err != nil || written["alg"] != "HS384" ||
			!reflect.DeepEqual(written["files"], []any{filepath.Join(dir, "secret.txt")}) || written["private_key"] != nil {
			t.Fatalf("keygen --out --json: %v %s", err, r)
		}
	})

	t.Run("inspect", func(t *testing.T) {
		kp := devtools.MustGenerateKey("EdDSA")
		tok := kp.MustToken(devtools.TokenOptions{Audience: []string{"a", "b"}, ExpiresIn: -5 * time.Minute})
		r := mustCLI(t, "", "inspect", "--json", tok)
		var out map[string]any
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatalf("inspect --json is not JSON: %v %s", err, r)
		}
		claims, _ := out["claims"].(map[string]any)
		times, _ := out["times"].(map[string]any)
		problems, _ := out["problems"].([]any)
		if out["verified"] != false || out["expired"] != true || claims["sub"] != "fastmcp-user" || times["exp"] == nil ||
			len(problems) != 1 || !strings.HasPrefix(problems[0].(string), "expired ") {
			t.Fatalf("inspect --json: %s", r)
		}
		if !strings.Contains(r.stderr, "NOT verified") {
			t.Fatalf("inspect --json without the warning on stderr: %s", r)
		}
	})

	t.Run("verify", func(t *testing.T) {
		config := writeTestFile(t, dir, "Caddyfile", staticCaddyfile)
		r := mustCLI(t, "", "verify", "-c", config, "--json", "dev-token-0123")
		var out verifyOutput
		if err := json.Unmarshal([]byte(r.stdout), &out); err != nil {
			t.Fatalf("verify --json is not JSON: %v %s", err, r)
		}
		if !out.Accepted || len(out.Handlers) != 4 {
			t.Fatalf("verify --json: %s", r)
		}
		first, second := out.Handlers[0], out.Handlers[1]
		if first.Site != "b.example.com, c.example.com" || first.Path != "/mcp*" || !first.Accepted || first.Verifier != "static" ||
			first.Identity == nil || first.Identity.ClientID != "cli-client" || !reflect.DeepEqual(first.Identity.Scopes, []string{"mcp:read"}) {
			t.Fatalf("first handler: %+v", first)
		}
		if second.Accepted || second.Status != 401 || second.Reason == "" || second.Identity != nil {
			t.Fatalf("second handler: %+v", second)
		}
		// Field names are part of the interface.
		for _, key := range []string{`"accepted": true`, `"handlers": [`, `"site": "b.example.com, c.example.com"`, `"path": "/mcp*"`,
			`"provider": false`, `"verifier": "static"`, `"identity": {`, `"client_id": "cli-client"`, `"status": 401`, `"reason": "`, `"description": "`, `"detail": "`} {
			if !strings.Contains(r.stdout, key) {
				t.Errorf("verify --json lacks %s", key)
			}
		}
		r = runCLI(t, "", "verify", "-c", config, "--json", "wrong-token")
		if r.code != 1 || json.Unmarshal([]byte(r.stdout), &out) != nil || out.Accepted {
			t.Fatalf("verify --json, refused: %s", r)
		}
	})
}

func TestCLIHelp(t *testing.T) {
	root := &cobra.Command{Use: "mcp-token"}
	addMCPTokenCommands(root)
	for _, c := range append(root.Commands(), root) {
		t.Run(c.Name(), func(t *testing.T) {
			name := c.Name()
			if c == root {
				name = ""
			}
			if len(c.Long) < 100 || !strings.Contains(c.Example, "caddy mcp-token "+name) {
				t.Fatalf("%s: a long help and an example are wanted; Long %q, Example %q", c.Name(), c.Long, c.Example)
			}
			if c != root {
				if f := c.Flags().Lookup("json"); (f == nil) != (c.Name() == "mint") {
					t.Fatalf("%s: --json flag %v", c.Name(), f)
				}
			}
		})
	}
	r := mustCLI(t, "", "verify", "--help")
	if !strings.Contains(r.stdout, "Examples:") || !strings.Contains(r.stdout, "Exit status: 0 when at least one handler accepts") {
		t.Fatalf("verify --help: %s", r)
	}
}

// weakRSAJWK is the public JWK of a fresh 1024-bit RSA key.
func weakRSAJWK(t *testing.T, kid string) map[string]any {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	return map[string]any{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig", "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

func TestCLIJWKS(t *testing.T) {
	good, enc := devtools.MustGenerateKey("ES256"), devtools.MustGenerateKey("RS256")
	good.Kid, enc.Kid = "good", "enc"
	encJWK, _ := enc.JWK()
	encJWK["use"] = "enc"
	keys := devtools.NewJWKSServer(good)
	defer keys.Close()
	keys.AddRaw(weakRSAJWK(t, "weak"))
	keys.AddRaw(encJWK)
	keys.AddRaw(map[string]any{"kty": "PQC", "kid": "future", "pub": "AAAA"})

	var issuer string
	idp := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/oauth-authorization-server" {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": issuer, "jwks_uri": keys.JWKSURL()})
	}))
	defer idp.Close()
	issuer = idp.URL

	wantLines := []string{
		`(?m)^ACCEPT\s+"good"\s+EC\s+P-256\s+ES256\s+sig\s+EC P-256\s*$`,
		`(?m)^REFUSE\s+"weak"\s+RSA\s+-\s+RS256\s+sig\s+-\s+RSA key has 1024 bits, at least 2048 are required$`,
		`(?m)^REFUSE\s+"enc"\s+RSA\s+-\s+RS256\s+enc\s+-\s+use "enc" is not sig$`,
		`(?m)^REFUSE\s+"future"\s+PQC\s+-\s+-\s+-\s+-\s+.*unsupported key: PQC \(kty\)$`,
		`(?m)^1 of 4 keys usable by mcp_token$`,
	}
	for _, tc := range []struct {
		name string
		args []string
		head string
	}{
		{"a JWKS URL", []string{keys.JWKSURL()}, "jwks_uri: " + keys.JWKSURL()},
		{"an issuer", []string{issuer}, "issuer:   " + issuer + "\njwks_uri: " + keys.JWKSURL()},
		{"an issuer, said so", []string{"--issuer", issuer}, "issuer:   " + issuer},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustCLI(t, "", append([]string{"jwks"}, tc.args...)...)
			if !strings.HasPrefix(r.stdout, tc.head) {
				t.Fatalf("want %q first: %s", tc.head, r)
			}
			for _, re := range wantLines {
				if !regexp.MustCompile(re).MatchString(r.stdout) {
					t.Errorf("no line matching %s: %s", re, r)
				}
			}
		})
	}

	t.Run("json", func(t *testing.T) {
		r := mustCLI(t, "", "jwks", "--json", issuer)
		var in jwks.Inspection
		if err := json.Unmarshal([]byte(r.stdout), &in); err != nil || in.Issuer != issuer || in.JWKSURL != keys.JWKSURL() || in.Usable != 1 || len(in.Keys) != 4 {
			t.Fatalf("jwks --json: %v %s", err, r)
		}
		if k := in.Keys[1]; k.Kid != "weak" || k.Accepted || !strings.Contains(k.Reason, "1024 bits") {
			t.Fatalf("weak key: %+v", k)
		}
		for _, key := range []string{`"issuer": `, `"jwks_uri": `, `"keys": [`, `"index": 0`, `"kid": "good"`, `"kty": "EC"`, `"crv": "P-256"`, `"alg": "ES256"`, `"use": "sig"`,
			`"key": "EC P-256"`, `"accepted": true`, `"reason": "RSA key has 1024 bits`, `"usable": 1`} {
			if !strings.Contains(r.stdout, key) {
				t.Errorf("jwks --json lacks %s", key)
			}
		}
	})

	t.Run("an HMAC key refuses the set", func(t *testing.T) {
		keys.AddRaw(map[string]any{"kty": "oct", "kid": "hmac", "alg": "HS256", "k": base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("s", 32)))})
		r := runCLI(t, "", "jwks", keys.JWKSURL())
		if r.code != 1 || !regexp.MustCompile(`(?m)^REFUSE\s+"hmac"\s+oct\s+-\s+HS256\s+-\s+-\s+symmetric \(oct\) keys are never taken from a JWKS`).MatchString(r.stdout) ||
			!strings.Contains(r.stdout, "the whole set is refused: JWKS mixes symmetric and asymmetric keys") ||
			!strings.Contains(r.stdout, "0 of 5 keys usable") || !strings.Contains(r.stderr, "Error: mcp_token would not load this key set") {
			t.Fatalf("set with an oct key: %s", r)
		}
	})

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"nothing there", []string{idp.URL + "/nothing"}, 1, "no JWK Set from " + idp.URL + "/nothing: as a JWKS URL: fetching"},
		{"a JWKS URL is no issuer", []string{"--issuer", keys.JWKSURL()}, 1, "as an issuer: discovering jwks_uri"},
		{"an issuer is no JWKS URL", []string{"--jwks-uri", issuer}, 1, "as a JWKS URL: fetching " + issuer + ": status 404"},
		{"not a URL", []string{"accounts.example.com"}, 2, "is not an absolute http(s) URL"},
		{"both modes", []string{"--issuer", "--jwks-uri", issuer}, 2, "--issuer and --jwks-uri exclude each other"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runCLI(t, "", append([]string{"jwks"}, tc.args...)...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.want) {
				t.Fatalf("want exit %d and %q: %s", tc.code, tc.want, r)
			}
		})
	}
}

// TestCLIExitStatusReachesCaddy: the error a failing command returns
// carries Caddy's own exit error, which caddycmd.Main exits with.
func TestCLIExitStatusReachesCaddy(t *testing.T) {
	r := runCLI(t, "", "verify", "--bogus")
	var es *exitStatus
	if !errors.As(r.err, &es) || es.code != 2 || es.caddy == nil || mainExitCode(es.caddy) != 2 {
		t.Fatalf("a usage error does not carry Caddy's exit status 2: %#v", r.err)
	}
}

// TestE2ECLIMintedToken: a token from `mint` is accepted end to end by a
// Caddy configured with the public key from `keygen`.
func TestE2ECLIMintedToken(t *testing.T) {
	dir := t.TempDir()
	mustCLI(t, "", "keygen", "--alg", "EdDSA", "--out", dir)
	tok := mustCLI(t, "", "mint", "--key", filepath.Join(dir, "private.pem"), "--aud", "cli-e2e", "--claim", "client_id=minted").stdout
	startCaddy(t, caddyGlobal+fmt.Sprintf(`
http://localhost:9080 {
	mcp_token /mcp* {
		public_key %s
		audience cli-e2e
	}
	respond /mcp* "hello {http.auth.user.client_id}" 200
}
`, filepath.Join(dir, "public.pem")), "caddyfile")
	resp, body := post(t, e2eBase+"/mcp", strings.TrimSpace(tok), toolsList)
	if resp.StatusCode != 200 || body != "hello minted" {
		t.Fatalf("minted token through Caddy: %d %s", resp.StatusCode, body)
	}
}
