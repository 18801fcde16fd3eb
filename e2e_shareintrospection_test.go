package mcptoken

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/redis/go-redis/v9"

	"github.com/mcptoken/caddy-mcp-token/internal/testpeers"
	"github.com/mcptoken/caddy-mcp-token/introspection"
	"github.com/mcptoken/caddy-mcp-token/store"
)

// countingIntrospection is an introspection endpoint that says every
// token is active, except those starting with "bad-", and counts its calls.
func countingIntrospection(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	var calls atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		if strings.HasPrefix(r.PostFormValue("token"), "bad-") {
			_ = json.NewEncoder(w).Encode(map[string]any{"active": false})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"active": true, "client_id": "fleet-client", "sub": "user-1",
			"scope": "mcp:read", "exp": time.Now().Add(time.Hour).Unix()})
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &calls
}

// shareIntrospectionSite is a site whose mcp_token shares introspection.
func shareIntrospectionSite(endpoint, backend, extra string) string {
	return fmt.Sprintf(`
http://localhost:9080 {
	mcp_token /mcp* {
		introspection %s {
			client_id fleet-client
			client_secret fleet-client-secret
			share_introspection
			%s
		}
		authorization_servers https://as.example.com
	}
	handle /mcp* {
		reverse_proxy %s
	}
}
`, endpoint, extra, backend)
}

// TestShareIntrospectionNeedsTheStore: share_introspection without the
// global `mcp_token { store redis <url> }` (or with `store memory`) is
// refused when the config loads, never silently ignored; so is it with
// cache_ttl 0. With the store, the config loads.
func TestShareIntrospectionNeedsTheStore(t *testing.T) {
	const site = "https://as.example.com/introspect"
	for _, tc := range []struct{ name, global, extra, err string }{
		{"no global option", "", "", "share_introspection needs the fleet's store"},
		{"store memory", "mcp_token {\n\t\tstore memory\n\t}", "", "share_introspection needs the fleet's store"},
		{"no cache", "mcp_token {\n\t\tstore redis redis://127.0.0.1:1/0\n\t}", "cache_ttl 0", "cache_ttl 0 turns it off"},
		{"store redis", "mcp_token {\n\t\tstore redis redis://127.0.0.1:1/0\n\t}", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := "{\n\tadmin off\n\t" + tc.global + "\n}\n" + shareIntrospectionSite(site, "127.0.0.1:1", tc.extra)
			raw, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(body), nil)
			if err != nil {
				t.Fatalf("adapt: %v", err)
			}
			if !strings.Contains(string(raw), `"share_introspection":true`) {
				t.Fatalf("share_introspection missing from the JSON: %s", raw)
			}
			var cfg caddy.Config
			if err := json.Unmarshal(raw, &cfg); err != nil {
				t.Fatal(err)
			}
			err = caddy.Validate(&cfg)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("with the store: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want %q", err, tc.err)
			}
		})
	}
}

// TestE2EShareIntrospection: Caddy with `store redis` and
// share_introspection, and a second instance (an introspection client on
// the same Redis, as another gateway would run it): a token Caddy
// introspected is answered to the other from Redis, and one the other
// introspected is answered to Caddy; the endpoint is called once per
// token.
func TestE2EShareIntrospection(t *testing.T) {
	url, _ := testpeers.StartRedis(t)
	endpoint, calls := countingIntrospection(t)
	_, backend := startBackend(t)
	remember("fleet-client-secret")
	global := strings.TrimSuffix(strings.TrimSpace(caddyGlobal), "}") + "\tmcp_token {\n\t\tstore redis " + url + "\n\t}\n}\n"
	startCaddy(t, global+shareIntrospectionSite(endpoint, backend, ""), "caddyfile")

	r, err := store.NewRedis(url, store.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	other, err := introspection.New(introspection.Options{URL: endpoint, ClientID: "fleet-client",
		ClientSecret: "fleet-client-secret", Shared: r.Cache("introspection")})
	if err != nil {
		t.Fatal(err)
	}
	verifier, err := other.Verifier(introspection.Rules{})
	if err != nil {
		t.Fatal(err)
	}
	raw := redis.NewClient(&redis.Options{Addr: strings.TrimSuffix(strings.TrimPrefix(url, "redis://"), "/0")})
	defer raw.Close()
	waitShared := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			keys, err := raw.Keys(context.Background(), "mcp_token:introspection:*").Result()
			if err == nil && len(keys) >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d answers in Redis, want %d (%v)", len(keys), n, err)
			}
		}
	}

	const first, second = "opaque-fleet-token-1", "opaque-fleet-token-2"
	if resp, body := post(t, e2eBase+"/mcp", first, toolsList); resp.StatusCode != 200 {
		t.Fatalf("through Caddy: %d %s", resp.StatusCode, body)
	}
	waitShared(1)
	if tok, err := verifier.Verify(context.Background(), first); err != nil || tok.Subject != "user-1" {
		t.Fatalf("the other instance: %v %v", tok, err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("endpoint called %d times for a token seen by two instances, want 1", n)
	}
	if _, err := verifier.Verify(context.Background(), second); err != nil {
		t.Fatal(err)
	}
	waitShared(2)
	if resp, body := post(t, e2eBase+"/mcp", second, toolsList); resp.StatusCode != 200 {
		t.Fatalf("through Caddy, introspected by the other: %d %s", resp.StatusCode, body)
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("endpoint called %d times for two tokens, want 2", n)
	}
	if st := other.Stats(); st.SharedHits != 1 || st.Calls != 1 {
		t.Fatalf("the other instance: %+v, want 1 shared hit and 1 call", st)
	}
}

// TestE2EFleetStoreSurvivesReload: the Redis client is pooled, so a
// reload that keeps `store redis` keeps it, and the limiter, session
// bindings and introspection client pooled with it keep working: after a
// reload, answers and failed attempts still reach Redis.
func TestE2EFleetStoreSurvivesReload(t *testing.T) {
	url, _ := testpeers.StartRedis(t)
	endpoint, _ := countingIntrospection(t)
	_, backend := startBackend(t)
	remember("fleet-client-secret")
	global := strings.TrimSuffix(strings.TrimSpace(caddyGlobal), "}") + "\tmcp_token {\n\t\tstore redis " + url + "\n\t}\n}\n"
	site := shareIntrospectionSite(endpoint, backend, "")
	startCaddy(t, global+site, "caddyfile")
	if resp, body := post(t, e2eBase+"/mcp", "opaque-reload-token-1", toolsList); resp.StatusCode != 200 {
		t.Fatalf("before the reload: %d %s", resp.StatusCode, body)
	}
	// A reload that changes the site (another route) but keeps the store.
	startCaddy(t, global+strings.Replace(site, "\thandle /mcp* {", "\thandle /other {\n\t\trespond 204\n\t}\n\thandle /mcp* {", 1), "caddyfile")
	if resp, body := post(t, e2eBase+"/mcp", "opaque-reload-token-2", toolsList); resp.StatusCode != 200 {
		t.Fatalf("after the reload: %d %s", resp.StatusCode, body)
	}
	if resp, _ := post(t, e2eBase+"/mcp", "bad-reload-token", toolsList); resp.StatusCode != 401 {
		t.Fatalf("inactive token: %d, want 401", resp.StatusCode)
	}
	raw := redis.NewClient(&redis.Options{Addr: strings.TrimSuffix(strings.TrimPrefix(url, "redis://"), "/0")})
	defer raw.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		answers, _ := raw.Keys(context.Background(), "mcp_token:introspection:*").Result()
		limits, _ := raw.Keys(context.Background(), "mcp_token:limit:*").Result()
		if len(answers) == 3 && len(limits) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a reload: %d introspection answers and %d failure windows in Redis, want 3 and 1", len(answers), len(limits))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
