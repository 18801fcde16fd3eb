package jwks

import (
	"context"
	"errors"
	"fmt"
	"net/http"
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
	DefaultMaxWait         = time.Second
	// MaxStartupRetry caps the backoff between fetches while no key set has
	// been loaded yet (and after failures, until RefreshInterval).
	MaxStartupRetry = 30 * time.Second
	// NoKeysRetry is the least time between two fetches that requests
	// trigger while no key set is loaded (they share one in flight).
	NoKeysRetry = time.Second
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
	// MaxWait bounds how long a request waits for a fetch (an unknown kid,
	// or no key set loaded yet); past it the request fails with
	// ErrUnavailable (503) while the fetch goes on for everyone. Default 1s.
	MaxWait time.Duration
	// Client is the HTTP client. Default: a client of our own with Timeout,
	// that does not follow redirects, on a transport of its own holding at
	// most MaxConns connections.
	Client *http.Client
	// Logger receives refresh trouble: a warning at the start of a failure
	// streak, an info line when it ends, debug in between. Default: none.
	Logger *zap.Logger
}

// Stats counts a cache's work. A fetch cancelled because the cache was
// closed counts as neither a refresh nor a failure.
type Stats struct {
	Fetches   int64 `json:"fetches"`   // HTTP requests made (JWKS and discovery)
	Refreshes int64 `json:"refreshes"` // key-set refreshes attempted
	Failures  int64 `json:"failures"`  // refreshes that did not produce a new key set
}

// Cache is a JWKS key source: it fetches a key set in the background,
// refreshes it every RefreshInterval, refetches at most once per Throttle
// when a token names an unknown kid (concurrent callers share the fetch),
// and keeps serving the last good set while the endpoint fails. Keys are
// replaced only by a successful fetch of a valid set. A request waits for
// a fetch at most MaxWait. It implements verifiers.KeySource; Close stops
// it.
type Cache struct {
	opts    Options
	display string // the source, redacted for errors, logs and Status
	own     bool   // opts.Client is ours: Close closes its connections
	set     atomic.Pointer[Set]
	flight  singleflight.Group

	mu          sync.Mutex
	inflight    bool
	lastStart   time.Time // start of the last fetch
	lastFailed  bool      // the last fetch failed: the set may be stale
	lastErr     error     // the last fetch's error
	lastUnknown time.Time // start of the last unknown-kid refetch
	jwksURL     string    // resolved by discovery
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
	c, err := configure(opts)
	if err != nil {
		return nil, err
	}
	go c.run()
	return c, nil
}

// configure checks opts, applies the defaults and returns a cache whose
// background goroutine is not started (New starts it; Inspect needs none).
func configure(opts Options) (*Cache, error) {
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
	if opts.MaxWait <= 0 {
		opts.MaxWait = DefaultMaxWait
	}
	own := opts.Client == nil
	if own {
		opts.Client = remote.NewClient(opts.Timeout, MaxConns)
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	display := remote.Redact(opts.URL)
	if opts.URL == "" {
		display = "discovery from " + remote.Redact(opts.Issuer)
	}
	c := &Cache{opts: opts, display: display, own: own, jwksURL: opts.URL, done: make(chan struct{}), now: time.Now,
		streak: streak.New(opts.Logger, "jwks fetch", nil)}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// Close stops the background goroutine and waits for it; a fetch in
// flight is cancelled (quietly: see fetchAndStore).
func (c *Cache) Close() {
	c.cancel()
	<-c.done
	// Wait for a fetch still in flight (now cancelled) to end, so that
	// nothing of the cache runs, or logs, after Close.
	<-c.flight.DoChan("fetch", func() (any, error) {
		return nil, fmt.Errorf("%w: the key source for %s is closed", verifiers.ErrUnavailable, c.display)
	})
	if c.own {
		c.opts.Client.CloseIdleConnections()
	}
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
		c.inflight, c.lastStart = true, c.now()
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
	err := c.fetchSet(ctx)
	if err != nil && c.ctx.Err() != nil {
		// The cache is being closed (a config discarded, caddy validate):
		// no failure, and nothing to warn about.
		if ce := c.opts.Logger.Check(zap.DebugLevel, "jwks fetch cancelled: the key source is closed"); ce != nil {
			ce.Write(zap.String("source", c.display))
		}
		return fmt.Errorf("%w: the key source for %s is closed", verifiers.ErrUnavailable, c.display)
	}
	c.refreshes.Add(1)
	c.mu.Lock()
	c.lastFailed, c.lastErr = err != nil, err
	c.mu.Unlock()
	if err != nil {
		c.failures.Add(1)
		state := "serving the last good key set; an unknown kid is answered as unavailable"
		if c.set.Load() == nil {
			state = "no keys loaded yet: verification unavailable"
		}
		c.streak.Failure(err, zap.String("source", c.display), zap.String("state", state))
		return err
	}
	c.streak.Success(zap.String("source", c.display))
	return nil
}

// Interface guard
var _ verifiers.KeySource = (*Cache)(nil)
