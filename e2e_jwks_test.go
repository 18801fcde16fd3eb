package mcptoken

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mcptoken/caddy-mcp-token/devtools"
	"github.com/mcptoken/caddy-mcp-token/jwks"
)

// pooledFor returns the pooled JWKS cache for url and its reference count.
func pooledFor(url string) (*jwks.Cache, int) {
	var found *jwks.Cache
	var refs int
	jwksPool.Range(func(key, value any) bool {
		if strings.Contains(key.(string), "url="+url+" ") {
			found = value.(pooled[*jwks.Cache]).value
			refs, _ = jwksPool.References(key)
			return false
		}
		return true
	})
	return found, refs
}

// waitStatus polls url until it answers want (bounded), returning the last status.
func waitStatus(t *testing.T, url, token string, want int) int {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, _ := post(t, url, token, toolsList)
		if resp.StatusCode == want || time.Now().After(deadline) {
			return resp.StatusCode
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func jwksSite(routes string) string {
	return caddyGlobal + "\nhttp://localhost:9080 {\n" + routes + "\n\trespond 404\n}\n"
}

// jwksRoute protects path with the JWKS at url, in front of the echo
// backend at echo.
func jwksRoute(path, url, echo string) string {
	return fmt.Sprintf(`
	handle %s {
		mcp_token {
			jwks_uri %s
			audience mcp-e2e
			authorization_servers https://as.example
		}
		%s
	}`, path, url, echoProxy(echo, "ok {http.auth.user.client_id}"))
}

func TestE2EJWKSSharedCacheAndReload(t *testing.T) {
	key := devtools.MustGenerateKey("RS256")
	srv := devtools.NewJWKSServer(key)
	defer srv.Close()
	tok := key.MustToken(devtools.TokenOptions{Audience: []string{"mcp-e2e"}, Claims: map[string]any{"client_id": "jwks-client"}})
	_, echo := startEcho(t)

	// Two routes naming the same endpoint: one cache, one fetch.
	startCaddy(t, jwksSite(jwksRoute("/a/*", srv.JWKSURL(), echo)+jwksRoute("/b/*", srv.JWKSURL(), echo)), "caddyfile")
	for _, path := range []string{"/a/x", "/b/x"} {
		if got := waitStatus(t, e2eBase+path, tok, 200); got != 200 {
			t.Fatalf("%s: status %d", path, got)
		}
	}
	cache, refs := pooledFor(srv.JWKSURL())
	if cache == nil || refs != 2 {
		t.Fatalf("pool: cache %v, references %d, want 2", cache != nil, refs)
	}
	if hits := srv.Hits(); hits != 1 {
		t.Fatalf("two routes caused %d JWKS fetches, want 1", hits)
	}

	// A config reload through the admin API that keeps the URI reuses the
	// cache: no new fetch, same cache.
	startCaddy(t, jwksSite(jwksRoute("/c/*", srv.JWKSURL(), echo)), "caddyfile")
	if got := waitStatus(t, e2eBase+"/c/x", tok, 200); got != 200 {
		t.Fatalf("after reload: status %d", got)
	}
	again, refs := pooledFor(srv.JWKSURL())
	if again != cache || refs != 1 {
		t.Fatalf("after reload: same cache %v, references %d, want 1", again == cache, refs)
	}
	if hits := srv.Hits(); hits != 1 {
		t.Fatalf("the reload caused a refetch: %d fetches", hits)
	}

	// Removing it from the config releases the cache and stops its goroutine.
	startCaddy(t, jwksSite(`
	handle /d/* {
		mcp_token {
			static_token dev-d d-client
		}
		respond "ok" 200
	}`), "caddyfile")
	if gone, _ := pooledFor(srv.JWKSURL()); gone != nil {
		t.Fatal("the cache is still pooled after its last user went away")
	}
	select {
	case <-cache.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the refresh goroutine did not stop")
	}
}

func TestE2EJWKSOutageAtStart(t *testing.T) {
	key := devtools.MustGenerateKey("ES256")
	srv := devtools.NewJWKSServer(key)
	defer srv.Close()
	srv.Fail(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "down", http.StatusBadGateway) })
	tok := key.MustToken(devtools.TokenOptions{Audience: []string{"mcp-e2e"}})
	rec, echo := startEcho(t)

	// A first start: no mcp_token is serving (a reload would wait for the
	// keys instead, see TestE2EReloadToNewKeySource).
	startCaddyFresh(t, jwksSite(strings.Replace(jwksRoute("/mcp*", srv.JWKSURL(), echo), "audience mcp-e2e", "audience mcp-e2e\n\t\t\talgorithms ES256", 1)), "caddyfile")
	resp, body := post(t, e2eBase+"/mcp", tok, toolsList)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("before any key set: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if resp.Header.Get("WWW-Authenticate") != "" {
		t.Fatal("a technical failure must not carry a Bearer error challenge")
	}
	reached(t, rec, 0, 0, "the 503")
	srv.Fail(nil)
	if got := waitStatus(t, e2eBase+"/mcp", tok, 200); got != 200 {
		t.Fatalf("after the endpoint came up: %d", got)
	}
}

func TestE2EMultiIssuer(t *testing.T) {
	keyA, keyB := devtools.MustGenerateKey("RS256"), devtools.MustGenerateKey("RS256")
	srvA := devtools.NewJWKSServer(keyA)
	defer srvA.Close()
	rec, echo := startEcho(t)
	startCaddy(t, jwksSite(fmt.Sprintf(`
	handle /mcp* {
		mcp_token {
			issuer https://a.example {
				jwks_uri %s
				audience api-a
			}
			issuer https://b.example {
				public_key <<PEM_END
%sPEM_END
				audience api-b
			}
		}
		%s
	}`, srvA.JWKSURL(), mustPEM(t, keyB), echoProxy(echo, "ok {http.auth.user.iss}"))), "caddyfile")
	tokA := keyA.MustToken(devtools.TokenOptions{Issuer: "https://a.example", Audience: []string{"api-a"}})
	tokB := keyB.MustToken(devtools.TokenOptions{Issuer: "https://b.example", Audience: []string{"api-b"}})
	forged := keyB.MustToken(devtools.TokenOptions{Issuer: "https://a.example", Audience: []string{"api-a"}})
	if got := waitStatus(t, e2eBase+"/mcp", tokA, 200); got != 200 {
		t.Fatalf("issuer A's token: %d", got)
	}
	resp, body := post(t, e2eBase+"/mcp", tokB, toolsList)
	if resp.StatusCode != 200 || body != "ok https://b.example" {
		t.Fatalf("issuer B's token: %d %s", resp.StatusCode, body)
	}
	before := rec.Count()
	resp, _ = post(t, e2eBase+"/mcp", forged, toolsList)
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
		t.Fatalf("a token claiming issuer A signed with issuer B's key: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	reached(t, rec, before, 0, "the forged token")
}
