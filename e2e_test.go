package mcptoken

// End-to-end tests: a real Caddy started in-process from a Caddyfile
// (caddytest: one Caddy per test process, admin localhost:2999, http 9080),
// in front of a real MCP server (official Go SDK) on 127.0.0.1, reached by
// the SDK's client. They live in this package only, since go test runs
// packages as parallel processes and caddytest binds fixed ports.

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddytest"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcptoken/caddy-mcp-token/devtools"
	"github.com/mcptoken/caddy-mcp-token/internal/mcpdemo"
)

const (
	e2eBase     = "http://localhost:9080"
	e2eIssuer   = "https://issuer.e2e.test"
	e2eAudience = "mcp-e2e"
)

// startCaddy loads cfg into the test process's Caddy. caddytest skips a
// test whose prerequisites are missing; here that is a failure, so that a
// broken setup can never pass silently (only -short skips on purpose).
func startCaddy(t *testing.T, cfg, adapter string) *caddytest.Tester {
	t.Helper()
	loaded := false
	defer func() {
		if !loaded && !testing.Short() {
			t.Errorf("Caddy could not be started in-process (caddytest skipped or failed)")
		}
	}()
	tc := caddytest.NewTester(t)
	tc.InitServer(cfg, adapter)
	loaded = !t.Failed()
	if loaded {
		caddyStarted.Store(true)
	}
	return tc
}

// startCaddyFresh starts cfg as at a first start: it first loads a config
// without mcp_token, so that no mcp_token is serving when cfg loads (a
// reload over one waits for new key sources; see pools.go).
func startCaddyFresh(t *testing.T, cfg, adapter string) *caddytest.Tester {
	t.Helper()
	startCaddy(t, caddyGlobal+"\nhttp://localhost:9080 {\n\trespond 404\n}\n", "caddyfile")
	return startCaddy(t, cfg, adapter)
}

// caddyGlobal is the global options block every e2e config starts with:
// every log line, down to DEBUG, goes to the file that TestMain scans for
// tokens and secrets (see leak_test.go).
var caddyGlobal = `{
	admin localhost:2999
	http_port 9080
	https_port 9443
	grace_period 1ns
	skip_install_trust
	log {
		output file ` + caddyLogFile + `
		level DEBUG
	}
}
`

type e2eEnv struct {
	key     *devtools.KeyPair
	rec     *mcpdemo.Recorder
	backend string
}

func newE2E(t *testing.T) *e2eEnv {
	t.Helper()
	env := &e2eEnv{key: devtools.MustGenerateKey("RS256")}
	env.rec, env.backend = startBackend(t)
	addr := env.backend
	pub := mustPEM(t, env.key)
	startCaddy(t, caddyGlobal+fmt.Sprintf(`
http://localhost:9080 {
	handle /mcp* {
		mcp_token {
			issuer %[1]s
			audience %[2]s
			public_key <<PEM_END
%[3]sPEM_END
			required_scopes mcp:read
		}
		reverse_proxy %[4]s {
			header_up X-MCP-Client {http.auth.user.client_id}
			header_up X-MCP-Scopes {http.auth.user.scopes}
		}
	}
	handle_path /fwd/* {
		mcp_token {
			static_token dev-forward-token fwd-client mcp:read
			forward_token
		}
		rewrite * /mcp
		reverse_proxy %[4]s
	}
}
`, e2eIssuer, e2eAudience, pub, addr), "caddyfile")
	return env
}

func (e *e2eEnv) token(mod func(*devtools.TokenOptions)) string {
	o := devtools.TokenOptions{
		Subject: "user-1", Issuer: e2eIssuer, Audience: []string{e2eAudience},
		Scopes: []string{"mcp:read"}, Claims: map[string]any{"client_id": "e2e-client"},
	}
	if mod != nil {
		mod(&o)
	}
	return e.key.MustToken(o)
}

type bearerTransport struct{ token string }

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if b.token != "" {
		r.Header.Set("Authorization", "Bearer "+b.token)
	}
	return http.DefaultTransport.RoundTrip(r)
}

func connect(ctx context.Context, endpoint, token string) (*mcp.ClientSession, error) {
	remember(token)
	client := mcp.NewClient(&mcp.Implementation{Name: "e2e-client", Version: "1.0.0"}, nil)
	return client.Connect(ctx, &mcp.StreamableClientTransport{
		Endpoint:             endpoint,
		HTTPClient:           &http.Client{Transport: bearerTransport{token}, Timeout: 10 * time.Second},
		DisableStandaloneSSE: true,
		MaxRetries:           -1,
	}, nil)
}

func structured(t *testing.T, res *mcp.CallToolResult, into any) {
	t.Helper()
	if res.IsError {
		t.Fatalf("tool error: %+v", res.Content)
	}
	b, err := json.Marshal(res.StructuredContent)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, into); err != nil {
		t.Fatalf("structured content %s: %v", b, err)
	}
}

// startBackend starts the demo MCP server with a recorder, stopped when
// the test ends.
func startBackend(t *testing.T) (*mcpdemo.Recorder, string) {
	t.Helper()
	rec := &mcpdemo.Recorder{}
	addr, stop, err := mcpdemo.Serve(rec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return rec, addr
}

// startEcho starts a recording backend that answers 200 with the value of
// the X-Echo request header as its body: `reverse_proxy` to it with
// echoProxy stands in for `respond` (same body, placeholders included), and
// its recorder proves that a refused request never reached a backend.
func startEcho(t *testing.T) (*mcpdemo.Recorder, string) {
	t.Helper()
	rec := &mcpdemo.Recorder{}
	srv := httptest.NewServer(rec.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.Header.Get("X-Echo"))
	})))
	t.Cleanup(srv.Close)
	return rec, strings.TrimPrefix(srv.URL, "http://")
}

// echoProxy is the Caddyfile for proxying to the echo backend at addr,
// which answers body (placeholders are replaced by Caddy).
func echoProxy(addr, body string) string {
	return fmt.Sprintf("reverse_proxy %s {\n\t\t\theader_up X-Echo %q\n\t\t}", addr, body)
}

// reached fails the test unless exactly want requests reached the backend
// since before (a Count taken earlier), and, for a refusal (want 0), no
// tool ran either.
func reached(t *testing.T, rec *mcpdemo.Recorder, before, want int, what string) {
	t.Helper()
	if got := rec.Count() - before; got != want {
		t.Fatalf("%s: %d requests reached the backend, want %d", what, got, want)
	}
}

// httpClient is the e2e tests' client: every request is bounded.
// No keep-alive: tests reload Caddy often, and a reload closes idle
// connections, which a POST racing it would see as EOF (clients retry;
// a test should not have to).
// ExpectContinueTimeout lets a test send a large body with
// "Expect: 100-continue", so that an early refusal (413 before the body
// is read) arrives as an answer rather than a reset connection.
var httpClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, ExpectContinueTimeout: 5 * time.Second}}

// send does req with httpClient and returns the response with its body read.
func send(t *testing.T, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func post(t *testing.T, url, token, body string) (*http.Response, string) {
	t.Helper()
	return postWith(t, url, token, body, nil)
}

// postWith POSTs body as an MCP client would, with a bearer token (when
// not empty) and extra headers.
func postWith(t *testing.T, url, token, body string, header map[string]string) (*http.Response, string) {
	t.Helper()
	remember(token)
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	return send(t, req)
}

const (
	toolsList = `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	// echoCall runs the echo tool: a refusal test sends it so that the
	// backend's tool record shows nothing ran.
	echoCall = `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"refused?"}}}`
)

func TestE2EMCPClient(t *testing.T) {
	env := newE2E(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	cs, err := connect(ctx, e2eBase+"/mcp", env.token(nil))
	if err != nil {
		t.Fatalf("connect with a valid token: %v", err)
	}
	defer cs.Close()

	tools, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatalf("tools/list: %v", err)
	}
	var names []string
	for _, tool := range tools.Tools {
		names = append(names, tool.Name)
	}
	if got := strings.Join(names, ","); !strings.Contains(got, "echo") || !strings.Contains(got, "whoami") {
		t.Fatalf("tools/list returned %q", got)
	}

	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hello through caddy"}})
	if err != nil {
		t.Fatalf("tools/call echo: %v", err)
	}
	var echo mcpdemo.EchoOut
	structured(t, res, &echo)
	if echo.Text != "hello through caddy" {
		t.Fatalf("echo returned %q", echo.Text)
	}

	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "whoami", Arguments: map[string]any{}})
	if err != nil {
		t.Fatalf("tools/call whoami: %v", err)
	}
	var who mcpdemo.WhoAmIOut
	structured(t, res, &who)
	if who.Client != "e2e-client" || who.Scopes != "mcp:read" {
		t.Fatalf("identity headers at the backend: %+v", who)
	}
	if who.Authorization {
		t.Fatal("the backend received the Authorization header")
	}
	if h := env.rec.Last(); h.Get("Authorization") != "" || h.Get("X-MCP-Client") != "e2e-client" {
		t.Fatalf("backend request headers: %v", h)
	}
}

func TestE2ERefusals(t *testing.T) {
	env := newE2E(t)
	before := env.rec.Count()
	cases := []struct {
		name      string
		token     string
		status    int
		challenge string
		errorCode string
	}{
		{"no token", "", 401, `Bearer scope="mcp:read"`, "missing_token"},
		{"expired", env.token(func(o *devtools.TokenOptions) { o.ExpiresIn = -10 * time.Minute }), 401,
			`Bearer error="invalid_token", error_description="Token has expired", scope="mcp:read"`, "invalid_token"},
		{"bad signature", devtools.MustGenerateKey("RS256").MustToken(devtools.TokenOptions{Issuer: e2eIssuer, Audience: []string{e2eAudience}}), 401,
			`Bearer error="invalid_token", error_description="Token signature verification failed", scope="mcp:read"`, "invalid_token"},
		{"wrong audience", env.token(func(o *devtools.TokenOptions) { o.Audience = []string{"another-api"} }), 401,
			`Bearer error="invalid_token", error_description="Invalid audience", scope="mcp:read"`, "invalid_token"},
		{"missing scope", env.token(func(o *devtools.TokenOptions) { o.Scopes = []string{"other"} }), 403,
			`Bearer error="insufficient_scope", error_description="Insufficient scope", scope="mcp:read"`, "insufficient_scope"},
		{"malformed header", "two words", 400,
			`Bearer error="invalid_request", error_description="Malformed authorization request", scope="mcp:read"`, "invalid_request"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := post(t, e2eBase+"/mcp", tc.token, echoCall)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d (body %s)", resp.StatusCode, tc.status, body)
			}
			// The DPoP challenge follows (dpop is allowed by default).
			want := tc.challenge + `, resource_metadata="` + e2eBase + `/.well-known/oauth-protected-resource/mcp"` + dpopChallenge
			if got := resp.Header.Get("WWW-Authenticate"); got != want {
				t.Fatalf("WWW-Authenticate %q, want %q", got, want)
			}
			var eb errorBody
			if err := json.Unmarshal([]byte(body), &eb); err != nil || eb.Error != tc.errorCode {
				t.Fatalf("body %s (%v)", body, err)
			}
		})
	}
	reached(t, env.rec, before, 0, "refused requests")
	if n := env.rec.Ran(""); n != 0 {
		t.Fatalf("refused tools/call requests ran %d tools: %+v", n, env.rec.ToolRuns())
	}

	// The SDK client itself sees the 401.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := connect(ctx, e2eBase+"/mcp", ""); err == nil || !strings.Contains(err.Error(), "Unauthorized") {
		t.Fatalf("connect without a token: %v", err)
	}
}

func TestE2EForwardToken(t *testing.T) {
	env := newE2E(t)
	resp, body := post(t, e2eBase+"/fwd/x", "dev-forward-token", toolsList)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if got := env.rec.Last().Get("Authorization"); got != "Bearer dev-forward-token" {
		t.Fatalf("with forward_token the backend got Authorization %q", got)
	}
}

// TestE2EProviderJSON runs the authentication provider inside Caddy's
// `authentication` handler from a JSON config, as the README shows.
func TestE2EProviderJSON(t *testing.T) {
	key := devtools.MustGenerateKey("ES256")
	rec, addr := startBackend(t)
	pub, _ := json.Marshal(mustPEM(t, key))
	cfg := fmt.Sprintf(`{
	"admin": {"listen": "localhost:2999"},
	"logging": {"logs": {"default": {"level": "DEBUG", "writer": {"output": "file", "filename": %q}}}},
	"apps": {"http": {"http_port": 9080, "servers": {"srv0": {
		"listen": [":9080"],
		"automatic_https": {"disable": true},
		"routes": [{"handle": [
			{"handler": "authentication", "providers": {"mcp_token": {
				"public_key": %s, "audiences": ["mcp-api"], "required_scopes": ["mcp:read"]}}},
			{"handler": "headers", "request": {"set": {"X-MCP-Client": ["{http.auth.user.client_id}"]}}},
			{"handler": "reverse_proxy", "upstreams": [{"dial": %q}]}
		]}]
	}}}}
}`, caddyLogFile, pub, addr)
	startCaddy(t, cfg, "json")

	good := key.MustToken(devtools.TokenOptions{Audience: []string{"mcp-api"}, Scopes: []string{"mcp:read"}, Claims: map[string]any{"client_id": "json-client"}})
	resp, body := post(t, e2eBase+"/mcp", good, toolsList)
	if resp.StatusCode != 200 || !strings.Contains(body, `"echo"`) {
		t.Fatalf("valid token through the provider: %d %s", resp.StatusCode, body)
	}
	if h := rec.Last(); h.Get("X-MCP-Client") != "json-client" || h.Get("Authorization") != "" {
		t.Fatalf("backend headers: %v", h)
	}
	before := rec.Count()
	resp, _ = post(t, e2eBase+"/mcp", "", echoCall)
	if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != `Bearer scope="mcp:read", resource_metadata="`+e2eBase+`/.well-known/oauth-protected-resource/mcp"`+dpopChallenge {
		t.Fatalf("no token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	noScope := key.MustToken(devtools.TokenOptions{Audience: []string{"mcp-api"}})
	resp, _ = post(t, e2eBase+"/mcp", noScope, echoCall)
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
		t.Fatalf("missing scope through the provider: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	reached(t, rec, before, 0, "refusals by the authentication provider")
	if rec.Ran("") != 0 {
		t.Fatalf("a refused call ran: %+v", rec.ToolRuns())
	}
}

// TestE2EProviderOutage: with its JWKS endpoint down, the provider inside
// a real Caddy answers valid tokens 401 with a challenge MCP clients can
// follow, and logs the outage once (WARN), not an ERROR line per request.
func TestE2EProviderOutage(t *testing.T) {
	key := devtools.MustGenerateKey("RS256")
	jwksSrv := devtools.NewJWKSServer(key)
	defer jwksSrv.Close()
	jwksSrv.Fail(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusInternalServerError) })
	rec, addr := startBackend(t)
	logPath := filepath.Join(t.TempDir(), "provider-outage.log")
	cfg := fmt.Sprintf(`{
	"admin": {"listen": "localhost:2999"},
	"logging": {"logs": {"default": {"level": "DEBUG", "writer": {"output": "file", "filename": %q}}}},
	"apps": {"http": {"http_port": 9080, "servers": {"srv0": {
		"listen": [":9080"],
		"automatic_https": {"disable": true},
		"routes": [{"handle": [
			{"handler": "authentication", "providers": {"mcp_token": {
				"jwks_uri": %q, "audiences": ["mcp-api"], "jwks_timeout": "500ms"}}},
			{"handler": "reverse_proxy", "upstreams": [{"dial": %q}]}
		]}]
	}}}}
}`, logPath, jwksSrv.JWKSURL(), addr)
	startCaddyFresh(t, cfg, "json")
	good := key.MustToken(devtools.TokenOptions{Audience: []string{"mcp-api"}})
	for i := 0; i < 30; i++ {
		resp, _ := post(t, e2eBase+"/mcp", good, toolsList)
		if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `resource_metadata="`) {
			t.Fatalf("request %d during the outage: %d %q", i, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	if rec.Count() != 0 {
		t.Fatalf("the backend received %d requests during the outage", rec.Count())
	}
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), good) || strings.Contains(string(data), good[:40]) {
		t.Fatal("the token reached the log")
	}
	var errorLines, verifyWarns int
	for _, line := range strings.Split(string(data), "\n") {
		if strings.Contains(line, `"level":"error"`) {
			errorLines++
		}
		if strings.Contains(line, `"level":"warn"`) && strings.Contains(line, "token verification failed") {
			verifyWarns++
		}
	}
	if errorLines != 0 || verifyWarns != 1 {
		t.Fatalf("30 requests during the outage logged %d ERROR lines and %d 'token verification failed' WARN lines; want 0 and 1", errorLines, verifyWarns)
	}
}
