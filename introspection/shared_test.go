package introspection

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcptoken/caddy-mcp-token/internal/testpeers"
	"github.com/mcptoken/caddy-mcp-token/store"
)

// TestSharedIntrospection: two clients (two instances) on one Redis: a
// token introspected by one is answered to the other from Redis, so the
// endpoint is called once; answers are keyed by endpoint and client id;
// no token is stored, as a key or a value; entries live as long as the
// local ones; with Redis down the endpoint answers.
func TestSharedIntrospection(t *testing.T) {
	srv := testpeers.StartRedisServer(t)
	ep := newEndpoint(t, answer(activeAnswer(map[string]any{"exp": time.Now().Add(time.Hour).Unix()})))
	instance := func(clientID string) *Verifier {
		r, err := store.NewRedis(srv.URL, store.RedisOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Close() })
		cl, err := New(Options{URL: ep.URL, ClientID: clientID, ClientSecret: "s", CacheTTL: 30 * time.Second, Shared: r.Cache("introspection")})
		if err != nil {
			t.Fatal(err)
		}
		v, err := cl.Verifier(Rules{})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	raw := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = raw.Close() })
	ctx := context.Background()
	waitKeys := func(n int) []string {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			keys, err := raw.Keys(ctx, "*").Result()
			if err != nil {
				t.Fatal(err)
			}
			if len(keys) >= n {
				return keys
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d keys in Redis, want %d", len(keys), n)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	const token = "opaque-token-0123456789"
	a, b := instance("c1"), instance("c1")
	if tok, err := a.Verify(ctx, token); err != nil || tok.Subject != "u1" {
		t.Fatalf("instance A: %v %v", tok, err)
	}
	keys := waitKeys(1)
	if tok, err := b.Verify(ctx, token); err != nil || tok.Subject != "u1" || tok.ClientID != "c1" {
		t.Fatalf("instance B: %v %v", tok, err)
	}
	if n := ep.calls.Load(); n != 1 {
		t.Fatalf("the endpoint was called %d times for one token on two instances, want 1", n)
	}
	if st := b.client.Stats(); st.SharedHits != 1 || st.Calls != 0 {
		t.Fatalf("instance B stats %+v", st)
	}
	// No token in Redis; the entry lives no longer than cache_ttl.
	for _, k := range keys {
		v, _ := raw.Get(ctx, k).Result()
		if strings.Contains(k, token) || strings.Contains(v, token) || !strings.HasPrefix(k, "mcp_token:introspection:") {
			t.Fatalf("key %q value %q", k, v)
		}
		if ttl := raw.PTTL(ctx, k).Val(); ttl <= 0 || ttl > 30*time.Second {
			t.Fatalf("TTL %s, want at most cache_ttl 30s", ttl)
		}
	}
	// Another client id of the endpoint asks for itself.
	if _, err := instance("c2").Verify(ctx, token); err != nil || ep.calls.Load() != 2 {
		t.Fatalf("client c2: %v, %d calls", err, ep.calls.Load())
	}
	// An inactive answer is shared too, for the negative TTL.
	ep.set(answer(map[string]any{"active": false}))
	if _, err := a.Verify(ctx, "revoked-token"); err == nil {
		t.Fatal("inactive token accepted")
	}
	waitKeys(3)
	if _, err := b.Verify(ctx, "revoked-token"); err == nil || ep.calls.Load() != 3 {
		t.Fatalf("inactive at B: %v, %d calls", err, ep.calls.Load())
	}
	// Redis down: the local cache and the endpoint answer.
	srv.Stop()
	ep.set(answer(activeAnswer(map[string]any{"exp": time.Now().Add(time.Hour).Unix()})))
	if _, err := b.Verify(ctx, token); err != nil {
		t.Fatalf("Redis down, cached locally: %v", err)
	}
	if _, err := b.Verify(ctx, "another-token"); err != nil || ep.calls.Load() != 4 {
		t.Fatalf("Redis down, a new token: %v, %d calls", err, ep.calls.Load())
	}
	if st := b.client.Status(); st.FailureStreak != 0 {
		t.Fatalf("a Redis outage counted as an endpoint failure: %+v", st)
	}
}

// TestSharedCacheNeedsTheCache: cache_ttl 0 (no cache) and a shared cache
// contradict each other.
func TestSharedCacheNeedsTheCache(t *testing.T) {
	r, err := store.NewRedis("redis://127.0.0.1:1/0", store.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, err = New(Options{URL: "https://as.example/introspect", ClientID: "c", NoCache: true, Shared: r.Cache("introspection")})
	if err == nil || !strings.Contains(err.Error(), "cache_ttl 0") {
		t.Fatalf("err = %v", err)
	}
}
