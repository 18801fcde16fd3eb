package mcptoken

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcptoken/caddy-mcp-token/devtools"
)

// loadCaddyfile posts a Caddyfile to the admin API's /load, as an
// operator's reload does, and returns the status and the answer.
func loadCaddyfile(t *testing.T, cfg string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://localhost:2999/load", strings.NewReader(cfg))
	req.Header.Set("Content-Type", "text/caddyfile")
	resp, err := (&http.Client{Timeout: 60 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestE2EReloadToNewKeySource: a reload that brings a new JWKS endpoint
// waits for its keys (the running config keeps serving meanwhile: no
// 503), and a reload whose key source cannot load is refused with the
// URL and the error, leaving the running config in place.
func TestE2EReloadToNewKeySource(t *testing.T) {
	key1, key2 := devtools.MustGenerateKey("RS256"), devtools.MustGenerateKey("RS256")
	srv1, srv2 := devtools.NewJWKSServer(key1), devtools.NewJWKSServer(key2)
	defer srv1.Close()
	defer srv2.Close()
	tok1 := key1.MustToken(devtools.TokenOptions{Audience: []string{"mcp-e2e"}})
	tok2 := key2.MustToken(devtools.TokenOptions{Audience: []string{"mcp-e2e"}})
	_, echo := startEcho(t)

	startCaddy(t, jwksSite(jwksRoute("/mcp*", srv1.JWKSURL(), echo)), "caddyfile")
	if got := waitStatus(t, e2eBase+"/mcp", tok1, 200); got != 200 {
		t.Fatalf("first config: %d", got)
	}

	// A slow new endpoint: the reload waits for it while the old config
	// answers every request.
	// (Only its first answer is slow: later refetches, for the old
	// config's tokens the new one does not know, answer at once.)
	inner := srv2.Config.Handler
	var slowed atomic.Bool
	srv2.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !slowed.Swap(true) {
			time.Sleep(1500 * time.Millisecond)
		}
		inner.ServeHTTP(w, r)
	})
	var during, not200, transport atomic.Int64
	// A new connection per request: a reload closes idle keep-alive
	// connections, which a client sees as EOF and retries; that is not
	// what is measured here. From 127.0.0.2: once the new config runs, its
	// refusals of tok1 count toward that address's failed-attempt limit,
	// not toward the checks below, made from 127.0.0.1.
	client := clientFrom("127.0.0.2")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			req, _ := http.NewRequest(http.MethodPost, e2eBase+"/mcp", strings.NewReader(toolsList))
			req.Header.Set("Authorization", "Bearer "+tok1)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			during.Add(1)
			if err != nil {
				transport.Add(1)
				continue
			}
			resp.Body.Close()
			// 200 before the switch; after it tok1 names a key the new
			// config does not know: 401, then 429 once the refusals
			// reach the failed-attempt limit. Never a 5xx.
			if resp.StatusCode >= 500 {
				not200.Add(1)
				t.Logf("during the reload: %d (Retry-After %q)", resp.StatusCode, resp.Header.Get("Retry-After"))
			}
		}
	}()
	start := time.Now()
	status, body := loadCaddyfile(t, jwksSite(jwksRoute("/mcp*", srv2.JWKSURL(), echo)))
	took := time.Since(start)
	close(stop)
	wg.Wait()
	if status != 200 {
		t.Fatalf("reload to a slow endpoint: %d %s", status, body)
	}
	if took < time.Second {
		t.Fatalf("the reload took %s: it did not wait for the new key source", took)
	}
	if n := not200.Load(); n != 0 {
		t.Fatalf("%d of %d requests during the reload got a 5xx (a reload must not cause 503s)", n, during.Load())
	}
	t.Logf("reload to a slow (1.5 s) key source took %s; %d requests meanwhile, none 503 (%d connection errors)", took.Round(time.Millisecond), during.Load(), transport.Load())
	if resp, _ := post(t, e2eBase+"/mcp", tok2, toolsList); resp.StatusCode != 200 {
		t.Fatalf("right after the reload, the new key: %d", resp.StatusCode)
	}

	// A mistyped URL: the reload is refused with the URL and the error,
	// and the running config keeps serving.
	notFound := httptest.NewServer(http.NotFoundHandler())
	defer notFound.Close()
	bad := notFound.URL + "/no-such-jwks.json"
	cfg := strings.Replace(jwksSite(jwksRoute("/mcp*", bad, echo)), "audience mcp-e2e", "audience mcp-e2e\n\t\t\tjwks_timeout 1s", 1)
	status, body = loadCaddyfile(t, cfg)
	if status == 200 || !strings.Contains(body, "no-such-jwks.json") || !strings.Contains(body, "could not load its keys") {
		t.Fatalf("reload to a mistyped URL: %d %s", status, body)
	}
	if resp, _ := post(t, e2eBase+"/mcp", tok2, toolsList); resp.StatusCode != 200 {
		t.Fatalf("after a refused reload, the running config: %d", resp.StatusCode)
	}
}
