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
// mcpAuthSite returns the /mcp key, the /opaque key and the backend's recorder.
func mcpAuthSite(t *testing.T) (*devtools.KeyPair, *devtools.KeyPair, *mcpdemo.Recorder) {
	t.Helper()
	key, other := devtools.MustGenerateKey("RS256"), devtools.MustGenerateKey("ES256")
	rec, backend := startBackend(t)
	startCaddy(t, caddyGlobal+fmt.Sprintf(`
http://localhost:9080 {
	mcp_token /mcp* {
		issuer http://127.0.0.1:9/issuer
		public_key <<PEM
%[1]sPEM
		resource_name "E2E MCP"
		resource_documentation https://docs.e2e.test/mcp
		method_scopes tools/list mcp:read
		tool_scopes deploy deploy:write
	}
	mcp_token /opaque* {
		issuer https://other.e2e.test
		audience http://localhost:9080/opaque
		public_key <<PEM
%[2]sPEM
		required_scopes opaque:read
	}
	handle /mcp* {
		reverse_proxy %[3]s {
			header_up X-MCP-Client {http.auth.user.client_id}
		}
	}
	handle /opaque/* {
		respond "opaque ok" 200
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
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 204 || resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Fatalf("metadata preflight: %v %v", resp, err)
	}

	// /mcp requires a token; the challenge's resource_metadata URL fetches
	// that same document.
	for _, tc := range []struct{ path, metadata string }{
		{"/mcp", "/.well-known/oauth-protected-resource/mcp"},
		{"/opaque/x", "/.well-known/oauth-protected-resource/opaque"},
	} {
		resp, _ := post(t, e2eBase+tc.path, "", toolsList)
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
	resp, _ = post(t, e2eBase+"/opaque/x", otherTok, toolsList)
	if resp.StatusCode != 403 || challengeParam(resp.Header.Get("WWW-Authenticate"), "scope") != "opaque:read" {
		t.Fatalf("/opaque without opaque:read (audience matched canonically): %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}

	// A token in the query is refused, even with a valid header token.
	good := key.MustToken(devtools.TokenOptions{Issuer: "http://127.0.0.1:9/issuer", Scopes: []string{"mcp:read"}})
	resp, _ = post(t, e2eBase+"/mcp?access_token="+good, good, toolsList)
	if resp.StatusCode != 400 || challengeParam(resp.Header.Get("WWW-Authenticate"), "error") != "invalid_request" {
		t.Fatalf("token in the query: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}

	// A CORS preflight is answered by the gateway without a token, and
	// never reaches the backend (issue 10 item 5).
	before := rec.Count()
	req, _ = http.NewRequest(http.MethodOptions, e2eBase+"/mcp", nil)
	req.Header.Set("Origin", "http://inspector.local")
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "authorization, content-type")
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent || rec.Count() != before ||
		resp.Header.Get("Access-Control-Allow-Headers") != "authorization, content-type" {
		t.Fatalf("preflight: %v %v, backend saw %d new requests", resp.StatusCode, err, rec.Count()-before)
	}
	// A refusal to a browser request exposes the challenge to scripts.
	req, _ = http.NewRequest(http.MethodPost, e2eBase+"/mcp", strings.NewReader(toolsList))
	req.Header.Set("Origin", "http://inspector.local")
	resp, _ = http.DefaultClient.Do(req)
	if resp.StatusCode != 401 || resp.Header.Get("Access-Control-Expose-Headers") != "WWW-Authenticate" {
		t.Fatalf("browser 401: %d %v", resp.StatusCode, resp.Header)
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
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "deploy", Arguments: map[string]any{"service": "api"}}); err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Fatalf("deploy with mcp:read only: %v", err)
	}
	// The same refusal on the wire: 403 with exactly the tool's scope.
	deploy := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"deploy","arguments":{"service":"api"}}}`
	resp, _ := post(t, e2eBase+"/mcp", readOnly, deploy)
	if chal := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != 403 || challengeParam(chal, "scope") != "deploy:write" || challengeParam(chal, "error") != "insufficient_scope" {
		t.Fatalf("deploy: %d %q", resp.StatusCode, chal)
	}
	// With deploy:write, deploy works.
	deployer := key.MustToken(devtools.TokenOptions{Issuer: "http://127.0.0.1:9/issuer", Scopes: []string{"mcp:read", "deploy:write"}})
	if resp, body := post(t, e2eBase+"/mcp", deployer, deploy); resp.StatusCode != 200 || !strings.Contains(body, "deployed api") {
		t.Fatalf("deploy with deploy:write: %d %s", resp.StatusCode, body)
	}
	// A batch is allowed only if every element is.
	batch := `[{"jsonrpc":"2.0","id":1,"method":"tools/list"},` + deploy + `]`
	if resp, _ := post(t, e2eBase+"/mcp", readOnly, batch); resp.StatusCode != 403 {
		t.Fatalf("batch with a forbidden element: %d", resp.StatusCode)
	}
	// Case games cannot hide the method from the gateway: a key that
	// case-folds to one it reads is refused (mcprpc.Parse).
	sneaky := `{"jsonrpc":"2.0","id":8,"method":"tools/call","METHOD":"tools/list","params":{"name":"deploy","arguments":{"service":"x"}}}`
	if resp, _ := post(t, e2eBase+"/mcp", readOnly, sneaky); resp.StatusCode != 400 {
		t.Fatalf("METHOD alias: %d", resp.StatusCode)
	}
	dup := `{"jsonrpc":"2.0","id":9,"method":"tools/list","method":"tools/call","params":{"name":"deploy"}}`
	if resp, _ := post(t, e2eBase+"/mcp", readOnly, dup); resp.StatusCode != 400 {
		t.Fatalf("duplicate method key: %d", resp.StatusCode)
	}

	// Mcp-Method / Mcp-Name must agree with the body.
	for _, tc := range []struct {
		name, method, mcpName string
		status                int
	}{
		{"agreeing headers", "tools/call", "echo", 200},
		{"mismatched Mcp-Method", "tools/list", "echo", 400},
		{"mismatched Mcp-Name", "tools/call", "deploy", 400},
	} {
		body := `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`
		req, _ := http.NewRequest(http.MethodPost, e2eBase+"/mcp", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+deployer)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Method", tc.method)
		req.Header.Set("Mcp-Name", tc.mcpName)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Fatalf("%s: %d, want %d", tc.name, resp.StatusCode, tc.status)
		}
	}

	// An oversized body is 413 and never reaches the backend.
	before := rec.Count()
	big := `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","arguments":{"text":"` + strings.Repeat("a", 2<<20) + `"}}}`
	if resp, _ := post(t, e2eBase+"/mcp", deployer, big); resp.StatusCode != http.StatusRequestEntityTooLarge || rec.Count() != before {
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
