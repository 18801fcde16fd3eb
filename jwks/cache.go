package jwks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/mcptoken/caddy-mcp-token/internal/remote"
	"github.com/mcptoken/caddy-mcp-token/internal/streak"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// Defaults for Options.
const (
	DefaultRefreshInterval = time.Hour
	DefaultTimeout         = 10 * time.Second
	DefaultThrottle        = 5 * time.Minute
	DefaultMaxBytes        = 1 << 20
	// MaxStartupRetry caps the backoff between fetches while no key set has
	// been loaded yet (and after failures, until RefreshInterval).
	MaxStartupRetry = 30 * time.Second
	// MaxConns bounds the connections of a cache's own transport (fetches
	// are shared, so one is in flight at a time; discovery may need another).
	MaxConns = 2
)

// Options configure a Cache. Zero values mean the defaults.
type Options struct {
	// URL is the JWKS endpoint. Either URL or Issuer (discovery) is required.
	URL string
	// Issuer, with URL empty, discovers the jwks_uri from the issuer's
	// /.well-known/oauth-authorization-server (RFC 8414) or
	// /.well-known/openid-configuration metadata, whose "issuer" must
	// equal this value.
	Issuer string
	// RefreshInterval is the time between background refreshes. Default 1h.
	RefreshInterval time.Duration
	// Timeout bounds each HTTP request. Default 10s.
	Timeout time.Duration
	// Throttle is the minimum time between two refetches caused by tokens
	// with an unknown kid. Default 5m.
	Throttle time.Duration
	// MaxBytes caps a response body. Default 1 MiB.
	MaxBytes int64
	// Client is the HTTP client. Default: a client of our own with Timeout,
	// that does not follow redirects.
	Client *http.Client
	// Logger receives refresh trouble: a warning at the start of a failure
	// streak, an info line when it ends, debug in between. Default: none.
	Logger *zap.Logger
}

// Stats counts a cache's work.
type Stats struct {
	Fetches   int64 // HTTP requests made (JWKS and discovery)
	Refreshes int64 // key-set refreshes attempted
	Failures  int64 // refreshes that did not produce a new key set
}

// Cache is a JWKS key source: it fetches a key set in the background,
// refreshes it every RefreshInterval, refetches at most once per Throttle
// when a token names an unknown kid (concurrent callers share the fetch),
// and keeps serving the last good set while the endpoint fails. Keys are
// replaced only by a successful fetch of a valid set. It implements
// verifiers.KeySource; Close stops it.
type Cache struct {
	opts   Options
	set    atomic.Pointer[Set]
	flight singleflight.Group

	mu          sync.Mutex
	inflight    bool
	lastUnknown time.Time
	jwksURL     string // resolved by discovery
	lastDropped string

	streak    *streak.Logger
	fetches   atomic.Int64
	refreshes atomic.Int64
	failures  atomic.Int64

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
	now    func() time.Time
}

// New checks opts and starts the cache's background goroutine, which makes
// the first fetch at once. New itself never touches the network.
func New(opts Options) (*Cache, error) {
	if opts.URL == "" && opts.Issuer == "" {
		return nil, errors.New("a JWKS URL or an issuer to discover it from is required")
	}
	for _, u := range []string{opts.URL, opts.Issuer} {
		if u == "" {
			continue
		}
		if err := verifiers.CheckURL(u, false); err != nil {
			return nil, err
		}
	}
	if opts.RefreshInterval <= 0 {
		opts.RefreshInterval = DefaultRefreshInterval
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.Throttle <= 0 {
		opts.Throttle = DefaultThrottle
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.Client == nil {
		opts.Client = remote.NewClient(opts.Timeout, MaxConns)
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	c := &Cache{opts: opts, jwksURL: opts.URL, done: make(chan struct{}), now: time.Now,
		streak: streak.New(opts.Logger, "jwks fetch", nil)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	go c.run()
	return c, nil
}

// Close stops the background goroutine and waits for it.
func (c *Cache) Close() {
	c.cancel()
	<-c.done
}

// Done is closed once the cache's background goroutine has stopped.
func (c *Cache) Done() <-chan struct{} { return c.done }

// Ready reports whether a key set has been loaded.
func (c *Cache) Ready() bool { return c.set.Load() != nil }

// Stats returns the fetch counters.
func (c *Cache) Stats() Stats {
	return Stats{Fetches: c.fetches.Load(), Refreshes: c.refreshes.Load(), Failures: c.failures.Load()}
}

func (c *Cache) run() {
	defer close(c.done)
	backoff := time.Second
	for {
		err := c.refresh(c.ctx)
		wait := c.opts.RefreshInterval
		if err != nil {
			// Retry sooner than the refresh interval, backing off.
			wait = min(backoff, MaxStartupRetry, c.opts.RefreshInterval)
			backoff *= 2
		} else {
			backoff = time.Second
		}
		t := time.NewTimer(wait)
		select {
		case <-c.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// Refresh fetches the key set now, sharing a fetch already in flight, and
// waits for it (or ctx). The key set changes only if the fetch succeeds.
func (c *Cache) Refresh(ctx context.Context) error { return c.refresh(ctx) }

// refresh fetches the key set, sharing a fetch already in flight.
func (c *Cache) refresh(ctx context.Context) error {
	ch := c.flight.DoChan("fetch", func() (any, error) {
		c.mu.Lock()
		c.inflight = true
		c.mu.Unlock()
		defer func() {
			c.mu.Lock()
			c.inflight = false
			c.mu.Unlock()
		}()
		// Detached from any request: a cancelled request must not abort
		// the fetch other callers are waiting for.
		fctx, cancel := context.WithTimeout(c.ctx, c.opts.Timeout)
		defer cancel()
		return nil, c.fetchAndStore(fctx)
	})
	select {
	case r := <-ch:
		return r.Err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Cache) fetchAndStore(ctx context.Context) error {
	c.refreshes.Add(1)
	err := c.fetchSet(ctx)
	if err != nil {
		c.failures.Add(1)
		state := "serving the last good key set"
		if c.set.Load() == nil {
			state = "no keys loaded yet: requests get 503"
		}
		c.streak.Failure(err, zap.String("source", c.source()), zap.String("state", state))
		return err
	}
	c.streak.Success(zap.String("source", c.source()))
	return nil
}

func (c *Cache) source() string {
	if c.opts.URL != "" {
		return c.opts.URL
	}
	return "discovery from " + c.opts.Issuer
}

func (c *Cache) fetchSet(ctx context.Context) error {
	c.mu.Lock()
	jwksURL := c.jwksURL
	c.mu.Unlock()
	if jwksURL == "" {
		u, err := c.discover(ctx)
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.jwksURL = u
		c.mu.Unlock()
		jwksURL = u
	}
	body, err := c.get(ctx, jwksURL)
	if err != nil {
		return err
	}
	set, dropped, err := ParseSet(body, false)
	if err != nil {
		return fmt.Errorf("jwks from %s: %w", jwksURL, err)
	}
	if set.Len() == 0 {
		return fmt.Errorf("jwks from %s has no usable key (%d dropped: %v)", jwksURL, len(dropped), errors.Join(dropped...))
	}
	if len(dropped) > 0 {
		msg := errors.Join(dropped...).Error()
		c.mu.Lock()
		changed := msg != c.lastDropped
		c.lastDropped = msg
		c.mu.Unlock()
		if changed {
			c.opts.Logger.Warn("jwks keys not used", zap.String("source", jwksURL), zap.Int("dropped", len(dropped)), zap.String("reasons", msg))
		}
	}
	c.set.Store(set)
	return nil
}

// get fetches url: 200 only, body capped at MaxBytes.
func (c *Cache) get(ctx context.Context, u string) ([]byte, error) {
	c.fetches.Add(1)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.opts.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		remote.Drain(resp)
		return nil, fmt.Errorf("fetching %s: status %d", u, resp.StatusCode)
	}
	body, err := remote.ReadBody(resp, c.opts.MaxBytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u, err)
	}
	return body, nil
}

// discover finds jwks_uri in the issuer's metadata: RFC 8414 (well-known
// suffix inserted before the issuer's path), then OpenID Connect
// Discovery (suffix appended). The metadata's issuer must match exactly.
func (c *Cache) discover(ctx context.Context) (string, error) {
	iss := c.opts.Issuer
	u, err := url.Parse(iss)
	if err != nil {
		return "", err
	}
	path := strings.TrimSuffix(u.Path, "/")
	candidates := []string{
		u.Scheme + "://" + u.Host + "/.well-known/oauth-authorization-server" + path,
		strings.TrimSuffix(iss, "/") + "/.well-known/openid-configuration",
	}
	var errs []error
	for _, cand := range candidates {
		body, err := c.get(ctx, cand)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var meta struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := json.Unmarshal(body, &meta); err != nil {
			errs = append(errs, fmt.Errorf("%s: not JSON metadata: %w", cand, err))
			continue
		}
		if meta.Issuer != iss {
			errs = append(errs, fmt.Errorf("%s: metadata issuer %q does not match %q", cand, meta.Issuer, iss))
			continue
		}
		if err := verifiers.CheckURL(meta.JWKSURI, false); err != nil {
			errs = append(errs, fmt.Errorf("%s: jwks_uri: %w", cand, err))
			continue
		}
		return meta.JWKSURI, nil
	}
	return "", fmt.Errorf("discovering jwks_uri for %s: %w", iss, errors.Join(errs...))
}

// Key implements verifiers.KeySource. With no key set loaded yet it fails
// with ErrUnavailable (a technical failure, never a 401). An unknown kid
// triggers a refetch if none happened within Throttle, or joins one in
// flight; otherwise it is ErrUnknownKey at once.
func (c *Cache) Key(ctx context.Context, alg *verifiers.Algorithm, kid string) (any, error) {
	set := c.set.Load()
	if set == nil {
		return nil, fmt.Errorf("%w: no JWKS loaded yet from %s", verifiers.ErrUnavailable, c.source())
	}
	key, err := set.Key(ctx, alg, kid)
	if err == nil || kid == "" || !errors.Is(err, verifiers.ErrUnknownKey) {
		return key, err
	}
	if !c.mayRefetch() {
		return nil, err
	}
	if ferr := c.refresh(ctx); ferr != nil {
		return nil, err // the endpoint is down or garbled: the kid stays unknown
	}
	return c.set.Load().Key(ctx, alg, kid)
}

// mayRefetch allows an unknown-kid refetch when one is in flight (to join
// it) or none was started within Throttle.
func (c *Cache) mayRefetch() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inflight {
		return true
	}
	now := c.now()
	if !c.lastUnknown.IsZero() && now.Sub(c.lastUnknown) < c.opts.Throttle {
		return false
	}
	c.lastUnknown = now
	return true
}

// Interface guard
var _ verifiers.KeySource = (*Cache)(nil)
