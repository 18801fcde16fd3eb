// Package store holds the state gateway instances share when they run as a
// fleet, in Redis: the DPoP replay cache (a proof accepted by one instance
// is refused by every other), failed-attempt windows, session bindings and
// introspection answers. A breaker pauses the client after a call the
// server did not answer, so a hung server costs one timeout per pause, not
// one per request. It has no Caddy dependency.
package store

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// DefaultTimeout bounds one Redis call when no timeout is configured: the
// request path never waits on the store longer.
const DefaultTimeout = 250 * time.Millisecond

// DefaultPoolSize is the least number of connections a client opens at
// most when the URL sets no pool_size (go-redis's own default, 10 per
// CPU, when larger).
const DefaultPoolSize = 64

// errBadURL is the one answer to a URL that does not parse: it quotes
// nothing of it.
var errBadURL = errors.New("redis store: the URL does not parse (want redis://[user:password@]host[:port][/db][?options] " +
	"or rediss://...); percent-encode special characters in the password")

// RedisOptions configure a Redis store. The zero value is usable.
type RedisOptions struct {
	// Prefix starts every key. Default: "mcp_token:".
	Prefix string
	// Timeout bounds each call. Default: DefaultTimeout.
	Timeout time.Duration
	// Pause is how long calls fail at once (ErrPaused) after one got no
	// answer. Default: DefaultPause.
	Pause time.Duration
	// Now is the clock for expiry times. Default: time.Now.
	Now func() time.Time
}

// Redis is a store in a Redis server (or a compatible one).
type Redis struct {
	client  *redis.Client
	breaker *breaker
	prefix  string
	timeout time.Duration
	now     func() time.Time
}

// NewRedis connects lazily to the server at url (redis://[user:pass@]host:port/db
// or rediss:// for TLS); no call is made here.
func NewRedis(url string, opts RedisOptions) (*Redis, error) {
	ro, err := redis.ParseURL(url)
	if err != nil {
		// Every detail of a parse error may quote part of the password:
		// net/url quotes the URL, or the piece it stopped at (a '/' in the
		// password ends the host early), and go-redis quotes the path and
		// options, where a password cut that way ends up.
		return nil, errBadURL
	}
	s := &Redis{prefix: opts.Prefix, timeout: opts.Timeout, now: opts.Now}
	if s.prefix == "" {
		s.prefix = "mcp_token:"
	}
	if s.timeout <= 0 {
		s.timeout = DefaultTimeout
	}
	if s.now == nil {
		s.now = time.Now
	}
	// Fail fast: one attempt per call, bounded by the call's context.
	ro.MaxRetries, ro.DialerRetries = -1, 1
	ro.DialTimeout, ro.ReadTimeout, ro.WriteTimeout = s.timeout, s.timeout, s.timeout
	ro.ContextTimeoutEnabled = true
	// A call that waits for a free connection (every one busy: this
	// process's own load) gives up with ErrPoolTimeout, which says nothing
	// of the server, before the call's deadline, which would pause the
	// store: go-redis's default (ReadTimeout+1s) is past it.
	if ro.PoolTimeout <= 0 || ro.PoolTimeout > s.timeout/2 {
		ro.PoolTimeout = s.timeout / 2
	}
	// Connections are opened as calls need them: a larger bound than
	// go-redis's 10 per CPU costs nothing idle and leaves a burst of
	// failed attempts less chance to starve the DPoP replay checks.
	if ro.PoolSize <= 0 {
		ro.PoolSize = max(DefaultPoolSize, 10*runtime.GOMAXPROCS(0))
	}
	s.client = redis.NewClient(ro)
	s.breaker = newBreaker(opts.Pause, nil)
	s.client.AddHook(s.breaker)
	return s, nil
}

// Close closes the connections.
func (s *Redis) Close() error { return s.client.Close() }

// Ping checks the server answers.
func (s *Redis) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	return s.client.Ping(ctx).Err()
}

// Seen implements verifiers.ReplayCache with SET NX PX: the first instance
// to record a key wins, every later call (on any instance) sees it. An
// error is a technical failure: the caller refuses the request as
// unavailable (503), never passes it.
func (s *Redis) Seen(ctx context.Context, key string, until time.Time) (bool, error) {
	ttl := max(until.Sub(s.now()), time.Millisecond)
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	err := s.client.SetArgs(ctx, s.prefix+"dpop:jti:"+key, "1", redis.SetArgs{Mode: "NX", TTL: ttl}).Err()
	switch {
	case err == nil:
		return false, nil
	case errors.Is(err, redis.Nil):
		return true, nil
	default:
		return false, fmt.Errorf("redis replay cache: %w", err)
	}
}

// call bounds ctx by the store's timeout.
func (s *Redis) call(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, s.timeout)
}

// Interface guards
var _ verifiers.ReplayCache = (*Redis)(nil)
