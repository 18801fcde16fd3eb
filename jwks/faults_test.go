package jwks

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcptoken/caddy-mcp-token/devtools"
	"github.com/mcptoken/caddy-mcp-token/internal/remote"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// faultJWKS is a JWKS endpoint switchable at run time between normal,
// slow, hung, 500 and garbage answers; it counts hits and connections.
type faultJWKS struct {
	*httptest.Server
	mu         sync.Mutex
	mode       string
	keys       []*devtools.KeyPair
	hits       atomic.Int64
	open, peak atomic.Int64
}

// slowDelay is how long the "slow" mode takes to answer.
const slowDelay = 1500 * time.Millisecond

func newFaultJWKS(t *testing.T, mode string, keys ...*devtools.KeyPair) *faultJWKS {
	t.Helper()
	f := &faultJWKS{mode: mode, keys: keys}
	f.Server = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			n := f.open.Add(1)
			for p := f.peak.Load(); n > p && !f.peak.CompareAndSwap(p, n); p = f.peak.Load() {
			}
		case http.StateClosed, http.StateHijacked:
			f.open.Add(-1)
		}
	}
	f.Start()
	t.Cleanup(f.Close)
	return f
}

func (f *faultJWKS) set(mode string, keys ...*devtools.KeyPair) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mode = mode
	if keys != nil {
		f.keys = keys
	}
}

func (f *faultJWKS) serve(w http.ResponseWriter, r *http.Request) {
	f.hits.Add(1)
	f.mu.Lock()
	mode, keys := f.mode, f.keys
	f.mu.Unlock()
	switch mode {
	case "slow":
		select {
		case <-time.After(slowDelay):
		case <-r.Context().Done():
			return
		}
	case "hung":
		<-r.Context().Done()
		return
	case "500":
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	case "garbage":
		_, _ = w.Write([]byte("\x00garbage{"))
		return
	}
	doc, err := devtools.JWKSDocument(keys...)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	_, _ = w.Write(doc)
}

func (f *faultJWKS) url() string { return f.URL + "/jwks.json" }

func startCache(t *testing.T, opts Options) *Cache {
	t.Helper()
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestWaitReady(t *testing.T) {
	k1 := newKey(t, "RS256", "k1")
	cases := []struct {
		name    string
		mode    string
		recover time.Duration // switch to normal after this long (0: never)
		wait    time.Duration
		want    []string // in the error; nil: success
	}{
		{"normal", "normal", 0, 5 * time.Second, nil},
		{"slow", "slow", 0, 5 * time.Second, nil},
		{"500 throughout", "500", 0, 1500 * time.Millisecond, []string{"/jwks.json", "status 500", "deadline"}},
		{"garbage throughout", "garbage", 0, 500 * time.Millisecond, []string{"/jwks.json", "not a JWKS document"}},
		{"hung", "hung", 0, 500 * time.Millisecond, []string{"/jwks.json", "the first fetch had not completed"}},
		{"500 then recovery", "500", 300 * time.Millisecond, 5 * time.Second, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFaultJWKS(t, tc.mode, k1)
			c := startCache(t, Options{URL: f.url()})
			if tc.recover > 0 {
				time.AfterFunc(tc.recover, func() { f.set("normal") })
			}
			ctx, cancel := context.WithTimeout(context.Background(), tc.wait)
			defer cancel()
			start := time.Now()
			err := c.WaitReady(ctx)
			elapsed := time.Since(start)
			if tc.want == nil {
				if err != nil || !c.Ready() {
					t.Fatalf("WaitReady: %v", err)
				}
				t.Logf("%s: ready after %s", tc.name, elapsed.Round(time.Millisecond))
				return
			}
			if err == nil || !errors.Is(err, verifiers.ErrUnavailable) {
				t.Fatalf("WaitReady against %s: %v", tc.mode, err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q does not say %q", err, w)
				}
			}
			if elapsed > tc.wait+time.Second {
				t.Fatalf("WaitReady took %s with a %s deadline", elapsed, tc.wait)
			}
		})
	}
	t.Run("discovery names the issuer", func(t *testing.T) {
		f := newFaultJWKS(t, "500")
		c := startCache(t, Options{Issuer: f.URL})
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		if err := c.WaitReady(ctx); err == nil || !strings.Contains(err.Error(), "discovery from "+f.URL) {
			t.Fatalf("WaitReady: %v", err)
		}
	})
	t.Run("closed", func(t *testing.T) {
		f := newFaultJWKS(t, "hung")
		c := startCache(t, Options{URL: f.url()})
		time.AfterFunc(100*time.Millisecond, c.Close)
		if err := c.WaitReady(context.Background()); err == nil || !strings.Contains(err.Error(), "closed") {
			t.Fatalf("WaitReady on a closed cache: %v", err)
		}
	})
}

// TestUnknownKidDuringFaults: a token signed by a rotated-in key whose kid
// is not in the loaded set is "unavailable" (503, not counted by the
// limiter) whenever the refetch fails or the set may be stale, and "unknown
// key" (401) only when a successful, current set lacks it.
func TestUnknownKidDuringFaults(t *testing.T) {
	k1, k2 := newKey(t, "RS256", "k1"), newKey(t, "RS256", "k2")
	for _, mode := range []string{"500", "garbage", "hung", "slow", "closed"} {
		t.Run(mode, func(t *testing.T) {
			f := newFaultJWKS(t, "normal", k1)
			c := startCache(t, Options{URL: f.url(), Timeout: 3 * time.Second, MaxWait: 200 * time.Millisecond, Throttle: time.Minute})
			if err := c.WaitReady(context.Background()); err != nil {
				t.Fatal(err)
			}
			now := time.Now()
			c.mu.Lock()
			c.now = func() time.Time { return now }
			c.mu.Unlock()
			v := verifier(t, c)
			f.set(mode, k1, k2)
			if mode == "closed" {
				f.set("hung")
				time.AfterFunc(100*time.Millisecond, c.Close)
			}
			_, err := v.Verify(context.Background(), mint(k2))
			if !errors.Is(err, verifiers.ErrUnavailable) || errors.Is(err, verifiers.ErrUnknownKey) {
				t.Fatalf("rotated-in kid while the endpoint is %s: %v", mode, err)
			}
			if mode == "closed" {
				return
			}
			if mode == "slow" {
				// The fetch went on in the background and brought k2.
				waitUntil(t, "the slow fetch", func() bool { _, ok := c.CurrentKey(mustAlg("RS256"), "k2"); return ok })
				if _, err := v.Verify(context.Background(), mint(k2)); err != nil {
					t.Fatalf("after the slow fetch: %v", err)
				}
				return
			}
			// Within the throttle window, with the last fetch failed: the set
			// may be stale, so still 503, and no new fetch.
			hits := f.hits.Load()
			if _, err := v.Verify(context.Background(), mint(newKey(t, "RS256", "other"))); !errors.Is(err, verifiers.ErrUnavailable) {
				t.Fatalf("another kid, stale set: %v", err)
			}
			// (The background retry, on a real 1 s back-off, may fetch once
			// meanwhile on a loaded machine; a request-made refetch inside
			// the window would be more. The strict throttle count is
			// TestCacheUnknownKidFlood's, on an injected clock.)
			if got := f.hits.Load(); got > hits+1 {
				t.Fatalf("the throttle window was not respected: %d fetches", got-hits)
			}
			if _, err := v.Verify(context.Background(), mint(k1)); err != nil {
				t.Fatalf("the known kid during the outage: %v", err)
			}
			// The endpoint recovers and the background refresh succeeds: a
			// kid absent from the current set is now 401, without a fetch.
			f.set("normal")
			waitUntil(t, "a successful refresh", func() bool { return c.Refresh(context.Background()) == nil })
			if _, err := v.Verify(context.Background(), mint(k2)); err != nil {
				t.Fatalf("k2 after recovery: %v", err)
			}
			hits = f.hits.Load()
			_, err = v.Verify(context.Background(), mint(newKey(t, "RS256", "bogus")))
			if !errors.Is(err, verifiers.ErrUnknownKey) || verifiers.Classify(err).Status != http.StatusUnauthorized {
				t.Fatalf("a kid absent from a current set: %v", err)
			}
			if f.hits.Load() != hits {
				t.Fatal("a fetch within the throttle window")
			}
		})
	}
	t.Run("successful refetch without the kid", func(t *testing.T) {
		f := newFaultJWKS(t, "normal", k1)
		c := startCache(t, Options{URL: f.url(), Throttle: time.Minute})
		if err := c.WaitReady(context.Background()); err != nil {
			t.Fatal(err)
		}
		v := verifier(t, c)
		for i, want := range []int64{2, 2} { // one refetch, then the throttle window
			_, err := v.Verify(context.Background(), mint(newKey(t, "RS256", "bogus")))
			if !errors.Is(err, verifiers.ErrUnknownKey) {
				t.Fatalf("attempt %d: %v", i, err)
			}
			if got := f.hits.Load(); got != want {
				t.Fatalf("attempt %d: %d fetches, want %d", i, got, want)
			}
		}
	})
}

// TestUnknownKidWaitIsCapped: a request waits for an unknown-kid fetch at
// most MaxWait, then gets 503 while the fetch goes on.
func TestUnknownKidWaitIsCapped(t *testing.T) {
	k1, k2 := newKey(t, "RS256", "k1"), newKey(t, "RS256", "k2")
	for _, mode := range []string{"hung", "slow"} {
		t.Run(mode, func(t *testing.T) {
			f := newFaultJWKS(t, "normal", k1)
			c := startCache(t, Options{URL: f.url(), Timeout: 10 * time.Second, Throttle: time.Nanosecond})
			if err := c.WaitReady(context.Background()); err != nil {
				t.Fatal(err)
			}
			v := verifier(t, c)
			f.set(mode, k1, k2)
			var worst time.Duration
			for i := 0; i < 3; i++ {
				start := time.Now()
				_, err := v.Verify(context.Background(), mint(k2))
				worst = max(worst, time.Since(start))
				if mode == "slow" && err == nil {
					break // the background fetch completed
				}
				if !errors.Is(err, verifiers.ErrUnavailable) || !strings.Contains(err.Error(), "still fetching after 1s") {
					t.Fatalf("request %d: %v", i, err)
				}
				if mode == "slow" && i > 1 {
					t.Fatalf("a %s fetch was not shared in the background", slowDelay)
				}
			}
			if worst > DefaultMaxWait+500*time.Millisecond {
				t.Fatalf("a request waited %s (MaxWait %s)", worst, DefaultMaxWait)
			}
			t.Logf("%s endpoint, 10s timeout: worst unknown-kid wait %s", mode, worst.Round(time.Millisecond))
		})
	}
}

// TestRecoveryAfterStartupOutage: the endpoint fails from the start for
// 8 s (the background back-off has grown to 8 s); requests arriving all
// along trigger a shared fetch about once per second, so the first success
// follows the recovery within about a second, not at the next back-off.
func TestRecoveryAfterStartupOutage(t *testing.T) {
	const outage = 8 * time.Second
	k1 := newKey(t, "RS256", "k1")
	f := newFaultJWKS(t, "500", k1)
	c := startCache(t, Options{URL: f.url()})
	v := verifier(t, c)
	tok := mint(k1)
	var recovered atomic.Int64
	time.AfterFunc(outage, func() { recovered.Store(time.Now().UnixNano()); f.set("normal") })
	deadline := time.Now().Add(outage + 10*time.Second)
	requests := 0
	for {
		requests++
		_, err := v.Verify(context.Background(), tok)
		if err == nil {
			break
		}
		if !errors.Is(err, verifiers.ErrUnavailable) {
			t.Fatalf("during the outage: %v", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("never recovered")
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(time.Unix(0, recovered.Load()))
	if took > 3*time.Second {
		t.Fatalf("first success %s after the endpoint recovered (goal: 3s)", took)
	}
	// About one fetch per second while no keys, shared, plus the back-off.
	if hits := f.hits.Load(); hits > int64(outage/NoKeysRetry)+6 {
		t.Fatalf("%d fetches over a %s outage with %d requests", hits, outage, requests)
	}
	t.Logf("first success %s after recovery; %d requests and %d fetches over the %s outage", took.Round(time.Millisecond), requests, f.hits.Load(), outage)
}

// TestJWKSConnectionsBounded: a flood of unknown kids against a hung
// endpoint (throttle off) keeps the cache's connections within MaxConns.
// They are counted where they are made, on a client built as the cache
// builds its own (remote.NewClient with MaxConns): the server's count lags
// behind closes under load. The transport frees a connection's slot just
// before closing it (net/http persistConn.closeLocked), so one closing
// connection may overlap the next dial: the bound is MaxConns+1, against
// one connection per request (1,000) without it.
func TestJWKSConnectionsBounded(t *testing.T) {
	k1 := newKey(t, "RS256", "k1")
	f := newFaultJWKS(t, "normal", k1)
	client := remote.NewClient(200*time.Millisecond, MaxConns)
	var open, peak atomic.Int64
	tr := client.Transport.(*http.Transport)
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		n := open.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		return &countedConn{Conn: conn, open: &open}, nil
	}
	t.Cleanup(client.CloseIdleConnections)
	c := startCache(t, Options{URL: f.url(), Client: client, Timeout: 200 * time.Millisecond, MaxWait: 50 * time.Millisecond, Throttle: time.Nanosecond})
	if err := c.WaitReady(context.Background()); err != nil {
		t.Fatal(err)
	}
	v := verifier(t, c)
	f.set("hung")
	attacker := newKey(t, "RS256", "x")
	var wg sync.WaitGroup
	for w := 0; w < 50; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				_, _ = v.Verify(context.Background(), mint(attacker))
			}
		}()
	}
	wg.Wait()
	if p := peak.Load(); p > MaxConns+1 {
		t.Fatalf("peak %d connections to the JWKS endpoint, bound %d (+1 closing)", p, MaxConns)
	}
	t.Logf("1000 unknown-kid requests against a hung endpoint: %d fetches, peak %d connections (server saw %d)", f.hits.Load()-1, peak.Load(), f.peak.Load())
}

// countedConn takes itself off the count of open connections once closed.
type countedConn struct {
	net.Conn
	open *atomic.Int64
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

// TestCloseIsQuiet: closing a cache whose fetch is in flight (a config
// discarded, caddy validate) logs no failure and counts none.
func TestCloseIsQuiet(t *testing.T) {
	for _, mode := range []string{"hung", "slow"} {
		t.Run(mode, func(t *testing.T) {
			f := newFaultJWKS(t, mode, newKey(t, "RS256", "k1"))
			core, logs := observer.New(zap.DebugLevel)
			c := startCache(t, Options{URL: f.url(), Logger: zap.New(core)})
			waitUntil(t, "the first fetch", func() bool { return f.hits.Load() > 0 })
			c.Close()
			if n := logs.Filter(func(e observer.LoggedEntry) bool { return e.Level >= zapcore.InfoLevel }).Len(); n != 0 {
				t.Fatalf("%d lines at info or above on close: %v", n, logs.All())
			}
			if logs.FilterMessage("jwks fetch cancelled: the key source is closed").Len() != 1 {
				t.Fatalf("no debug line: %v", logs.All())
			}
			if s := c.Stats(); s.Failures != 0 || c.Status().FailureStreak != 0 {
				t.Fatalf("a cancelled fetch counted as a failure: %+v", s)
			}
		})
	}
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
