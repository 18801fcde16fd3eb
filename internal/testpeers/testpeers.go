// Package testpeers starts the real third-party peers the tests run
// against: an OAuth/OpenID provider (the npm package oidc-provider) and the
// official TypeScript MCP SDK client. It installs them with `npm ci` from
// testdata/node on first use, so a fresh machine with Node.js needs nothing
// else; without Node.js the tests fail, never skip.
package testpeers

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	installOnce sync.Once
	installErr  error
)

// NodeDir is testdata/node in this repository.
func NodeDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "node")
}

// EnsureNode checks for node and npm and runs `npm ci` when the installed
// packages do not match package-lock.json. It fails the test otherwise.
func EnsureNode(t testing.TB) {
	t.Helper()
	installOnce.Do(func() { installErr = install() })
	if installErr != nil {
		t.Fatalf("the test peers need Node.js %d+ and npm (Debian 12's nodejs is 18: use nodejs.org or NodeSource): %v", MinNodeMajor, installErr)
	}
}

func install() error {
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("%s not found in PATH", tool)
		}
	}
	version, err := exec.Command("node", "--version").Output()
	if err != nil {
		return fmt.Errorf("node --version: %v", err)
	}
	if err := checkNodeVersion(string(version)); err != nil {
		return err
	}
	dir := NodeDir()
	lock, err := os.ReadFile(filepath.Join(dir, "package-lock.json"))
	if err != nil {
		return err
	}
	sum := sha256.Sum256(lock)
	want := hex.EncodeToString(sum[:])
	stamp := filepath.Join(dir, "node_modules", ".installed-from-lock")
	if got, err := os.ReadFile(stamp); err == nil && string(got) == want {
		return nil
	}
	cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("npm ci in %s: %v\n%s", dir, err, out)
	}
	return os.WriteFile(stamp, []byte(want), 0o644)
}

// MinNodeMajor is the oldest Node.js the peers run on: oidc-provider (via
// jose) needs the global WebCrypto of Node.js 20; Debian 12's nodejs is 18.
const MinNodeMajor = 20

// checkNodeVersion refuses a `node --version` output older than MinNodeMajor.
func checkNodeVersion(version string) error {
	v := strings.TrimPrefix(strings.TrimSpace(version), "v")
	major, _, _ := strings.Cut(v, ".")
	n, err := strconv.Atoi(major)
	if err != nil {
		return fmt.Errorf("node --version printed %q, not a version", strings.TrimSpace(version))
	}
	if n < MinNodeMajor {
		return fmt.Errorf("node %s is too old: the test peers need Node.js %d or newer", strings.TrimSpace(version), MinNodeMajor)
	}
	return nil
}

// TSClientResult is what testdata/node/ts-client.mjs reports.
type TSClientResult struct {
	Tools               []string        `json:"tools"`
	Echo                json.RawMessage `json:"echo"`
	Error               string          `json:"error"`
	Status              any             `json:"status"`
	Challenge           string          `json:"challenge"`
	ResourceMetadataURL string          `json:"resourceMetadataUrl"`
	Scope               string          `json:"scope"`
	Fetched             []string        `json:"fetched"`
	// Requests are the SDK's requests in order, as "METHOD URL STATUS".
	Requests []string `json:"requests"`
	// Reconnected: the SDK needed a second connect after its OAuth flow.
	Reconnected bool `json:"reconnected"`
}

// RunTSClient runs the official TypeScript MCP SDK client against endpoint
// (with a bearer token, or none to see the SDK's OAuth discovery).
func RunTSClient(t testing.TB, endpoint, token string) TSClientResult {
	t.Helper()
	args := []string{endpoint}
	if token != "" {
		args = append(args, token)
	}
	return runTSClient(t, args...)
}

// RunTSClientCredentials runs the TypeScript SDK client against endpoint
// with the SDK's ClientCredentialsProvider (as ClientID, expecting
// issuer): from the 401 it discovers the authorization server, gets a
// token by the client credentials grant for scope, and calls the tools.
func RunTSClientCredentials(t testing.TB, endpoint, issuer, scope string) TSClientResult {
	t.Helper()
	return runTSClient(t, endpoint, "--client-credentials", ClientID, ClientSecret, issuer, scope)
}

func runTSClient(t testing.TB, args ...string) TSClientResult {
	t.Helper()
	EnsureNode(t)
	cmd := exec.Command("node", append([]string{"ts-client.mjs"}, args...)...)
	cmd.Dir = NodeDir()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	timer := time.AfterFunc(60*time.Second, func() {
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
	})
	defer timer.Stop()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ts-client.mjs: %v\n%s", err, stderr.String())
	}
	var res TSClientResult
	if err := json.Unmarshal(bytes.TrimSpace(out), &res); err != nil {
		t.Fatalf("ts-client.mjs printed %q: %v\n%s", out, err, stderr.String())
	}
	return res
}

// OIDC is a running oidc-provider (see testdata/node/oidc-server.mjs).
type OIDC struct {
	Issuer string
	cmd    *exec.Cmd
	stderr *bytes.Buffer
}

// Client credentials of the provider's clients.
const (
	ClientID      = "mcp-client"
	ClientSecret  = "mcp-client-secret"
	GatewayID     = "mcp-gateway"
	GatewayPostID = "mcp-gateway-post"
	GatewaySecret = "mcp-gateway-secret"
	// OpaqueResource and JWTResource select the access token format.
	OpaqueResource = "urn:mcp:opaque"
	JWTResource    = "urn:mcp:jwt"
	// SigningKID is the kid of the provider's JWT signing key.
	SigningKID = "oidc-test-rs256"
)

// StartOIDC starts the provider on 127.0.0.1 and stops it when the test ends.
func StartOIDC(t testing.TB) *OIDC {
	t.Helper()
	return StartOIDCWith(t, OIDCOptions{})
}

// OIDCOptions configure the provider StartOIDCWith starts.
type OIDCOptions struct {
	// JWTResources are more resource indicators (RFC 8707), such as an
	// MCP endpoint's URL, for which the provider issues JWT access tokens
	// with aud = the resource.
	JWTResources []string
}

// StartOIDCWith starts the provider with opts on 127.0.0.1 and stops it
// when the test ends.
func StartOIDCWith(t testing.TB, opts OIDCOptions) *OIDC {
	t.Helper()
	EnsureNode(t)
	cmd := exec.Command("node", "oidc-server.mjs")
	cmd.Dir = NodeDir()
	cmd.Env = append(os.Environ(), "JWT_RESOURCES="+strings.Join(opts.JWTResources, ","))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	o := &OIDC{cmd: cmd, stderr: &bytes.Buffer{}}
	cmd.Stderr = o.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting oidc-provider: %v", err)
	}
	t.Cleanup(o.stop)
	var info struct{ Issuer string }
	if err := ReadyLine(stdout, 60*time.Second, &info); err != nil {
		t.Fatalf("oidc-provider: %v: %s", err, o.stderr.String())
	}
	o.Issuer = info.Issuer
	return o
}

// ReadyLine waits for the "READY <json>" line a test peer prints on r
// when it listens, and decodes the JSON into info.
func ReadyLine(r io.Reader, timeout time.Duration, info any) error {
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), "READY "); ok {
				ready <- line
			}
		}
		close(ready)
	}()
	select {
	case line, ok := <-ready:
		if !ok {
			return errors.New("exited before it was ready")
		}
		if err := json.Unmarshal([]byte(line), info); err != nil {
			return fmt.Errorf("ready line %q: %v", line, err)
		}
		return nil
	case <-time.After(timeout):
		return fmt.Errorf("not ready within %s", timeout)
	}
}

func (o *OIDC) stop() {
	if o.cmd.Process != nil {
		_ = syscall.Kill(-o.cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = o.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-o.cmd.Process.Pid, syscall.SIGKILL)
		}
	}
}

// Endpoints of the provider.
func (o *OIDC) TokenURL() string         { return o.Issuer + "/token" }
func (o *OIDC) IntrospectionURL() string { return o.Issuer + "/token/introspection" }
func (o *OIDC) RevocationURL() string    { return o.Issuer + "/token/revocation" }
func (o *OIDC) JWKSURL() string          { return o.Issuer + "/jwks" }

// Token gets an access token by the client credentials grant for resource
// with the given scopes.
func (o *OIDC) Token(t testing.TB, resource string, scopes ...string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "resource": {resource}, "scope": {strings.Join(scopes, " ")}}
	var out struct {
		AccessToken string `json:"access_token"`
	}
	o.post(t, o.TokenURL(), form, &out)
	if out.AccessToken == "" {
		t.Fatal("no access token from the provider")
	}
	return out.AccessToken
}

// Revoke revokes an access token at the provider (RFC 7009).
func (o *OIDC) Revoke(t testing.TB, token string) {
	t.Helper()
	o.post(t, o.RevocationURL(), url.Values{"token": {token}, "token_type_hint": {"access_token"}}, nil)
}

func (o *OIDC) post(t testing.TB, endpoint string, form url.Values, into any) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(ClientID, ClientSecret)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", endpoint, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: %d %s", endpoint, resp.StatusCode, body)
	}
	if into != nil {
		if err := json.Unmarshal(body, into); err != nil {
			t.Fatalf("POST %s: %v", endpoint, err)
		}
	}
}
