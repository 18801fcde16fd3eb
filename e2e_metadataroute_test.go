package mcptoken

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcptoken/caddy-mcp-token/devtools"
)

// metadataWarnings returns the add_route values of the "no metadata
// handler" WARN lines of a log file.
func metadataWarnings(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var routes []string
	for _, line := range strings.Split(string(data), "\n") {
		var entry struct {
			Level    string `json:"level"`
			AddRoute string `json:"add_route"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil && entry.AddRoute != "" {
			if entry.Level != "warn" {
				t.Fatalf("the missing-metadata line is not a WARN: %s", line)
			}
			routes = append(routes, entry.AddRoute)
		}
	}
	return routes
}

// TestE2EJSONMetadataRouteWarning: a JSON config whose mcp_token handler
// advertises a resource_metadata URL that no route serves logs one WARN
// (not one per request) holding the route to add; that route, added as
// written, serves the document, and the warning is gone.
func TestE2EJSONMetadataRouteWarning(t *testing.T) {
	key := devtools.MustGenerateKey("ES256")
	pub, _ := json.Marshal(mustPEM(t, key))
	config := func(logPath, extraRoute string) string {
		return fmt.Sprintf(`{
	"admin": {"listen": "localhost:2999"},
	"logging": {"logs": {"default": {"level": "DEBUG", "writer": {"output": "file", "filename": %q}}}},
	"apps": {"http": {"http_port": 9080, "servers": {"srv0": {
		"listen": [":9080"],
		"automatic_https": {"disable": true},
		"routes": [%s{"match": [{"path": ["/mcp*"]}], "handle": [
			{"handler": "mcp_token", "public_key": %s, "audiences": ["mcp-api"],
			 "authorization_servers": ["https://as.example"], "required_scopes": ["mcp:read"]},
			{"handler": "static_response", "body": "ok"}
		]}]
	}}}}
}`, logPath, extraRoute, pub)
	}
	const metadataURL = e2eBase + WellKnownPath + "/mcp"
	dir := t.TempDir()

	withoutLog := filepath.Join(dir, "without.log")
	startCaddyFresh(t, config(withoutLog, ""), "json")
	for i := 0; i < 3; i++ {
		resp, _ := post(t, e2eBase+"/mcp", "", toolsList)
		if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `resource_metadata="`+metadataURL+`"`) {
			t.Fatalf("request %d without a token: %d %q", i, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	routes := metadataWarnings(t, withoutLog)
	if len(routes) != 1 {
		t.Fatalf("3 challenges naming an unserved metadata URL logged %d warnings, want 1: %q", len(routes), routes)
	}
	want := `{"handle":[{"handler":"mcp_token_metadata","resource_path":"/mcp","authorization_servers":["https://as.example"],"scopes_supported":["mcp:read"],` +
		// dpop and mtls_bound are allowed by default (RFC 9449 §5.1, RFC 9728)
		`"dpop_signing_alg_values_supported":["ES256","ES384","ES512","EdDSA","PS256","PS384","PS512","RS256"],` +
		`"tls_client_certificate_bound_access_tokens":true}],"match":[{"path":["/.well-known/oauth-protected-resource/mcp","/.well-known/oauth-protected-resource"]}]}`
	if routes[0] != want {
		t.Fatalf("add_route:\n got %s\nwant %s", routes[0], want)
	}

	// The route, added as the warning says, serves the document.
	withLog := filepath.Join(dir, "with.log")
	startCaddy(t, config(withLog, routes[0]+","), "json")
	if resp, _ := post(t, e2eBase+"/mcp", "", toolsList); resp.StatusCode != 401 {
		t.Fatalf("without a token: %d", resp.StatusCode)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(metadataURL)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var doc struct {
		Resource             string   `json:"resource"`
		AuthorizationServers []string `json:"authorization_servers"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &doc) != nil || doc.Resource != e2eBase+"/mcp" || len(doc.AuthorizationServers) != 1 {
		t.Fatalf("GET %s with the suggested route: %d %s", metadataURL, resp.StatusCode, body)
	}
	if routes := metadataWarnings(t, withLog); len(routes) != 0 {
		t.Fatalf("the warning is logged although the route is there: %q", routes)
	}
}

// readmeJSONConfig returns the README's complete JSON configuration.
func readmeJSONConfig(t *testing.T) string {
	t.Helper()
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range strings.Split(string(readme), "```json\n")[1:] {
		if src := b[:strings.Index(b, "```")]; strings.Contains(src, `"apps"`) {
			return src
		}
	}
	t.Fatal("the README has no complete JSON configuration")
	return ""
}

// TestE2EReadmeJSONConfig loads the README's complete JSON configuration
// through the admin API's /load, with only what a test must change (the
// admin and listen addresses, the log, the JWKS and backend addresses):
// a token of the issuer reaches the backend, a request without one gets
// a challenge whose resource_metadata URL serves the document, and no
// missing-metadata warning is logged.
func TestE2EReadmeJSONConfig(t *testing.T) {
	key := devtools.MustGenerateKey("RS256")
	jwksSrv := devtools.NewJWKSServer(key)
	defer jwksSrv.Close()
	rec, echo := startEcho(t)
	logPath := filepath.Join(t.TempDir(), "readme.log")
	var cfg map[string]any
	src := strings.NewReplacer(
		"https://auth.example.com/.well-known/jwks.json", jwksSrv.JWKSURL(),
		`"127.0.0.1:9000"`, fmt.Sprintf("%q", echo),
		`"listen": [":443"]`, `"listen": [":9080"], "automatic_https": {"disable": true}`,
	).Replace(readmeJSONConfig(t))
	if err := json.Unmarshal([]byte(src), &cfg); err != nil {
		t.Fatalf("the README's JSON configuration: %v", err)
	}
	cfg["admin"] = map[string]any{"listen": "localhost:2999"}
	cfg["logging"] = map[string]any{"logs": map[string]any{"default": map[string]any{"level": "DEBUG",
		"writer": map[string]any{"output": "file", "filename": logPath}}}}
	cfg["apps"].(map[string]any)["http"].(map[string]any)["http_port"] = 9080
	out, _ := json.Marshal(cfg)
	startCaddyFresh(t, string(out), "json")

	do := func(method, path, token string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, e2eBase+path, strings.NewReader(toolsList))
		req.Host = "mcp.example.com"
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		return send(t, req)
	}
	resp, _ := do(http.MethodPost, "/mcp", "")
	const metadataURL = "https://mcp.example.com/.well-known/oauth-protected-resource/mcp"
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `resource_metadata="`+metadataURL+`"`) {
		t.Fatalf("without a token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	resp, body := do(http.MethodGet, "/.well-known/oauth-protected-resource/mcp", "")
	if resp.StatusCode != 200 || !strings.Contains(body, `"resource":"https://mcp.example.com/mcp"`) || !strings.Contains(body, `"authorization_servers":["https://auth.example.com"]`) {
		t.Fatalf("the metadata document: %d %s", resp.StatusCode, body)
	}
	tok := key.MustToken(devtools.TokenOptions{Issuer: "https://auth.example.com", Audience: []string{"https://mcp.example.com/mcp"},
		Scopes: []string{"mcp:read"}, Claims: map[string]any{"client_id": "readme-client"}})
	remember(tok)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, body = do(http.MethodPost, "/mcp", tok)
		if resp.StatusCode != 503 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond) // the key set loads in the background at a first start
	}
	if resp.StatusCode != 200 || rec.Last().Get("X-MCP-Client") != "readme-client" {
		t.Fatalf("a valid token: %d %s (backend saw X-MCP-Client %q)", resp.StatusCode, body, rec.Last().Get("X-MCP-Client"))
	}
	if routes := metadataWarnings(t, logPath); len(routes) != 0 {
		t.Fatalf("the README's configuration logs the missing-metadata warning: %q", routes)
	}
}

// TestE2EMetadataRouteUnknownWellKnown: the metadata route of a block is a
// /.well-known/oauth-protected-resource* prefix; what its handler does not
// answer still meets the token check. With mcp_token protecting the whole
// site, its two metadata URLs (any case, as Caddy's path matcher reads
// them) answer without a token, and any other URL under the prefix gets
// 401, or passes with a valid token.
func TestE2EMetadataRouteUnknownWellKnown(t *testing.T) {
	key, get := startWholeSite(t, "\t\tresource_path /mcp\n")
	for _, path := range []string{WellKnownPath + "/mcp", WellKnownPath, "/.WELL-KNOWN/OAUTH-PROTECTED-RESOURCE/MCP"} {
		if resp, body := get(path, ""); resp.StatusCode != 200 || !strings.Contains(body, `"authorization_servers":["https://as.e2e.test"]`) {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, body)
		}
	}
	if _, body := get(WellKnownPath+"/mcp", ""); !strings.Contains(body, `"resource":"`+e2eBase+`/mcp"`) {
		t.Fatalf("the document: %s", body)
	}
	tok := key.MustToken(devtools.TokenOptions{Issuer: "https://as.e2e.test", Audience: []string{e2eBase + "/mcp"}})
	remember(tok)
	for _, path := range []string{WellKnownPath + "/unknown", WellKnownPath + "/mcp/x", WellKnownPath + "x", "/.well-known/other"} {
		resp, body := get(path, "")
		if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "resource_metadata=") {
			t.Fatalf("%s without a token: %d %q %s", path, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
		}
		if resp, body := get(path, tok); resp.StatusCode != 200 || body != "backend" {
			t.Fatalf("%s with a token: %d %s", path, resp.StatusCode, body)
		}
	}
}

// TestE2EMetadataWholeSite: mcp_token without a matcher, resource or
// resource_path protects every path, and each path is its own resource:
// the challenge at /mcp names <well-known>/mcp, which answers without a
// token and names the resource /mcp; the root well-known URL names the
// origin. Other URLs, well-known ones included, still need a token.
func TestE2EMetadataWholeSite(t *testing.T) {
	_, getAs := startWholeSite(t, "")
	get := func(path string) (*http.Response, string) { return getAs(path, "") }
	for _, path := range []string{"/mcp", "/tools/x"} {
		resp, _ := get(path)
		want := `resource_metadata="` + e2eBase + WellKnownPath + path + `"`
		if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), want) {
			t.Fatalf("%s: %d %q, want 401 naming %s", path, resp.StatusCode, resp.Header.Get("WWW-Authenticate"), want)
		}
		resp, body := get(WellKnownPath + path)
		if resp.StatusCode != 200 || !strings.Contains(body, `"resource":"`+e2eBase+path+`"`) ||
			!strings.Contains(body, `"authorization_servers":["https://as.e2e.test"]`) {
			t.Fatalf("the metadata the challenge at %s names: %d %s", path, resp.StatusCode, body)
		}
	}
	if resp, body := get(WellKnownPath); resp.StatusCode != 200 || !strings.Contains(body, `"resource":"`+e2eBase+`"`) {
		t.Fatalf("root metadata: %d %s", resp.StatusCode, body)
	}
	for _, path := range []string{"/.well-known/other", "/"} {
		if resp, body := get(path); resp.StatusCode != 401 || body == "backend" {
			t.Fatalf("%s without a token: %d %s", path, resp.StatusCode, body)
		}
	}
}

// startWholeSite runs a Caddy whose mcp_token has no matcher (every path
// protected), with the extra lines in its block, in front of a backend
// answering "backend"; get sends a GET, with the token when one is given.
func startWholeSite(t *testing.T, extra string) (*devtools.KeyPair, func(path, token string) (*http.Response, string)) {
	t.Helper()
	key := devtools.MustGenerateKey("ES256")
	startCaddy(t, caddyGlobal+fmt.Sprintf(`
http://localhost:9080 {
	mcp_token {
		issuer https://as.e2e.test
		public_key <<PEM_END
%sPEM_END
%s	}
	respond "backend"
}
`, mustPEM(t, key), extra), "caddyfile")
	return key, func(path, token string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, e2eBase+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		return send(t, req)
	}
}
