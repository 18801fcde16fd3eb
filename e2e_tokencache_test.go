package mcptoken

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mcptoken/caddy-mcp-token/devtools"
)

// TestE2ETokenCache: through a real Caddy and the Go SDK backend (the
// judge: it records every request it receives), a cached token is served
// from the cache, still meets per-tool rules on every hit, and never
// crosses to another route's policy.
func TestE2ETokenCache(t *testing.T) {
	key := devtools.MustGenerateKey("ES256")
	rec, backend := startBackend(t)
	pub := mustPEM(t, key)
	startCaddy(t, caddyGlobal+fmt.Sprintf(`
http://localhost:9080 {
	handle_path /a/* {
		mcp_token {
			public_key <<PEM_END
%[1]sPEM_END
			audience aud-a
			authorization_servers https://as.example
			tool_scopes deploy deploy:write
			resource_path /a
		}
		rewrite * /mcp
		reverse_proxy %[2]s
	}
	handle_path /b/* {
		mcp_token {
			public_key <<PEM_END
%[1]sPEM_END
			audience aud-b
			authorization_servers https://as.example
			resource_path /b
		}
		rewrite * /mcp
		reverse_proxy %[2]s
	}
}
`, pub, backend), "caddyfile")

	tok := key.MustToken(devtools.TokenOptions{Audience: []string{"aud-a"}, Scopes: []string{"mcp:read"}, ExpiresIn: time.Hour})
	before := scrape(t)
	for i := 0; i < 3; i++ {
		if resp, body := post(t, e2eBase+"/a/x", tok, toolsList); resp.StatusCode != 200 {
			t.Fatalf("request %d on /a: %d %s", i, resp.StatusCode, body)
		}
	}
	after := scrape(t)
	if hits := after["caddy_mcp_token_token_cache_hits_total"] - before["caddy_mcp_token_token_cache_hits_total"]; hits < 2 {
		t.Fatalf("token cache hits: %v, want >= 2 (the 2nd and 3rd request)", hits)
	}
	if n := after["caddy_mcp_token_token_cache_entries"]; n < 1 {
		t.Fatalf("token cache entries gauge: %v", n)
	}

	// A hit still meets the per-tool rule: 403, and the backend never
	// sees the call.
	seen := rec.Count()
	deploy := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"deploy","arguments":{"service":"x"}}}`
	resp, _ := post(t, e2eBase+"/a/x", tok, deploy)
	if resp.StatusCode != 403 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `scope="deploy:write"`) {
		t.Fatalf("deploy on a cached token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	// Another route's policy never takes the entry: aud-a is not aud-b.
	resp, _ = post(t, e2eBase+"/b/x", tok, toolsList)
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), "invalid_token") {
		t.Fatalf("token for /a on /b: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if got := rec.Count(); got != seen {
		t.Fatalf("the backend received %d refused request(s)", got-seen)
	}
}
