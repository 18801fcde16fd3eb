package introspection

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

var t0 = time.Unix(1_900_000_000, 0)

// endpoint is an introspection endpoint under test control.
type endpoint struct {
	*httptest.Server
	calls    atomic.Int64
	mu       sync.Mutex
	handler  http.HandlerFunc
	lastReq  *http.Request
	lastForm map[string][]string
}

func newEndpoint(t *testing.T, h http.HandlerFunc) *endpoint {
	t.Helper()
	e := &endpoint{handler: h}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.calls.Add(1)
		_ = r.ParseForm()
		e.mu.Lock()
		e.lastReq, e.lastForm = r, r.PostForm
		h := e.handler
		e.mu.Unlock()
		h(w, r)
	}))
	t.Cleanup(e.Close)
	return e
}

func newEndpointB(b *testing.B) *httptest.Server {
	srv := httptest.NewServer(answer(activeAnswer(map[string]any{"exp": time.Now().Add(time.Hour).Unix()})))
	b.Cleanup(srv.Close)
	return srv
}

func (e *endpoint) set(h http.HandlerFunc) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.handler = h
}

func answer(v map[string]any) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
}

func activeAnswer(extra map[string]any) map[string]any {
	m := map[string]any{"active": true, "client_id": "c1", "sub": "u1", "scope": "mcp:read mcp:write",
		"iss": "https://as.example", "aud": "mcp-api", "exp": t0.Add(time.Hour).Unix(), "token_type": "Bearer"}
	for k, v := range extra {
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}

// testVerifier bundles a verifier with its client, for the tests.
type testVerifier struct {
	*Verifier
	*Client
}

func (tv testVerifier) Verify(ctx context.Context, token string) (*verifiers.AccessToken, error) {
	return tv.Verifier.Verify(ctx, token)
}

func newVerifier(t *testing.T, url string, mod func(*Options, *Rules)) testVerifier {
	t.Helper()
	o := Options{URL: url, ClientID: "gateway", ClientSecret: "s3cret:with/odd chars", Now: func() time.Time { return t0 },
		Timeout: 2 * time.Second}
	r := Rules{ClockSkew: time.Minute}
	if mod != nil {
		mod(&o, &r)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.Verifier(r)
	if err != nil {
		t.Fatal(err)
	}
	return testVerifier{v, c}
}

func TestIntrospectionDecisions(t *testing.T) {
	cases := []struct {
		name    string
		handler http.HandlerFunc
		mod     func(*Options, *Rules)
		want    error
		status  int
	}{
		{"active", answer(activeAnswer(nil)), nil, nil, 200},
		{"inactive", answer(map[string]any{"active": false}), nil, verifiers.ErrInactive, 401},
		{"active but expired", answer(activeAnswer(map[string]any{"exp": t0.Add(-2 * time.Minute).Unix()})), nil, verifiers.ErrExpired, 401},
		{"active, expired within skew", answer(activeAnswer(map[string]any{"exp": t0.Add(-30 * time.Second).Unix()})), nil, nil, 200},
		{"nbf in the future", answer(activeAnswer(map[string]any{"nbf": t0.Add(5 * time.Minute).Unix()})), nil, verifiers.ErrNotYetValid, 401},
		{"nbf 1e300 (out of range, not the past)", answer(activeAnswer(map[string]any{"nbf": 1e300})), nil, verifiers.ErrMalformed, 401},
		{"iat negative", answer(activeAnswer(map[string]any{"iat": -5})), nil, verifiers.ErrMalformed, 401},
		{"wrong aud", answer(activeAnswer(map[string]any{"aud": "other"})), func(o *Options, r *Rules) { r.Audiences = []string{"mcp-api"} }, verifiers.ErrBadAudience, 401},
		{"aud list with ours", answer(activeAnswer(map[string]any{"aud": []string{"x", "mcp-api"}})), func(o *Options, r *Rules) { r.Audiences = []string{"mcp-api"} }, nil, 200},
		{"missing aud allowed", answer(activeAnswer(map[string]any{"aud": nil})), func(o *Options, r *Rules) { r.Audiences = []string{"mcp-api"} }, nil, 200},
		{"missing aud required", answer(activeAnswer(map[string]any{"aud": nil})), func(o *Options, r *Rules) { r.Audiences = []string{"mcp-api"}; r.RequireAudience = true }, verifiers.ErrBadAudience, 401},
		{"wrong iss", answer(activeAnswer(map[string]any{"iss": "https://evil"})), func(o *Options, r *Rules) { r.Issuers = []string{"https://as.example"} }, verifiers.ErrBadIssuer, 401},
		{"missing iss required", answer(activeAnswer(map[string]any{"iss": nil})), func(o *Options, r *Rules) { r.RequireIssuer = true }, verifiers.ErrBadIssuer, 401},
		{"missing scope", answer(activeAnswer(map[string]any{"scope": "mcp:read"})), func(o *Options, r *Rules) { r.RequiredScopes = []string{"mcp:admin"} }, verifiers.ErrInsufficientScope, 403},
		{"500", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "oops", 500) }, nil, verifiers.ErrUnavailable, 503},
		{"401 from the endpoint (bad client credentials)", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
		}, nil, verifiers.ErrUnavailable, 503},
		{"HTML body", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("<html>login</html>")) }, nil, verifiers.ErrUnavailable, 503},
		{"missing active", answer(map[string]any{"client_id": "c1"}), nil, verifiers.ErrUnavailable, 503},
		{"active not a bool", answer(map[string]any{"active": "true"}), nil, verifiers.ErrUnavailable, 503},
		{"JSON array", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`[{"active":true}]`)) }, nil, verifiers.ErrUnavailable, 503},
		{"oversized body", func(w http.ResponseWriter, _ *http.Request) {
			_, _ = w.Write([]byte(`{"active":true,"pad":"` + strings.Repeat("x", 2<<20) + `"}`))
		}, nil, verifiers.ErrUnavailable, 503},
		{"redirect not followed", func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, "https://elsewhere.example/introspect", http.StatusTemporaryRedirect)
		}, nil, verifiers.ErrUnavailable, 503},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEndpoint(t, tc.handler)
			v := newVerifier(t, e.URL, tc.mod)
			tok, err := v.Verify(context.Background(), "opaque-token-1")
			if tc.want == nil {
				if err != nil {
					t.Fatalf("want accepted, got %v", err)
				}
				if tok.ClientID != "c1" || tok.Subject != "u1" || !tok.HasScopes([]string{"mcp:read"}) {
					t.Fatalf("identity: %+v", tok)
				}
			} else if !errors.Is(err, tc.want) {
				t.Fatalf("want %v, got %v", tc.want, err)
			}
			if got := verifiers.Classify(err).Status; got != tc.status {
				t.Fatalf("status %d, want %d", got, tc.status)
			}
			if err != nil && strings.Contains(err.Error(), "opaque-token-1") {
				t.Fatal("the token leaked into an error")
			}
		})
	}
}

func TestIntrospectionHangAnsweredWithinTimeout(t *testing.T) {
	e := newEndpoint(t, func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() })
	v := newVerifier(t, e.URL, func(o *Options, r *Rules) { o.Timeout = 200 * time.Millisecond })
	start := time.Now()
	_, err := v.Verify(context.Background(), "t")
	if !errors.Is(err, verifiers.ErrUnavailable) {
		t.Fatalf("hang: %v", err)
	}
	if elapsed := time.Since(start); elapsed > 200*time.Millisecond+2*time.Second {
		t.Fatalf("a hanging endpoint held the request %s with a 200ms timeout", elapsed)
	}
}

func TestIntrospectionClientAuth(t *testing.T) {
	for _, method := range []string{AuthBasic, AuthPost} {
		t.Run(method, func(t *testing.T) {
			e := newEndpoint(t, answer(activeAnswer(nil)))
			v := newVerifier(t, e.URL, func(o *Options, r *Rules) { o.AuthMethod = method })
			if _, err := v.Verify(context.Background(), "tok-abc"); err != nil {
				t.Fatal(err)
			}
			e.mu.Lock()
			r, form := e.lastReq, e.lastForm
			e.mu.Unlock()
			if r.Method != http.MethodPost || form["token"][0] != "tok-abc" || form["token_type_hint"][0] != "access_token" {
				t.Fatalf("request: %s %v", r.Method, form)
			}
			user, pass, hasBasic := r.BasicAuth()
			switch method {
			case AuthBasic:
				// RFC 6749 §2.3.1: the id and secret are form-encoded inside Basic.
				if !hasBasic || user != "gateway" || pass != "s3cret%3Awith%2Fodd+chars" || form["client_secret"] != nil {
					t.Fatalf("basic: %q %q %v, form %v", user, pass, hasBasic, form)
				}
			case AuthPost:
				if hasBasic || form["client_id"][0] != "gateway" || form["client_secret"][0] != "s3cret:with/odd chars" {
					t.Fatalf("post: basic %v, form %v", hasBasic, form)
				}
			}
		})
	}
}

func TestIntrospectionCache(t *testing.T) {
	now := t0
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }

	e := newEndpoint(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.PostForm.Get("token"), "bad") {
			answer(map[string]any{"active": false})(w, r)
			return
		}
		answer(activeAnswer(map[string]any{"exp": t0.Add(90 * time.Second).Unix()}))(w, r)
	})
	v := newVerifier(t, e.URL, func(o *Options, r *Rules) {
		o.Now = clock
		o.CacheTTL = 60 * time.Second
		o.NegativeCacheTTL = 5 * time.Second
		r.ClockSkew = 0
	})

	// A new token: one call (concurrent callers: see
	// TestIntrospectionConcurrentCallersShareOneCall).
	if _, err := v.Verify(context.Background(), "good-1"); err != nil {
		t.Fatal(err)
	}
	if got := e.calls.Load(); got != 1 {
		t.Fatalf("a new token made %d calls", got)
	}
	// Cached until the TTL: no new call.
	advance(59 * time.Second)
	_, _ = v.Verify(context.Background(), "good-1")
	if got := e.calls.Load(); got != 1 {
		t.Fatalf("within the TTL: %d calls", got)
	}
	// After the TTL: introspected again; the new entry is bounded by exp
	// (t0+90s), not by the TTL (t0+59s+60s).
	advance(2 * time.Second)
	_, _ = v.Verify(context.Background(), "good-1")
	if got := e.calls.Load(); got != 2 {
		t.Fatalf("after the TTL: %d calls", got)
	}
	advance(30 * time.Second) // t0+91s: past exp
	if _, err := v.Verify(context.Background(), "good-1"); !errors.Is(err, verifiers.ErrExpired) {
		t.Fatalf("past exp: %v", err)
	}
	if got := e.calls.Load(); got != 3 {
		t.Fatalf("the entry outlived exp: %d calls", got)
	}

	// An inactive token is cached for the negative TTL, then re-checked.
	base := e.calls.Load()
	for i := 0; i < 10; i++ {
		if _, err := v.Verify(context.Background(), "bad-1"); !errors.Is(err, verifiers.ErrInactive) {
			t.Fatal(err)
		}
	}
	if got := e.calls.Load() - base; got != 1 {
		t.Fatalf("10 checks of one inactive token: %d calls", got)
	}
	advance(6 * time.Second)
	_, _ = v.Verify(context.Background(), "bad-1")
	if got := e.calls.Load() - base; got != 2 {
		t.Fatalf("after the negative TTL: %d calls", got)
	}
	if s := v.Stats(); s.CacheHits != 10 || s.Calls != e.calls.Load() {
		t.Fatalf("stats %+v", s)
	}
}

func TestIntrospectionNoCacheAndFailuresNotCached(t *testing.T) {
	e := newEndpoint(t, answer(activeAnswer(nil)))
	v := newVerifier(t, e.URL, func(o *Options, r *Rules) { o.NoCache = true })
	for i := 0; i < 3; i++ {
		if _, err := v.Verify(context.Background(), "t"); err != nil {
			t.Fatal(err)
		}
	}
	if got := e.calls.Load(); got != 3 {
		t.Fatalf("cache disabled: %d calls for 3 requests", got)
	}
	e2 := newEndpoint(t, func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "x", 500) })
	v2 := newVerifier(t, e2.URL, nil)
	_, _ = v2.Verify(context.Background(), "t")
	e2.set(answer(activeAnswer(nil)))
	if _, err := v2.Verify(context.Background(), "t"); err != nil {
		t.Fatalf("a technical failure was cached: %v", err)
	}
}

func TestIntrospectionCacheBound(t *testing.T) {
	e := newEndpoint(t, answer(map[string]any{"active": false}))
	v := newVerifier(t, e.URL, func(o *Options, r *Rules) { o.CacheSize = 50 })
	for i := 0; i < 500; i++ {
		_, _ = v.Verify(context.Background(), fmt.Sprintf("garbage-%d", i))
		if n := v.CacheLen(); n > 50 {
			t.Fatalf("cache holds %d entries, bound 50", n)
		}
	}
	if v.CacheLen() != 50 {
		t.Fatalf("cache len %d", v.CacheLen())
	}
}

func TestNewRefusals(t *testing.T) {
	cases := []struct {
		opts Options
		want string
	}{
		{Options{URL: "not a url", ClientID: "c"}, "not an absolute http(s) URL"},
		{Options{URL: "https://as/introspect"}, "client_id is required"},
		{Options{URL: "https://as/introspect", ClientID: "c", Timeout: 61 * time.Second}, "at most 1m0s"},
		{Options{URL: "https://as/introspect", ClientID: "c", AuthMethod: "jwt"}, `auth method "jwt" not supported`},
	}
	for _, tc := range cases {
		if _, err := New(tc.opts); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: want %q, got %v", tc.opts, tc.want, err)
		}
	}
}

// gatedTransport answers introspection requests in-process with handler,
// each only once release is closed, counting them.
type gatedTransport struct {
	calls   atomic.Int64
	release chan struct{}
	handler http.HandlerFunc
}

func (g *gatedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	g.calls.Add(1)
	select {
	case <-g.release:
	case <-r.Context().Done():
		return nil, r.Context().Err()
	}
	w := httptest.NewRecorder()
	g.handler(w, r)
	return w.Result(), nil
}

// TestIntrospectionConcurrentCallersShareOneCall: callers that miss the
// cache while a call for their token is in flight wait for it instead of
// making their own. In a synctest bubble, synctest.Wait returns only once
// all 100 callers are blocked (one in the call, the rest waiting for it),
// so the count does not depend on how the goroutines were scheduled.
func TestIntrospectionConcurrentCallersShareOneCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tr := &gatedTransport{release: make(chan struct{}), handler: answer(activeAnswer(nil))}
		v := newVerifier(t, "https://as.example/introspect", func(o *Options, _ *Rules) {
			o.Client = &http.Client{Transport: tr}
		})
		const callers = 100
		var wg sync.WaitGroup
		errs := make(chan error, callers)
		for i := 0; i < callers; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := v.Verify(context.Background(), "good-1")
				errs <- err
			}()
		}
		synctest.Wait()
		if got := tr.calls.Load(); got != 1 {
			t.Fatalf("%d concurrent callers of one new token, all blocked: %d calls in flight, want 1", callers, got)
		}
		close(tr.release)
		wg.Wait()
		close(errs)
		for err := range errs {
			if err != nil {
				t.Fatalf("a caller sharing the call: %v", err)
			}
		}
		if s := v.Stats(); s.Calls != 1 || s.CacheHits != 0 || tr.calls.Load() != 1 {
			t.Fatalf("after the shared call: stats %+v, %d calls", s, tr.calls.Load())
		}
		// The shared answer is cached: the next caller makes no call.
		if _, err := v.Verify(context.Background(), "good-1"); err != nil || tr.calls.Load() != 1 || v.Stats().CacheHits != 1 {
			t.Fatalf("after the shared call: %v, %d calls, stats %+v", err, tr.calls.Load(), v.Stats())
		}
	})
}
