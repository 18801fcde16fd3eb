package introspection

import (
	"context"
	"crypto/sha256"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
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

// TestSharedIntrospectionHonoursEachTTL: two instances share answers for
// one endpoint and client id, one with cache_ttl 10m, the other 200ms
// (negative TTLs alike). The short one keeps a shared answer no longer
// than its own TTL from the endpoint's answer, locally or re-read from
// Redis: after a revocation it asks the endpoint within its TTL, not
// within the writer's.
func TestSharedIntrospectionHonoursEachTTL(t *testing.T) {
	url, _ := testpeers.StartRedis(t)
	ep := newEndpoint(t, answer(activeAnswer(map[string]any{"exp": time.Now().Add(time.Hour).Unix()})))
	var skew atomic.Int64 // B's clock runs ahead by this much
	clockB := func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	instance := func(ttl time.Duration, now func() time.Time) *Verifier {
		r, err := store.NewRedis(url, store.RedisOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Close() })
		cl, err := New(Options{URL: ep.URL, ClientID: "c1", ClientSecret: "s", CacheTTL: ttl, NegativeCacheTTL: ttl,
			Shared: r.Cache("introspection"), Now: now})
		if err != nil {
			t.Fatal(err)
		}
		v, err := cl.Verifier(Rules{})
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	const short = 200 * time.Millisecond
	long, brief := instance(10*time.Minute, nil), instance(short, clockB)
	ctx := context.Background()
	// waitShared waits until long's answer for token is in Redis (it is
	// stored after the waiters have it).
	waitShared := func(token string, active bool) {
		t.Helper()
		key := long.client.sharedKey(token)
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			if raw, ok, err := long.client.opts.Shared.Load(ctx, key); err == nil && ok &&
				strings.Contains(string(raw), fmt.Sprintf(`"active":%v`, active)) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: the answer never reached Redis", token)
			}
		}
	}

	// An active answer, written by the 10m instance.
	const token = "opaque-token-revoked-later"
	if _, err := long.Verify(ctx, token); err != nil {
		t.Fatal(err)
	}
	waitShared(token, true)
	if _, err := brief.Verify(ctx, token); err != nil || ep.calls.Load() != 1 {
		t.Fatalf("the 200ms instance: %v, %d endpoint calls, want a shared hit", err, ep.calls.Load())
	}
	if e, ok := brief.client.cache.Get(sha256.Sum256([]byte(token))); !ok || e.expires.After(clockB().Add(short)) {
		t.Fatalf("the 200ms instance cached the shared answer until %s (in %s), want at most %s",
			e.expires.Format(time.RFC3339Nano), time.Until(e.expires), short)
	}
	// Revoked; 500ms later (the 200ms instance's clock), its local entry
	// and Redis's (10m) are both too old for it: the endpoint answers.
	ep.set(answer(map[string]any{"active": false}))
	skew.Store(int64(500 * time.Millisecond))
	if _, err := brief.Verify(ctx, token); err == nil {
		t.Fatalf("revoked, 500ms later, the 200ms instance still accepts (%d endpoint calls)", ep.calls.Load())
	}
	if n := ep.calls.Load(); n != 2 {
		t.Fatalf("%d endpoint calls, want 2", n)
	}

	// An inactive answer, written by the 10m instance: the 200ms one
	// asks again once its own negative TTL has passed.
	skew.Store(0)
	const flaky = "opaque-token-inactive-then-active"
	if _, err := long.Verify(ctx, flaky); err == nil {
		t.Fatal("inactive token accepted")
	}
	waitShared(flaky, false)
	if _, err := brief.Verify(ctx, flaky); err == nil || ep.calls.Load() != 3 {
		t.Fatalf("inactive at the 200ms instance: %v, %d endpoint calls, want a shared hit", err, ep.calls.Load())
	}
	ep.set(answer(activeAnswer(map[string]any{"exp": time.Now().Add(time.Hour).Unix()})))
	skew.Store(int64(500 * time.Millisecond))
	if _, err := brief.Verify(ctx, flaky); err != nil || ep.calls.Load() != 4 {
		t.Fatalf("500ms later at the 200ms instance: %v, %d endpoint calls, want the endpoint's active answer", err, ep.calls.Load())
	}
}

// TestSharedEntryNeverPastExp: an entry read from Redis whose writer's
// expiry lies past the token's exp (or that carries no answer time, as
// an older writer's would) is cut at exp (or is a miss).
func TestSharedEntryNeverPastExp(t *testing.T) {
	url, _ := testpeers.StartRedis(t)
	r, err := store.NewRedis(url, store.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	cl, err := New(Options{URL: "https://as.example/introspect", ClientID: "c1", CacheTTL: time.Hour, Shared: r.Cache("introspection")})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	exp := now.Add(time.Minute).Truncate(time.Second)
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		value string
		ok    bool
	}{
		{"expiry past exp", fmt.Sprintf(`{"active":true,"answered":%d,"expires":%d,"claims":{"active":true,"sub":"u1","exp":%d}}`,
			now.UnixMilli(), now.Add(time.Hour).UnixMilli(), exp.Unix()), true},
		{"no answer time", fmt.Sprintf(`{"active":true,"expires":%d,"claims":{"active":true,"sub":"u1"}}`,
			now.Add(time.Hour).UnixMilli()), false},
	} {
		key := cl.sharedKey(tc.name)
		if err := cl.opts.Shared.Store(ctx, key, []byte(tc.value), time.Hour); err != nil {
			t.Fatal(err)
		}
		e, ok := cl.loadShared(ctx, key)
		if ok != tc.ok || (ok && !e.expires.Equal(exp)) {
			t.Errorf("%s: ok %v, expires %s; want ok %v, expires %s", tc.name, ok, e.expires, tc.ok, exp)
		}
	}
}

// TestSharedReadAbandonedIsNoOutage: when every request waiting for a
// token leaves while the shared cache is being read (here a server that
// accepts and never answers), the cancelled read says nothing about the
// store: no failure streak (no WARN) starts.
func TestSharedReadAbandonedIsNoOutage(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { c.Close() })
		}
	}()
	r, err := store.NewRedis("redis://"+l.Addr().String()+"/0", store.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	ep := newEndpoint(t, answer(activeAnswer(nil)))
	cl, err := New(Options{URL: ep.URL, ClientID: "c1", ClientSecret: "s", Shared: r.Cache("introspection")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := cl.lookup(ctx, "opaque-token-abandoned"); err == nil {
		t.Fatal("the request did not give up")
	}
	for deadline := time.Now().Add(5 * time.Second); cl.Status().InFlight > 0; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the abandoned call never ended")
		}
	}
	if st := cl.sharedStreak.State(); st.Failures != 0 || st.LastError != "" {
		t.Fatalf("an abandoned read counted as a store failure: %+v", st)
	}
	if st := cl.Stats(); st.Abandoned != 1 || ep.calls.Load() != 0 {
		t.Fatalf("stats %+v, %d endpoint calls; want one abandoned call, none to the endpoint", st, ep.calls.Load())
	}
}
