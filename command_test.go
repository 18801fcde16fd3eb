package mcptoken

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// runCLI runs `caddy mcp-token <args>` in-process and returns its output.
func runCLI(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := &cobra.Command{Use: "mcp-token", SilenceUsage: true, SilenceErrors: true}
	addMCPTokenCommands(root)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.String(), err
}

func TestCLIRoundTrip(t *testing.T) {
	for _, alg := range []string{"RS256", "ES256", "EdDSA", "HS256"} {
		t.Run(alg, func(t *testing.T) {
			dir := t.TempDir()
			out, err := runCLI(t, "keygen", "--alg", alg, "--out", dir)
			if err != nil {
				t.Fatalf("keygen: %v\n%s", err, out)
			}
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
			caddyfile := filepath.Join(dir, "Caddyfile")
			if err := os.WriteFile(caddyfile, []byte(fmt.Sprintf("example.com {\n\tmcp_token /mcp* {\n\t\t%s\n\t\taudience cli-api\n\t\tauthorization_servers https://as.example\n\t\trequired_scopes mcp:read\n\t}\n}\n", keyLine)), 0o600); err != nil {
				t.Fatal(err)
			}
			tok, err := runCLI(t, "mint", "--key", keyFile, "--aud", "cli-api", "--scope", "mcp:read mcp:write", "--claim", "client_id=cli-client", "--claim", "tier=3")
			if err != nil {
				t.Fatalf("mint: %v\n%s", err, tok)
			}
			tok = strings.TrimSpace(tok)
			out, err = runCLI(t, "verify", "--config", caddyfile, tok)
			if err != nil || !strings.Contains(out, "ACCEPT (jwt verifier)") || !strings.Contains(out, `client_id="cli-client"`) || !strings.Contains(out, `scopes="mcp:read mcp:write"`) {
				t.Fatalf("verify: %v\n%s", err, out)
			}
			wrongAud, _ := runCLI(t, "mint", "--key", keyFile, "--aud", "other", "--scope", "mcp:read")
			out, err = runCLI(t, "verify", "--config", caddyfile, strings.TrimSpace(wrongAud))
			if err == nil || !strings.Contains(out, "REJECT (jwt verifier) 401 bad_audience: Invalid audience") {
				t.Fatalf("verify, wrong audience: %v\n%s", err, out)
			}
			expired, _ := runCLI(t, "mint", "--key", keyFile, "--aud", "cli-api", "--ttl", "-5m")
			out, _ = runCLI(t, "verify", "--config", caddyfile, strings.TrimSpace(expired))
			if !strings.Contains(out, "401 expired: Token has expired") {
				t.Fatalf("verify, expired: %s", out)
			}
		})
	}
}

func TestCLIInspect(t *testing.T) {
	dir := t.TempDir()
	if _, err := runCLI(t, "keygen", "--alg", "ES256", "--kid", "k-1", "--out", dir); err != nil {
		t.Fatal(err)
	}
	tok, err := runCLI(t, "mint", "--key", filepath.Join(dir, "private.pem"), "--iss", "https://iss.example", "--sub", "alice", "--typ", "at+jwt", "--ttl", "2h", "--kid", "k-1")
	if err != nil {
		t.Fatal(err)
	}
	out, err := runCLI(t, "inspect", strings.TrimSpace(tok))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"WARNING: decoded only; the signature and claims were NOT verified.", `"alg": "ES256"`, `"kid": "k-1"`, `"typ": "at+jwt"`,
		`"iss": "https://iss.example"`, `"sub": "alice"`, "exp: ", "iat: "} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`exp: \S+ \(in (1h59m\d+s|2h0m0s)\)`).MatchString(out) {
		t.Errorf("inspect does not show exp in human form:\n%s", out)
	}
	if _, err := runCLI(t, "inspect", "not-a-token"); err == nil {
		t.Error("inspect accepted garbage")
	}
	if _, err := runCLI(t, "mint", "--key", filepath.Join(dir, "public.pem")); err == nil || !strings.Contains(err.Error(), "a private key is needed") {
		t.Errorf("mint with a public key: %v", err)
	}
	if out, err := runCLI(t, "keygen", "--alg", "RS256"); err != nil || !strings.Contains(out, "# private.pem") || !strings.Contains(out, "# jwks.json") {
		t.Errorf("keygen to stdout: %v\n%s", err, out)
	}
}

// TestE2ECLIMintedToken: a token from `mint` is accepted end to end by a
// Caddy configured with the public key from `keygen`.
func TestE2ECLIMintedToken(t *testing.T) {
	dir := t.TempDir()
	if _, err := runCLI(t, "keygen", "--alg", "EdDSA", "--out", dir); err != nil {
		t.Fatal(err)
	}
	tok, err := runCLI(t, "mint", "--key", filepath.Join(dir, "private.pem"), "--aud", "cli-e2e", "--claim", "client_id=minted")
	if err != nil {
		t.Fatal(err)
	}
	startCaddy(t, caddyGlobal+fmt.Sprintf(`
http://localhost:9080 {
	mcp_token /mcp* {
		public_key %s
		audience cli-e2e
		authorization_servers https://as.example
	}
	respond /mcp* "hello {http.auth.user.client_id}" 200
}
`, filepath.Join(dir, "public.pem")), "caddyfile")
	resp, body := post(t, e2eBase+"/mcp", strings.TrimSpace(tok), toolsList)
	if resp.StatusCode != 200 || body != "hello minted" {
		t.Fatalf("minted token through Caddy: %d %s", resp.StatusCode, body)
	}
}
