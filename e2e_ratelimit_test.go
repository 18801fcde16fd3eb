package mcptoken

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcptoken/caddy-mcp-token/devtools"
)

// TestE2ERateLimit: the 11th failing attempt from an address within the
// window gets 429 with Retry-After, before any verification; another
// address is unaffected; the address is served again after the window.
// Client addresses come from X-Forwarded-For through trusted_proxies,
// as Caddy's client IP does behind a load balancer.
func TestE2ERateLimit(t *testing.T) {
	key := devtools.MustGenerateKey("ES256")
	const window = 2 * time.Second
	startCaddy(t, strings.Replace(caddyGlobal, "\tskip_install_trust\n", "\tskip_install_trust\n\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}\n", 1)+fmt.Sprintf(`
http://localhost:9080 {
	mcp_token /mcp* {
		public_key <<PEM
%sPEM
		audience mcp-e2e
		authorization_servers https://as.example
		rate_limit 10 %s
	}
	respond /mcp* "ok {http.auth.user.client_id}" 200
}
`, mustPEM(t, key), window), "caddyfile")

	good := key.MustToken(devtools.TokenOptions{Audience: []string{"mcp-e2e"}, Claims: map[string]any{"client_id": "rl"}})
	bad := devtools.MustGenerateKey("ES256").MustToken(devtools.TokenOptions{Audience: []string{"mcp-e2e"}})
	do := func(from, token string) *http.Response {
		resp, _ := postWith(t, e2eBase+"/mcp", token, toolsList, map[string]string{"X-Forwarded-For": from})
		return resp
	}

	// A client that never fails is never limited, and missing tokens
	// (how MCP discovery starts) do not count.
	for i := 0; i < 15; i++ {
		if r := do("203.0.113.9", good); r.StatusCode != 200 {
			t.Fatalf("good client, request %d: %d", i, r.StatusCode)
		}
		if r := do("203.0.113.9", ""); r.StatusCode != 401 {
			t.Fatalf("no token, request %d: %d", i, r.StatusCode)
		}
	}
	start := time.Now()
	for i := 1; i <= 10; i++ {
		if r := do("198.51.100.7", bad); r.StatusCode != 401 {
			t.Fatalf("failing attempt %d: %d", i, r.StatusCode)
		}
	}
	r := do("198.51.100.7", bad)
	retry, _ := strconv.Atoi(r.Header.Get("Retry-After"))
	if r.StatusCode != http.StatusTooManyRequests || retry < 1 || retry > int(window.Seconds()) {
		t.Fatalf("11th failing attempt: %d, Retry-After %q", r.StatusCode, r.Header.Get("Retry-After"))
	}
	// A token the gateway has verified already (in the token cache)
	// costs no verification and is still served: one broken client behind
	// a shared address does not lock out the others.
	if r := do("198.51.100.7", good); r.StatusCode != 200 {
		t.Fatalf("limited address with a cached good token: %d", r.StatusCode)
	}
	// Limited before verification: a token that would need it waits,
	// good or not.
	fresh := key.MustToken(devtools.TokenOptions{Audience: []string{"mcp-e2e"}, Claims: map[string]any{"client_id": "rl2"}})
	if r := do("198.51.100.7", fresh); r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("limited address with a new good token: %d", r.StatusCode)
	}
	// Another address is unaffected.
	if r := do("198.51.100.8", good); r.StatusCode != 200 {
		t.Fatalf("another address: %d", r.StatusCode)
	}
	// After the window the address is served again.
	time.Sleep(time.Until(start.Add(window + 200*time.Millisecond)))
	if r := do("198.51.100.7", good); r.StatusCode != 200 {
		t.Fatalf("after the window: %d", r.StatusCode)
	}
}
