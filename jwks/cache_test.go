package jwks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcptoken/caddy-mcp-token/devtools"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

const testIssuer = "https://idp.example.com"

func newKey(t *testing.T, alg, kid string) *devtools.KeyPair {
	t.Helper()
	kp, err := devtools.GenerateKey(alg, 0, kid)
	if err != nil {
		t.Fatal(err)
	}
	return kp
}

func mint(kp *devtools.KeyPair) string {
	return kp.MustToken(devtools.TokenOptions{Issuer: testIssuer, Audience: []string{"api"}})
}

// newCache starts a cache on srv and waits until it has keys (or not, if
// wantReady is false).
func newCache(t *testing.T, srv *devtools.JWKSServer, opts Options) *Cache {
	t.Helper()
	if opts.URL == "" && opts.Issuer == "" {
		opts.URL = srv.JWKSURL()
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func waitReady(t *testing.T, c *Cache) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !c.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("the cache never loaded a key set")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func verifier(t *testing.T, c *Cache, algs ...string) *verifiers.JWT {
	t.Helper()
	v, err := verifiers.NewJWT(verifiers.JWTConfig{Keys: c, Issuers: []string{testIssuer}, Algorithms: algs})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestCacheRotation(t *testing.T) {
	k1, k2 := newKey(t, "RS256", "k1"), newKey(t, "RS256", "k2")
	srv := devtools.NewJWKSServer(k1)
	defer srv.Close()
	c := newCache(t, srv, Options{})
	waitReady(t, c)
	v := verifier(t, c)
	ctx := context.Background()
	if _, err := v.Verify(ctx, mint(k1)); err != nil {
		t.Fatalf("k1: %v", err)
	}
	// The provider adds k2 and signs with it: the next request is accepted.
	srv.SetKeys(k1, k2)
	if _, err := v.Verify(ctx, mint(k2)); err != nil {
		t.Fatalf("rotated-in key k2: %v", err)
	}
	if got := srv.Hits(); got != 2 {
		t.Fatalf("hits %d, want 2 (start + one unknown-kid refetch)", got)
	}
	// The provider removes k1: after the next refresh it stops verifying.
	srv.SetKeys(k2)
	if err := c.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, mint(k1)); !errors.Is(err, verifiers.ErrUnknownKey) {
		t.Fatalf("removed key k1: %v", err)
	}
	if _, err := v.Verify(ctx, mint(k2)); err != nil {
		t.Fatalf("k2 after removal of k1: %v", err)
	}
}

func TestCacheBackgroundRefresh(t *testing.T) {
	k1, k2 := newKey(t, "ES256", "k1"), newKey(t, "ES256", "k2")
	srv := devtools.NewJWKSServer(k1, k2)
	defer srv.Close()
	c := newCache(t, srv, Options{RefreshInterval: 50 * time.Millisecond})
	waitReady(t, c)
	v := verifier(t, c, "ES256")
	srv.SetKeys(k2)
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, err := v.Verify(context.Background(), mint(k1))
		if errors.Is(err, verifiers.ErrUnknownKey) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("k1 still verifies after background refreshes (hits %d): %v", srv.Hits(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitWithin waits for wg, failing the test (not hanging it) after d.
func waitWithin(t *testing.T, wg *sync.WaitGroup, d time.Duration, what string) {
	t.Helper()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s did not finish within %s", what, d)
	}
}

// hang blocks until the client gives up.
func hang(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }

func TestCacheOutageAfterStart(t *testing.T) {
	const timeout = 300 * time.Millisecond
	modes := []struct {
		name string
		fail http.HandlerFunc
		stop bool
	}{
		{"500", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "boom", 500) }, false},
		{"html", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("<html>maintenance</html>")) }, false},
		{"empty set", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{"keys":[]}`)) }, false},
		{"hang", hang, false},
		{"connection refused", nil, true},
	}
	for _, m := range modes {
		t.Run(m.name, func(t *testing.T) {
			k1 := newKey(t, "RS256", "k1")
			srv := devtools.NewJWKSServer(k1)
			defer srv.Close()
			c := newCache(t, srv, Options{Timeout: timeout, Throttle: time.Nanosecond})
			waitReady(t, c)
			v := verifier(t, c)
			if m.stop {
				srv.Close()
			} else {
				srv.Fail(m.fail)
			}
			ctx := context.Background()
			if err := c.Refresh(ctx); err == nil {
				t.Fatal("refresh against a failing endpoint succeeded")
			}
			for i := 0; i < 50; i++ {
				if _, err := v.Verify(ctx, mint(k1)); err != nil {
					t.Fatalf("request %d during the outage: %v", i, err)
				}
			}
			// An unknown kid refetches (throttle is 1ns here); the failing
			// fetch is bounded by the timeout, and the answer is "unavailable"
			// (503, not counted by the limiter), never "unknown key" (401):
			// the kid may be a rotated-in key the endpoint cannot give now.
			start := time.Now()
			_, err := v.Verify(ctx, mint(newKey(t, "RS256", "new")))
			if elapsed := time.Since(start); elapsed > timeout+2*time.Second {
				t.Fatalf("an unknown kid waited %s on a %s timeout", elapsed, timeout)
			}
			if !errors.Is(err, verifiers.ErrUnavailable) || errors.Is(err, verifiers.ErrUnknownKey) || verifiers.Classify(err).Status != 503 {
				t.Fatalf("unknown kid during outage: %v", err)
			}
			if _, err := v.Verify(ctx, mint(k1)); err != nil {
				t.Fatalf("after the outage refetch: %v", err)
			}
		})
	}
}

func TestCacheOutageAtStart(t *testing.T) {
	k1 := newKey(t, "RS256", "k1")
	srv := devtools.NewJWKSServer(k1)
	defer srv.Close()
	srv.Fail(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "starting", http.StatusServiceUnavailable) })
	core, logs := observer.New(zap.DebugLevel)
	c := newCache(t, srv, Options{Logger: zap.New(core)})
	v := verifier(t, c)
	for srv.Hits() < 1 {
		time.Sleep(5 * time.Millisecond)
	}
	_, err := v.Verify(context.Background(), mint(k1))
	if !errors.Is(err, verifiers.ErrUnavailable) || verifiers.Classify(err).Status != http.StatusServiceUnavailable {
		t.Fatalf("before any key set: %v (%+v)", err, verifiers.Classify(err))
	}
	srv.Fail(nil)
	waitReady(t, c) // the startup backoff retries on its own
	if _, err := v.Verify(context.Background(), mint(k1)); err != nil {
		t.Fatalf("after recovery: %v", err)
	}
	warns := logs.FilterMessage("jwks fetch failed").FilterLevelExact(zap.WarnLevel).Len()
	if warns != 1 {
		t.Fatalf("%d warnings for one failure streak, want 1", warns)
	}
	if logs.FilterMessage("jwks fetch recovered").Len() != 1 {
		t.Fatal("no recovery line")
	}
}

func TestCacheUnknownKidFlood(t *testing.T) {
	k1 := newKey(t, "RS256", "k1")
	srv := devtools.NewJWKSServer(k1)
	defer srv.Close()
	c := newCache(t, srv, Options{Throttle: time.Minute})
	waitReady(t, c)
	now := time.Now()
	c.mu.Lock()
	c.now = func() time.Time { return now }
	c.mu.Unlock()
	v := verifier(t, c)
	attacker := newKey(t, "RS256", "x")
	tokens := make([]string, 1000)
	for i := range tokens {
		attacker.Kid = fmt.Sprintf("made-up-%d", i)
		tokens[i] = mint(attacker)
	}
	var wg sync.WaitGroup
	errs := make(chan error, len(tokens))
	for w := 0; w < 20; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(tokens); i += 20 {
				_, err := v.Verify(context.Background(), tokens[i])
				errs <- err
			}
		}(w)
	}
	waitWithin(t, &wg, 30*time.Second, "the 1000 verifications of the flood")
	close(errs)
	for err := range errs {
		if !errors.Is(err, verifiers.ErrUnknownKey) || verifiers.Classify(err).Status != 401 {
			t.Fatalf("flood token: %v", err)
		}
	}
	if got := srv.Hits(); got != 2 {
		t.Fatalf("1000 unknown kids caused %d fetches beyond the first, want 1", got-1)
	}
	// A new throttle window allows one more refetch.
	c.mu.Lock()
	c.now = func() time.Time { return now.Add(time.Minute) }
	c.mu.Unlock()
	for _, tok := range tokens[:100] {
		_, _ = v.Verify(context.Background(), tok)
	}
	if got := srv.Hits(); got != 3 {
		t.Fatalf("next window: %d fetches in all, want 3", got)
	}
}

func TestCacheRefusesBadResponses(t *testing.T) {
	k1 := newKey(t, "RS256", "k1")
	bad := []struct {
		name string
		body string
	}{
		{"oversized", `{"keys":[` + strings.Repeat(`{"kty":"oct","k":"AAAA"},`, 60000) + `{}]}`},
		{"malformed JSON", `{"keys":[{"kty":"RSA",`},
		{"not a JWKS", `{"issuer":"x"}`},
		{"only bad keys", `{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","kid":"tiny"}]}`},
	}
	for _, b := range bad {
		t.Run(b.name, func(t *testing.T) {
			srv := devtools.NewJWKSServer(k1)
			defer srv.Close()
			c := newCache(t, srv, Options{MaxBytes: 1 << 20})
			waitReady(t, c)
			srv.Fail(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(b.body)) })
			if err := c.Refresh(context.Background()); err == nil {
				t.Fatal("a bad response was accepted")
			}
			if _, err := verifier(t, c).Verify(context.Background(), mint(k1)); err != nil {
				t.Fatalf("old keys must stay: %v", err)
			}
		})
	}
}

func TestCacheSkipsUnsupportedKeys(t *testing.T) {
	k1 := newKey(t, "RS256", "k1")
	srv := devtools.NewJWKSServer(k1)
	defer srv.Close()
	srv.AddRaw(map[string]any{"kty": "OKP", "crv": "X25519", "kid": "xdh", "x": "hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"})
	srv.AddRaw(map[string]any{"kty": "EC", "crv": "P-192", "kid": "p192", "x": "AAAA", "y": "AAAA"})
	srv.AddRaw(map[string]any{"kty": "unknown", "kid": "weird"})
	srv.AddRaw(map[string]any{"kty": "RSA", "kid": "enc", "use": "enc", "n": "AQAB", "e": "AQAB"})
	c := newCache(t, srv, Options{})
	waitReady(t, c)
	if _, err := verifier(t, c).Verify(context.Background(), mint(k1)); err != nil {
		t.Fatalf("a JWKS with unsupported entries must still verify the good key: %v", err)
	}
}

func TestCacheKeySelection(t *testing.T) {
	a, b := newKey(t, "RS256", "a"), newKey(t, "RS256", "b")
	ec := newKey(t, "ES256", "ec")
	srv := devtools.NewJWKSServer(a, ec)
	defer srv.Close()
	c := newCache(t, srv, Options{Throttle: time.Hour})
	waitReady(t, c)
	v := verifier(t, c, "RS256", "ES256")
	ctx := context.Background()
	noKid := func(kp *devtools.KeyPair) string {
		cp := *kp
		cp.Kid = ""
		return mint(&cp)
	}
	if _, err := v.Verify(ctx, noKid(a)); err != nil {
		t.Fatalf("no kid, exactly one RSA key: %v", err)
	}
	srv.SetKeys(a, b, ec)
	_ = c.Refresh(ctx)
	if _, err := v.Verify(ctx, noKid(a)); !errors.Is(err, verifiers.ErrUnknownKey) {
		t.Fatalf("no kid, two RSA keys: %v", err)
	}
	// A JWK's alg binds the key: a token naming kid "a" with RS384 is refused.
	a384 := &devtools.KeyPair{Alg: "RS384", Kid: "a", Private: a.Private, Public: a.Public}
	v384 := verifier(t, c, "RS256", "RS384")
	if _, err := v384.Verify(ctx, mint(a384)); !errors.Is(err, verifiers.ErrUnknownKey) {
		t.Fatalf("JWK alg RS256, token RS384: %v", err)
	}
	// HMAC algorithms are refused with a JWKS source.
	if _, err := verifiers.NewJWT(verifiers.JWTConfig{Keys: c, Algorithms: []string{"HS256"}}); err == nil ||
		!strings.Contains(err.Error(), "HMAC algorithms cannot be used with JWKS endpoints") {
		t.Fatalf("HS256 with JWKS: %v", err)
	}
}

func TestCacheDiscovery(t *testing.T) {
	k1 := newKey(t, "RS256", "k1")
	srv := devtools.NewJWKSServer(k1)
	defer srv.Close()
	issuerSrv := devtools.NewJWKSServer()
	defer issuerSrv.Close()
	issuerSrv.Fail(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/openid-configuration" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, issuerSrv.URL, srv.JWKSURL())
	})
	c := newCache(t, srv, Options{Issuer: issuerSrv.URL})
	waitReady(t, c)
	v, _ := verifiers.NewJWT(verifiers.JWTConfig{Keys: c})
	if _, err := v.Verify(context.Background(), mint(k1)); err != nil {
		t.Fatalf("discovered JWKS: %v", err)
	}
	// Metadata naming another issuer is refused.
	evil := devtools.NewJWKSServer()
	defer evil.Close()
	evil.Fail(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"issuer":"https://someone-else.example","jwks_uri":%q}`, srv.JWKSURL())
	})
	c2 := newCache(t, srv, Options{Issuer: evil.URL})
	if err := c2.Refresh(context.Background()); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Fatalf("mismatched metadata issuer: %v", err)
	}
}

func TestCheckURLProduction(t *testing.T) {
	cases := []struct {
		url        string
		production bool
		want       string
	}{
		{"https://idp.example.com/jwks", true, ""},
		{"http://idp.example.com/jwks", false, ""},
		{"http://idp.example.com/jwks", true, "use https"},
		{"https://localhost/jwks", true, "localhost"},
		{"http://127.0.0.1:8080/jwks", true, "localhost"},
		{"ftp://x/jwks", false, "not an absolute http(s) URL"},
		{"/relative", false, "not an absolute"},
	}
	for _, tc := range cases {
		err := verifiers.CheckURL(tc.url, tc.production)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("%s (production=%v): %v", tc.url, tc.production, err)
		}
	}
}

// TestCacheDiscoveryRFC8414: discovery tries RFC 8414 authorization
// server metadata first (the well-known suffix inserted before the
// issuer's path), then OpenID Connect Discovery (suffix appended), and
// uses the jwks_uri of the first that names the issuer exactly.
func TestCacheDiscoveryRFC8414(t *testing.T) {
	k1 := newKey(t, "RS256", "k1")
	keys := devtools.NewJWKSServer(k1)
	defer keys.Close()
	cases := []struct {
		name       string
		issuerPath string
		serveAt    string   // the one metadata path that answers
		wantTried  []string // metadata paths requested, in order
	}{
		{"RFC 8414, issuer without a path", "", "/.well-known/oauth-authorization-server",
			[]string{"/.well-known/oauth-authorization-server"}},
		{"RFC 8414, issuer with a path: suffix before the path", "/tenant1", "/.well-known/oauth-authorization-server/tenant1",
			[]string{"/.well-known/oauth-authorization-server/tenant1"}},
		{"OpenID Connect after RFC 8414 fails, issuer with a path", "/tenant1", "/tenant1/.well-known/openid-configuration",
			[]string{"/.well-known/oauth-authorization-server/tenant1", "/tenant1/.well-known/openid-configuration"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var tried []string
			as := devtools.NewJWKSServer()
			defer as.Close()
			issuer := as.URL + tc.issuerPath
			as.Fail(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				tried = append(tried, r.URL.Path)
				mu.Unlock()
				if r.URL.Path != tc.serveAt {
					http.NotFound(w, r)
					return
				}
				fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, issuer, keys.JWKSURL())
			})
			c, err := New(Options{Issuer: issuer})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Refresh(context.Background()); err != nil {
				t.Fatalf("discovery: %v", err)
			}
			v, _ := verifiers.NewJWT(verifiers.JWTConfig{Keys: c})
			if _, err := v.Verify(context.Background(), mint(k1)); err != nil {
				t.Fatalf("a token signed with the discovered key set: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			// A background refresh may fetch too: compare the distinct paths,
			// in the order first requested.
			if got := dedupe(tried); strings.Join(got, " ") != strings.Join(tc.wantTried, " ") {
				t.Fatalf("metadata requests %v, want %v", tried, tc.wantTried)
			}
		})
	}
}

// TestCacheDoesNotFollowRedirects: a redirect from the JWKS endpoint or
// from the issuer's metadata is a failed fetch; its target is never
// requested, so a compromised or misconfigured endpoint cannot send the
// gateway to keys elsewhere.
func TestCacheDoesNotFollowRedirects(t *testing.T) {
	k1 := newKey(t, "RS256", "k1")
	target := devtools.NewJWKSServer(k1)
	defer target.Close()
	redirectTo := func(url string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, url, http.StatusFound) }
	}
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(fmt.Sprintf("jwks_uri answers %d", status), func(t *testing.T) {
			src := devtools.NewJWKSServer()
			defer src.Close()
			src.Fail(func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, target.JWKSURL(), status) })
			before := target.Hits()
			c, err := New(Options{URL: src.JWKSURL()})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.Refresh(context.Background()); err == nil || !strings.Contains(err.Error(), fmt.Sprint(status)) {
				t.Fatalf("redirected JWKS fetch: %v, want a failure naming status %d", err, status)
			}
			if c.Ready() {
				t.Fatal("the cache has keys from a redirect")
			}
			if n := target.Hits() - before; n != 0 {
				t.Fatalf("the redirect target was fetched %d times", n)
			}
		})
	}
	t.Run("discovery metadata redirects", func(t *testing.T) {
		meta := devtools.NewJWKSServer()
		defer meta.Close()
		var metaHits atomic.Int64
		other := devtools.NewJWKSServer()
		defer other.Close()
		other.Fail(func(w http.ResponseWriter, r *http.Request) {
			metaHits.Add(1)
			fmt.Fprintf(w, `{"issuer":%q,"jwks_uri":%q}`, meta.URL, target.JWKSURL())
		})
		meta.Fail(redirectTo(other.URL + "/.well-known/openid-configuration"))
		c, err := New(Options{Issuer: meta.URL})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Refresh(context.Background()); err == nil {
			t.Fatal("discovery followed a redirect")
		}
		if metaHits.Load() != 0 {
			t.Fatalf("the redirect target's metadata was fetched %d times", metaHits.Load())
		}
	})
}
