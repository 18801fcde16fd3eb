package mcptoken

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcptoken/caddy-mcp-token/devtools"
	"github.com/mcptoken/caddy-mcp-token/internal/mcpdemo"
	"github.com/mcptoken/caddy-mcp-token/internal/testpeers"
)

// mcpAuthSite is a site with two protected paths, each with its own
// verifier, written the way the README recommends: mcp_token with a path
// matcher at site level, so that it can publish its metadata.
// mcpAuthSite returns the /mcp key, the /opaque key and the recorder of
// the backend both paths proxy to.
func mcpAuthSite(t *testing.T) (*devtools.KeyPair, *devtools.KeyPair, *mcpdemo.Recorder) {
	t.Helper()
	key, other := devtools.MustGenerateKey("RS256"), devtools.MustGenerateKey("ES256")
	rec, backend := startBackend(t)
	startCaddy(t, caddyGlobal+fmt.Sprintf(`
http://localhost:9080 {
	mcp_token /mcp* {
		issuer http://127.0.0.1:9/issuer
		public_key <<PEM_END
%[1]sPEM_END
		resource_name "E2E MCP"
		resource_documentation https://docs.e2e.test/mcp
		method_scopes tools/list mcp:read
		tool_scopes deploy deploy:write
	}
	mcp_token /opaque* {
		issuer https://other.e2e.test
		audience http://localhost:9080/opaque
		public_key <<PEM_END
%[2]sPEM_END
		required_scopes opaque:read
	}
	handle /mcp* {
		reverse_proxy %[3]s {
			header_up X-MCP-Client {http.auth.user.client_id}
		}
	}
	handle /opaque/* {
		reverse_proxy %[3]s
	}
	respond 404
}
`, mustPEM(t, key), mustPEM(t, other), backend), "caddyfile")
	return key, other, rec
}

func getJSON(t *testing.T, url string) (*http.Response, map[string]any) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc map[string]any
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(body, &doc); err != nil {
			t.Fatalf("%s: not JSON: %s", url, body)
		}
	}
	return resp, doc
}

// challengeParam extracts one parameter of a Bearer challenge.
func challengeParam(h, name string) string {
	_, rest, ok := strings.Cut(h, name+`="`)
	if !ok {
		return ""
	}
	v, _, _ := strings.Cut(rest, `"`)
	return v
}

func TestE2EProtectedResourceMetadata(t *testing.T) {
	key, other, rec := mcpAuthSite(t)

	// Both metadata URLs answer JSON without a token, with CORS.
	for _, path := range []string{"/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource"} {
		resp, doc := getJSON(t, e2eBase+path)
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
			t.Fatalf("%s: %d %q %q", path, resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Access-Control-Allow-Origin"))
		}
		want := map[string]any{
			"resource":                 e2eBase + "/mcp",
			"authorization_servers":    []any{"http://127.0.0.1:9/issuer"},
			"scopes_supported":         []any{"mcp:read", "deploy:write"},
			"bearer_methods_supported": []any{"header"},
			"resource_name":            "E2E MCP",
			"resource_documentation":   "https://docs.e2e.test/mcp",
		}
		for k, v := range want {
			if fmt.Sprint(doc[k]) != fmt.Sprint(v) {
				t.Errorf("%s: %s = %v, want %v", path, k, doc[k], v)
			}
		}
	}
	// The second protected path has its own metadata.
	_, doc := getJSON(t, e2eBase+"/.well-known/oauth-protected-resource/opaque")
	if doc["resource"] != e2eBase+"/opaque" || fmt.Sprint(doc["authorization_servers"]) != "[https://other.e2e.test]" || fmt.Sprint(doc["scopes_supported"]) != "[opaque:read]" {
		t.Fatalf("/opaque metadata: %v", doc)
	}
	// A CORS preflight on the metadata answers 204.
	req, _ := http.NewRequest(http.MethodOptions, e2eBase+"/.well-known/oauth-protected-resource/mcp", nil)
	req.Header.Set("Origin", "http://inspector.local")
	req.Header.Set("Access-Control-Request-Method", "GET")
	if resp, _ := send(t, req); resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("metadata preflight: %d %v", resp.StatusCode, resp.Header)
	}

	// /mcp requires a token; the challenge's resource_metadata URL fetches
	// that same document.
	before := rec.Count()
	for _, tc := range []struct{ path, metadata string }{
		{"/mcp", "/.well-known/oauth-protected-resource/mcp"},
		{"/opaque/x", "/.well-known/oauth-protected-resource/opaque"},
	} {
		resp, _ := post(t, e2eBase+tc.path, "", echoCall)
		chal := resp.Header.Get("WWW-Authenticate")
		if resp.StatusCode != 401 || challengeParam(chal, "resource_metadata") != e2eBase+tc.metadata {
			t.Fatalf("%s without a token: %d %q", tc.path, resp.StatusCode, chal)
		}
		if _, d := getJSON(t, challengeParam(chal, "resource_metadata")); d["resource"] != e2eBase+strings.TrimSuffix(strings.TrimPrefix(tc.metadata, WellKnownPath), "") {
			t.Fatalf("%s: the challenge's metadata URL gave %v", tc.path, d)
		}
	}

	// 403 carries exactly the missing scope.
	tok := key.MustToken(devtools.TokenOptions{Issuer: "http://127.0.0.1:9/issuer", Scopes: []string{"other"}})
	resp, body := post(t, e2eBase+"/mcp", tok, toolsList)
	chal := resp.Header.Get("WWW-Authenticate")
	if resp.StatusCode != 403 || challengeParam(chal, "error") != "insufficient_scope" || challengeParam(chal, "scope") != "mcp:read" ||
		challengeParam(chal, "resource_metadata") != e2eBase+"/.well-known/oauth-protected-resource/mcp" {
		t.Fatalf("missing mcp:read: %d %q", resp.StatusCode, chal)
	}
	var eb errorBody
	if json.Unmarshal([]byte(body), &eb) != nil || eb.Error != "insufficient_scope" {
		t.Fatalf("403 body is not the JSON error object: %s", body)
	}
	otherTok := other.MustToken(devtools.TokenOptions{Issuer: "https://other.e2e.test", Audience: []string{"http://LOCALHOST:9080/opaque/"}})
	resp, _ = post(t, e2eBase+"/opaque/x", otherTok, echoCall)
	if resp.StatusCode != 403 || challengeParam(resp.Header.Get("WWW-Authenticate"), "scope") != "opaque:read" {
		t.Fatalf("/opaque without opaque:read (audience matched canonically): %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}

	// A token in the query is refused, even with a valid header token.
	good := key.MustToken(devtools.TokenOptions{Issuer: "http://127.0.0.1:9/issuer", Scopes: []string{"mcp:read"}})
	resp, _ = post(t, e2eBase+"/mcp?access_token="+good, good, echoCall)
	if resp.StatusCode != 400 || challengeParam(resp.Header.Get("WWW-Authenticate"), "error") != "invalid_request" {
		t.Fatalf("token in the query: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	// A refusal to a browser request exposes the challenge to scripts.
	req, _ = http.NewRequest(http.MethodPost, e2eBase+"/mcp", strings.NewReader(echoCall))
	req.Header.Set("Origin", "http://inspector.local")
	if resp, _ := send(t, req); resp.StatusCode != 401 || resp.Header.Get("Access-Control-Expose-Headers") != "WWW-Authenticate, DPoP-Nonce" {
		t.Fatalf("browser 401: %d %v", resp.StatusCode, resp.Header)
	}
	reached(t, rec, before, 0, "refusals on /mcp and /opaque")
	if rec.Ran("") != 0 {
		t.Fatalf("a refused call ran: %+v", rec.ToolRuns())
	}

	// A CORS preflight is answered by the gateway without a token, and
	// never reaches the backend (issue 10 item 5).
	before = rec.Count()
	req, _ = http.NewRequest(http.MethodOptions, e2eBase+"/mcp", nil)
	req.Header.Set("Origin", "http://inspector.local")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
	resp, _ = send(t, req)
	if resp.StatusCode != http.StatusNoContent || rec.Count() != before ||
		resp.Header.Get("Access-Control-Allow-Headers") != "authorization, content-type" {
		t.Fatalf("preflight: %v, backend saw %d new requests", resp.StatusCode, rec.Count()-before)
	}
}

func TestE2EPerToolScopes(t *testing.T) {
	key, _, rec := mcpAuthSite(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	readOnly := key.MustToken(devtools.TokenOptions{Issuer: "http://127.0.0.1:9/issuer", Scopes: []string{"mcp:read"}})
	cs, err := connect(ctx, e2eBase+"/mcp", readOnly)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	defer cs.Close()
	if _, err := cs.ListTools(ctx, nil); err != nil {
		t.Fatalf("tools/list with mcp:read: %v", err)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}})
	if err != nil || res.IsError {
		t.Fatalf("echo with mcp:read: %v %v", err, res)
	}
	before := rec.Count()
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "deploy", Arguments: map[string]any{"service": "api"}}); err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Fatalf("deploy with mcp:read only: %v", err)
	}
	reached(t, rec, before, 0, "the SDK client's refused deploy")
	deployer := key.MustToken(devtools.TokenOptions{Issuer: "http://127.0.0.1:9/issuer", Scopes: []string{"mcp:read", "deploy:write"}})

	// Every refusal, judged by the backend: the request never reached it
	// and deploy never ran. The same bodies with deploy:write do run,
	// so the rows cannot pass for a reason other than the gateway.
	deploy := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"deploy","arguments":{"service":"api"}}}`
	for _, tc := range []struct {
		name   string
		body   string
		header map[string]string
		status int
		scope  string // the challenge's scope, for a 403
	}{
		{"deploy without deploy:write", deploy, nil, 403, "deploy:write"},
		{"a batch with one forbidden element", `[{"jsonrpc":"2.0","id":1,"method":"tools/list"},` + deploy + `]`, nil, 403, "mcp:read deploy:write"},
		// Keys that case-fold to one the gateway reads are refused (mcprpc.Parse).
		{"a METHOD alias cannot hide the method", `{"jsonrpc":"2.0","id":8,"method":"tools/call","METHOD":"tools/list","params":{"name":"deploy","arguments":{"service":"x"}}}`, nil, 400, ""},
		{"a NAME alias cannot hide the tool", `{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"deploy","NAME":"echo","arguments":{"service":"x"}}}`, nil, 400, ""},
		{"duplicate method keys", `{"jsonrpc":"2.0","id":9,"method":"tools/list","method":"tools/call","params":{"name":"deploy","arguments":{"service":"x"}}}`, nil, 400, ""},
		{"duplicate name keys", `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"echo","name":"deploy","arguments":{"service":"x"}}}`, nil, 400, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, ran := rec.Count(), rec.Ran("")
			resp, body := postWith(t, e2eBase+"/mcp", readOnly, tc.body, tc.header)
			chal := resp.Header.Get("WWW-Authenticate")
			if resp.StatusCode != tc.status || (tc.scope != "" && (challengeParam(chal, "scope") != tc.scope || challengeParam(chal, "error") != "insufficient_scope")) {
				t.Fatalf("status %d (want %d), challenge %q, body %s", resp.StatusCode, tc.status, chal, body)
			}
			reached(t, rec, before, 0, tc.name)
			if rec.Ran("") != ran {
				t.Fatalf("a refused call ran: %+v", rec.ToolRuns()[ran:])
			}
		})
	}
	// With deploy:write, deploy runs: once, for this client's request.
	if resp, body := post(t, e2eBase+"/mcp", deployer, deploy); resp.StatusCode != 200 || !strings.Contains(body, "deployed api") {
		t.Fatalf("deploy with deploy:write: %d %s", resp.StatusCode, body)
	}
	if n := rec.Ran("deploy"); n != 1 {
		t.Fatalf("deploy ran %d times, want 1 (the allowed call): %+v", n, rec.ToolRuns())
	}

	// Mcp-Method / Mcp-Name must agree with the body: a mismatch never
	// reaches the backend, even with every scope.
	for _, tc := range []struct {
		name, method, mcpName string
		status                int
	}{
		{"agreeing headers", "tools/call", "echo", 200},
		{"mismatched Mcp-Method", "tools/list", "echo", 400},
		{"mismatched Mcp-Name", "tools/call", "deploy", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before, echoes := rec.Count(), rec.Ran("echo")
			body := `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`
			resp, _ := postWith(t, e2eBase+"/mcp", deployer, body, map[string]string{"Mcp-Method": tc.method, "Mcp-Name": tc.mcpName})
			if resp.StatusCode != tc.status {
				t.Fatalf("%d, want %d", resp.StatusCode, tc.status)
			}
			wantRuns := 0
			if tc.status == 200 {
				wantRuns = 1
			}
			reached(t, rec, before, wantRuns, tc.name)
			if got := rec.Ran("echo") - echoes; got != wantRuns {
				t.Fatalf("echo ran %d times, want %d", got, wantRuns)
			}
		})
	}

	// An oversized body is 413 and never reaches the backend.
	before = rec.Count()
	big := `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","arguments":{"text":"` + strings.Repeat("a", 2<<20) + `"}}}`
	// (Expect: 100-continue: the 413 comes before the body is read; a
	// client still writing 2 MiB could otherwise see a reset instead.)
	if resp, _ := postWith(t, e2eBase+"/mcp", deployer, big, map[string]string{"Expect": "100-continue"}); resp.StatusCode != http.StatusRequestEntityTooLarge || rec.Count() != before {
		t.Fatalf("oversized body: %d, backend saw %d", resp.StatusCode, rec.Count()-before)
	}

	// The backend receives exactly the bytes the client sent.
	exact := "{ \"jsonrpc\" : \"2.0\",\n \"id\": 5, \"method\": \"tools/call\", \"params\": {\"name\": \"echo\", \"arguments\": {\"text\": \"é ✓ \\u00e9\"}} }\n"
	if resp, _ := post(t, e2eBase+"/mcp", readOnly, exact); resp.StatusCode != 200 {
		t.Fatalf("exact body: %d", resp.StatusCode)
	}
	if got := rec.LastRequest().Body; !bytes.Equal(got, []byte(exact)) {
		t.Fatalf("backend body differs:\n got %q\nwant %q", got, exact)
	}
}

// TestE2ETypeScriptClient: the official TypeScript SDK client connects
// through Caddy with a bearer token, lists tools and calls one; without a
// token it gets the 401 and follows its resource_metadata URL.
func TestE2ETypeScriptClient(t *testing.T) {
	key, _, rec := mcpAuthSite(t)

	tok := key.MustToken(devtools.TokenOptions{Issuer: "http://127.0.0.1:9/issuer", Scopes: []string{"mcp:read"}, Claims: map[string]any{"client_id": "ts-client"}})
	remember(tok)
	res := testpeers.RunTSClient(t, e2eBase+"/mcp", tok)
	if res.Error != "" || !strings.Contains(strings.Join(res.Tools, ","), "echo") || !strings.Contains(string(res.Echo), "from typescript") {
		t.Fatalf("TypeScript client with a token: %+v", res)
	}
	if got := rec.Last().Get("X-MCP-Client"); got != "ts-client" {
		t.Fatalf("backend saw client %q", got)
	}

	res = testpeers.RunTSClient(t, e2eBase+"/mcp", "")
	want := e2eBase + "/.well-known/oauth-protected-resource/mcp"
	if res.Error == "" || res.ResourceMetadataURL != want {
		t.Fatalf("TypeScript client without a token: %+v", res)
	}
	t.Logf("TypeScript client without a token: %+v", res)
	followed := false
	for _, u := range res.Fetched {
		followed = followed || u == want
	}
	if !followed {
		t.Fatalf("the SDK did not fetch the resource_metadata URL; it fetched %v", res.Fetched)
	}
}

// TestE2ECORSPreflightOff: a CORS preflight (OPTIONS without a token)
// passes to the backend by default; with `cors_preflight off` it needs a
// token like any request, and the backend never sees it.
func TestE2ECORSPreflightOff(t *testing.T) {
	rec, backend := startBackend(t)
	startCaddy(t, caddyGlobal+fmt.Sprintf(`
http://localhost:9080 {
	mcp_token /on* {
		static_token dev-cors-on-token on-client mcp:read
	}
	mcp_token /off* {
		static_token dev-cors-off-token off-client mcp:read
		authorization_servers https://as.example
		cors_preflight off
	}
	reverse_proxy %s
}
`, backend), "caddyfile")
	preflight := func(path string) *http.Response {
		req, _ := http.NewRequest(http.MethodOptions, e2eBase+path, nil)
		req.Header.Set("Origin", "http://inspector.local")
		req.Header.Set("Access-Control-Request-Method", "POST")
		req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
		resp, _ := send(t, req)
		return resp
	}
	// cors_preflight on (the default): answered by the gateway, never
	// passed on (issue 10 item 5).
	before := rec.Count()
	if resp := preflight("/on/mcp"); resp.StatusCode != http.StatusNoContent {
		t.Fatalf("preflight with cors_preflight on (default): %d, want 204", resp.StatusCode)
	}
	reached(t, rec, before, 0, "the preflight with cors_preflight on")

	before = rec.Count()
	resp := preflight("/off/mcp")
	if resp.StatusCode != http.StatusUnauthorized || challengeParam(resp.Header.Get("WWW-Authenticate"), "resource_metadata") != e2eBase+"/.well-known/oauth-protected-resource/off" {
		t.Fatalf("preflight with cors_preflight off: %d %q, want 401 with a challenge", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	reached(t, rec, before, 0, "the preflight with cors_preflight off")
	// With a token, the same path serves requests.
	if resp, body := post(t, e2eBase+"/off/mcp", "dev-cors-off-token", toolsList); resp.StatusCode != 200 || !strings.Contains(body, `"echo"`) {
		t.Fatalf("/off with a token: %d %s", resp.StatusCode, body)
	}
}
