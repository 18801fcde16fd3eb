package mcptoken

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mcptoken/caddy-mcp-token/devtools"
	"github.com/mcptoken/caddy-mcp-token/internal/limiter"
)

// fakeClock is a clock the tests move by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *fakeClock) advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// setLimiterClocks gives every pooled failed-attempt limiter (those of the
// loaded config) the clock c, so windows end when the test says, not when
// a loaded machine gets round to it. It returns how many it set.
func setLimiterClocks(c *fakeClock) int {
	n := 0
	rangePool(limiterPool, func(l limiter.Counter) {
		switch l := l.(type) {
		case *limiter.Local:
			l.SetClock(c.now)
		case *limiter.Shared:
			l.Local().SetClock(c.now)
		}
		n++
	})
	return n
}

// withTrustedProxies adds trusted_proxies for 127.0.0.1 to caddyGlobal.
func withTrustedProxies() string {
	return strings.Replace(caddyGlobal, "\tskip_install_trust\n", "\tskip_install_trust\n\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t}\n", 1)
}

// TestE2ERateLimit: the 11th failing attempt from an address within the
// window gets 429 with Retry-After, before any verification and without
// reaching the backend; another address is unaffected; the counts survive
// a config reload; the address is served again after the window. Client
// addresses come from X-Forwarded-For through trusted_proxies, as Caddy's
// client IP does behind a load balancer. The limiter runs on a fake clock.
func TestE2ERateLimit(t *testing.T) {
	key := devtools.MustGenerateKey("ES256")
	rec, echo := startEcho(t)
	const window = time.Minute
	cfg := func(extra string) string {
		return withTrustedProxies() + fmt.Sprintf(`
http://localhost:9080 {
	mcp_token /mcp* {
		public_key <<PEM_END
%sPEM_END
		audience mcp-e2e
		authorization_servers https://as.example
		rate_limit 10 %s
	}
	handle /mcp* {
		%s
	}
	%s
}
`, mustPEM(t, key), window, echoProxy(echo, "ok {http.auth.user.client_id}"), extra)
	}
	startCaddy(t, cfg(""), "caddyfile")
	clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	if n := setLimiterClocks(clock); n == 0 {
		t.Fatal("no pooled limiter: rate_limit is not in effect")
	}

	good := key.MustToken(devtools.TokenOptions{Audience: []string{"mcp-e2e"}, Claims: map[string]any{"client_id": "rl"}})
	bad := devtools.MustGenerateKey("ES256").MustToken(devtools.TokenOptions{Audience: []string{"mcp-e2e"}})
	do := func(from, token string) (*http.Response, string) {
		return postWith(t, e2eBase+"/mcp", token, toolsList, map[string]string{"X-Forwarded-For": from})
	}

	// A client that never fails is never limited, and missing tokens
	// (how MCP discovery starts) do not count.
	for i := 0; i < 15; i++ {
		if r, body := do("203.0.113.9", good); r.StatusCode != 200 || body != "ok rl" {
			t.Fatalf("good client, request %d: %d %q", i, r.StatusCode, body)
		}
		if r, _ := do("203.0.113.9", ""); r.StatusCode != 401 {
			t.Fatalf("no token, request %d: %d", i, r.StatusCode)
		}
	}
	for i := 1; i <= 10; i++ {
		if r, _ := do("198.51.100.7", bad); r.StatusCode != 401 {
			t.Fatalf("failing attempt %d: %d", i, r.StatusCode)
		}
	}
	before := rec.Count()
	r, _ := do("198.51.100.7", bad)
	if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") != "60" {
		t.Fatalf("11th failing attempt: %d, Retry-After %q (want 429, 60)", r.StatusCode, r.Header.Get("Retry-After"))
	}
	reached(t, rec, before, 0, "rate-limited requests")
	// A token the gateway has verified already (in the token cache)
	// costs no verification and is still served: one broken client behind
	// a shared address does not lock out the others.
	if r, _ := do("198.51.100.7", good); r.StatusCode != 200 {
		t.Fatalf("limited address with a cached good token: %d", r.StatusCode)
	}
	reached(t, rec, before, 1, "the cached token's request")
	// Limited before verification: a token that would need it waits,
	// good or not, and the backend sees none of it.
	fresh := key.MustToken(devtools.TokenOptions{Audience: []string{"mcp-e2e"}, Claims: map[string]any{"client_id": "rl2"}})
	if r, _ := do("198.51.100.7", fresh); r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("limited address with a new good token: %d", r.StatusCode)
	}
	reached(t, rec, before, 1, "rate-limited requests")
	// Another address is unaffected.
	if r, _ := do("198.51.100.8", good); r.StatusCode != 200 {
		t.Fatalf("another address: %d", r.StatusCode)
	}

	// Kept across reloads: a reload that changes another route keeps the
	// limiter (and its counts) of the unchanged mcp_token configuration.
	clock.advance(30 * time.Second)
	startCaddy(t, cfg(`respond /reloaded "reloaded" 200`), "caddyfile")
	if r, body := post(t, e2eBase+"/reloaded", "", ""); r.StatusCode != 200 || body != "reloaded" {
		t.Fatalf("the reload did not happen: %d %q", r.StatusCode, body)
	}
	r, _ = do("198.51.100.7", good)
	if r.StatusCode != http.StatusTooManyRequests || r.Header.Get("Retry-After") != "30" {
		t.Fatalf("after a reload, within the window: %d, Retry-After %q (want 429, 30)", r.StatusCode, r.Header.Get("Retry-After"))
	}

	// After the window the address is served again.
	clock.advance(30 * time.Second)
	if r, body := do("198.51.100.7", good); r.StatusCode != 200 || body != "ok rl" {
		t.Fatalf("after the window: %d %q", r.StatusCode, body)
	}
}

// TestE2ERateLimitIgnoresXForwardedForWithoutTrustedProxies: without
// trusted_proxies the client address is the connection's, so a client
// cannot escape the limit by varying X-Forwarded-For.
func TestE2ERateLimitIgnoresXForwardedForWithoutTrustedProxies(t *testing.T) {
	key := devtools.MustGenerateKey("ES256")
	rec, echo := startEcho(t)
	startCaddy(t, caddyGlobal+fmt.Sprintf(`
http://localhost:9080 {
	mcp_token /mcp* {
		public_key <<PEM_END
%sPEM_END
		audience mcp-e2e
		authorization_servers https://as.example
		rate_limit 3 1m
	}
	handle /mcp* {
		%s
	}
}
`, mustPEM(t, key), echoProxy(echo, "ok")), "caddyfile")
	clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	if setLimiterClocks(clock) == 0 {
		t.Fatal("no pooled limiter")
	}
	bad := devtools.MustGenerateKey("ES256").MustToken(devtools.TokenOptions{Audience: []string{"mcp-e2e"}})
	good := key.MustToken(devtools.TokenOptions{Audience: []string{"mcp-e2e"}})
	for i := 1; i <= 3; i++ {
		from := fmt.Sprintf("198.51.100.%d", i)
		if r, _ := postWith(t, e2eBase+"/mcp", bad, toolsList, map[string]string{"X-Forwarded-For": from}); r.StatusCode != 401 {
			t.Fatalf("failing attempt %d from X-Forwarded-For %s: %d", i, from, r.StatusCode)
		}
	}
	before := rec.Count()
	r, _ := postWith(t, e2eBase+"/mcp", good, toolsList, map[string]string{"X-Forwarded-For": "203.0.113.77"})
	if r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("a fresh X-Forwarded-For after 3 failures from 127.0.0.1: %d, want 429", r.StatusCode)
	}
	reached(t, rec, before, 0, "the limited request")
}

// TestE2ERateLimitIgnoresOutages: a 503 (the key source is down) is not
// the client's failure and does not count toward the limit; a refused
// token does.
func TestE2ERateLimitIgnoresOutages(t *testing.T) {
	key := devtools.MustGenerateKey("ES256")
	srv := devtools.NewJWKSServer(key)
	defer srv.Close()
	srv.Fail(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusBadGateway) })
	rec, echo := startEcho(t)
	startCaddyFresh(t, caddyGlobal+fmt.Sprintf(`
http://localhost:9080 {
	mcp_token /mcp* {
		jwks_uri %s
		algorithms ES256
		audience mcp-e2e
		authorization_servers https://as.example
		rate_limit 2 1m
	}
	handle /mcp* {
		%s
	}
}
`, srv.JWKSURL(), echoProxy(echo, "ok")), "caddyfile")
	clock := &fakeClock{t: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	if setLimiterClocks(clock) == 0 {
		t.Fatal("no pooled limiter")
	}
	good := key.MustToken(devtools.TokenOptions{Audience: []string{"mcp-e2e"}})
	bad := devtools.MustGenerateKey("ES256").MustToken(devtools.TokenOptions{Audience: []string{"mcp-e2e"}})
	for i := 1; i <= 5; i++ {
		tok := good
		if i%2 == 0 {
			tok = bad
		}
		if r, _ := post(t, e2eBase+"/mcp", tok, toolsList); r.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("request %d with the key source down: %d, want 503", i, r.StatusCode)
		}
	}
	reached(t, rec, 0, 0, "requests while the key source was down")
	srv.Fail(nil)
	if got := waitStatus(t, e2eBase+"/mcp", good, 200); got != 200 {
		t.Fatalf("after 5 outage answers, with the key source up: %d, want 200 (503s must not count)", got)
	}
	// The limiter is live: two refused tokens do count.
	for i := 1; i <= 2; i++ {
		if r, _ := post(t, e2eBase+"/mcp", bad, toolsList); r.StatusCode != 401 {
			t.Fatalf("refused token %d: %d", i, r.StatusCode)
		}
	}
	// (A token in the verified-token cache would still pass: a new one.)
	fresh := key.MustToken(devtools.TokenOptions{Audience: []string{"mcp-e2e"}, Subject: "fresh"})
	if r, _ := post(t, e2eBase+"/mcp", fresh, toolsList); r.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("after 2 refused tokens: %d, want 429", r.StatusCode)
	}
}
