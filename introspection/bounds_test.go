package introspection

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// faultServer is an introspection endpoint switchable at run time between
// normal, slow, hung, 500 and garbage answers, counting its connections
// through the ConnState hook.
type faultServer struct {
	*httptest.Server
	mode               atomic.Value // string
	open, peak, dialed atomic.Int64
	calls              atomic.Int64
}

func newFaultServer(t *testing.T, mode string) *faultServer {
	t.Helper()
	f := &faultServer{}
	f.mode.Store(mode)
	f.Server = httptest.NewUnstartedServer(http.HandlerFunc(f.serve))
	f.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			f.dialed.Add(1)
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

func (f *faultServer) set(mode string) { f.mode.Store(mode) }

func (f *faultServer) serve(w http.ResponseWriter, r *http.Request) {
	f.calls.Add(1)
	_ = r.ParseForm() // read the body: the server notices a client gone only after it
	switch f.mode.Load().(string) {
	case "normal":
		answer(activeAnswer(nil))(w, r)
	case "slow":
		select {
		case <-time.After(300 * time.Millisecond):
			answer(activeAnswer(nil))(w, r)
		case <-r.Context().Done():
		}
	case "hung":
		<-r.Context().Done()
	case "500":
		http.Error(w, "internal error", http.StatusInternalServerError)
	case "garbage":
		_, _ = w.Write([]byte("\x00\x01 not json"))
	}
}

// abandonRun sends n requests, each with a distinct token, from workers
// goroutines; every request's caller gives up after giveUp. It returns the
// peak goroutine count seen while they ran.
func abandonRun(v testVerifier, n, workers int, giveUp time.Duration) (peakG int, errs []error) {
	var peak atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(2 * time.Millisecond)
		defer tick.Stop()
		for {
			if g := int64(runtime.NumGoroutine()); g > peak.Load() {
				peak.Store(g)
			}
			select {
			case <-stop:
				return
			case <-tick.C:
			}
		}
	}()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				ctx, cancel := context.WithTimeout(context.Background(), giveUp)
				_, err := v.Verify(ctx, fmt.Sprintf("abandoned-%d", i))
				cancel()
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		}(w)
	}
	wg.Wait()
	close(stop)
	<-sampled
	return int(peak.Load()), errs
}

// TestIntrospectionAbandonedCallsAreBounded: 2000 requests against a hung
// endpoint whose clients give up after 30 ms leave at most MaxInFlight
// connections and a bounded number of goroutines, and everything is back
// to the baseline well within the call timeout.
func TestIntrospectionAbandonedCallsAreBounded(t *testing.T) {
	const (
		n       = 2000
		workers = 200
		timeout = 2 * time.Second
		bound   = 64
	)
	f := newFaultServer(t, "hung")
	v := newVerifier(t, f.URL, func(o *Options, _ *Rules) { o.Timeout = timeout; o.MaxInFlight = bound })
	base := runtime.NumGoroutine()
	start := time.Now()
	peakG, errs := abandonRun(v, n, workers, 30*time.Millisecond)
	for _, err := range errs {
		if !errors.Is(err, verifiers.ErrUnavailable) {
			t.Fatalf("an abandoned request: %v", err)
		}
	}
	// Per outstanding call: its goroutine, the transport's two connection
	// goroutines and the in-process server's one; plus the test's workers.
	// (Doubled for slack: under -race on a loaded machine closing
	// connections linger; the unbounded code peaked at 5,000-8,000.)
	if limit := 2 * (base + workers + 4*bound + 16); peakG > limit {
		t.Errorf("peak goroutines %d, bound %d", peakG, limit)
	}
	// The server sees a connection the client closed a little later: allow
	// for closes in progress.
	if p := f.peak.Load(); p > 2*bound {
		t.Errorf("peak open connections %d, bound %d", p, 2*bound)
	}
	deadline := start.Add(timeout)
	for f.open.Load() > 0 || runtime.NumGoroutine() > base+8 || v.Status().InFlight > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("not settled within the timeout: %d open connections, %d goroutines (base %d), %d calls in flight",
				f.open.Load(), runtime.NumGoroutine(), base, v.Status().InFlight)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Logf("N=%d abandoned after 30ms, %d workers: peak goroutines %d (base %d), peak open connections %d, connections dialed %d, calls reaching the endpoint %d, settled %s after start",
		n, workers, peakG, base, f.peak.Load(), f.dialed.Load(), f.calls.Load(), time.Since(start).Round(time.Millisecond))
}

func TestIntrospectionBeyondTheBoundFailsAtOnce(t *testing.T) {
	const bound = 8
	f := newFaultServer(t, "hung")
	v := newVerifier(t, f.URL, func(o *Options, _ *Rules) { o.Timeout = 500 * time.Millisecond; o.MaxInFlight = bound })
	type result struct {
		err     error
		elapsed time.Duration
	}
	results := make(chan result, 40)
	for i := 0; i < 40; i++ {
		go func(i int) {
			start := time.Now()
			_, err := v.Verify(context.Background(), fmt.Sprintf("tok-%d", i))
			results <- result{err, time.Since(start)}
		}(i)
	}
	rejected := 0
	for i := 0; i < 40; i++ {
		r := <-results
		if !errors.Is(r.err, verifiers.ErrUnavailable) {
			t.Fatalf("against a hung endpoint: %v", r.err)
		}
		if strings.Contains(r.err.Error(), "outstanding") {
			rejected++
			if r.elapsed > 400*time.Millisecond {
				t.Errorf("a request beyond the bound waited %s", r.elapsed)
			}
		}
	}
	if rejected != 40-bound || f.calls.Load() != bound {
		t.Fatalf("%d refused at once and %d calls made, want %d and %d", rejected, f.calls.Load(), 40-bound, bound)
	}
	if s := v.Stats(); s.Rejected != int64(rejected) {
		t.Fatalf("stats %+v", s)
	}
	// The endpoint recovers: the next request is served.
	f.set("normal")
	if _, err := v.Verify(context.Background(), "fresh"); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
}

func TestIntrospectionSharedCallEndsWithItsLastWaiter(t *testing.T) {
	f := newFaultServer(t, "hung")
	v := newVerifier(t, f.URL, func(o *Options, _ *Rules) { o.Timeout = 30 * time.Second })
	var cancels []context.CancelFunc
	errs := make(chan error, 3)
	for i := 0; i < 3; i++ {
		ctx, cancel := context.WithCancel(context.Background())
		cancels = append(cancels, cancel)
		go func() { _, err := v.Verify(ctx, "shared"); errs <- err }()
	}
	waitFor(t, "one shared call", func() bool { return f.calls.Load() == 1 && waiters(v.Client, "shared") == 3 })
	cancels[0]()
	cancels[1]()
	for i := 0; i < 2; i++ {
		if err := <-errs; !errors.Is(err, verifiers.ErrUnavailable) {
			t.Fatalf("a waiter that left: %v", err)
		}
	}
	if st := v.Status(); st.InFlight != 1 || f.open.Load() != 1 {
		t.Fatalf("with one waiter left: %d in flight, %d open connections", st.InFlight, f.open.Load())
	}
	start := time.Now()
	cancels[2]()
	<-errs
	waitFor(t, "the call cancelled", func() bool { return v.Status().InFlight == 0 && f.open.Load() == 0 })
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Fatalf("the abandoned call lived %s more", elapsed)
	}
	if s := v.Stats(); s.Abandoned != 1 || s.Failures != 0 || v.Status().FailureStreak != 0 {
		t.Fatalf("an abandoned call is not an endpoint failure: %+v", s)
	}
	// A waiter that stays gets the answer when others leave.
	f.set("slow")
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _, err := v.Verify(ctx, "slow-shared"); errs <- err }()
	waitFor(t, "the slow call", func() bool { return waiters(v.Client, "slow-shared") == 1 })
	done := make(chan error, 1)
	go func() { _, err := v.Verify(context.Background(), "slow-shared"); done <- err }()
	waitFor(t, "a second waiter", func() bool { return waiters(v.Client, "slow-shared") == 2 })
	cancel()
	<-errs
	if err := <-done; err != nil {
		t.Fatalf("the waiter that stayed: %v", err)
	}
}

func TestIntrospectionFailingEndpointReusesConnections(t *testing.T) {
	const workers = 16
	for _, mode := range []string{"500", "garbage", "normal"} {
		t.Run(mode, func(t *testing.T) {
			f := newFaultServer(t, mode)
			v := newVerifier(t, f.URL, func(o *Options, _ *Rules) { o.NoCache = true; o.MaxInFlight = 2 * workers })
			var wg sync.WaitGroup
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func(w int) {
					defer wg.Done()
					for i := 0; i < 50; i++ {
						_, _ = v.Verify(context.Background(), fmt.Sprintf("t-%d-%d", w, i))
					}
				}(w)
			}
			wg.Wait()
			t.Logf("%s: %d calls over %d connections", mode, f.calls.Load(), f.dialed.Load())
			// Go's transport may dial while a connection is on its way back
			// to the pool: the bound is MaxInFlight, not the workers.
			if d := f.dialed.Load(); d > 2*workers {
				t.Fatalf("%d calls from %d workers opened %d connections", f.calls.Load(), workers, d)
			}
		})
	}
}

func TestIntrospectionStatus(t *testing.T) {
	f := newFaultServer(t, "500")
	now := t0
	v := newVerifier(t, strings.Replace(f.URL, "http://", "http://user:pw@", 1)+"/introspect?api_key=s3cret",
		func(o *Options, _ *Rules) { o.Now = func() time.Time { return now } })
	for i := 0; i < 3; i++ {
		_, _ = v.Verify(context.Background(), "secret-token-value")
	}
	st := v.Status()
	if st.FailureStreak != 3 || !strings.Contains(st.LastError, "status 500") || !st.LastErrorAt.Equal(t0) || !st.LastSuccess.IsZero() {
		t.Fatalf("after 3 failures: %+v", st)
	}
	for _, secret := range []string{"pw", "s3cret", "secret-token-value"} {
		if strings.Contains(st.URL+st.LastError, secret) {
			t.Fatalf("status shows %q: %+v", secret, st)
		}
	}
	f.set("normal")
	now = t0.Add(time.Minute)
	if _, err := v.Verify(context.Background(), "secret-token-value"); err != nil {
		t.Fatal(err)
	}
	st = v.Status()
	if st.FailureStreak != 0 || !st.LastSuccess.Equal(now) || st.CacheLen != 1 || st.InFlight != 0 || st.MaxInFlight != DefaultMaxInFlight {
		t.Fatalf("after recovery: %+v", st)
	}
}

// waiters is the number of requests waiting on the call for token.
func waiters(c *Client, token string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.flights[sha256.Sum256([]byte(token))]; ok {
		return cl.waiters
	}
	return 0
}

// waitFor polls cond until it holds, failing after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
