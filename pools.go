package mcptoken

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/mcptoken/caddy-mcp-token/internal/limiter"
	"github.com/mcptoken/caddy-mcp-token/introspection"
	"github.com/mcptoken/caddy-mcp-token/jwks"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// pooledRef names an entry this config holds in one of the pools.
type pooledRef struct {
	pool *caddy.UsagePool
	key  string
}

// jwksPool holds the JWKS caches, keyed by what changes fetching, so that
// routes and config reloads naming the same endpoint share one cache and
// one refresh goroutine; the last Cleanup stops it.
var jwksPool = caddy.NewUsagePool()

// introspectionPool holds introspection clients (and their caches), keyed
// by endpoint, credentials and cache settings, so reloads keep the cache.
var introspectionPool = caddy.NewUsagePool()

// limiterPool holds failed-attempt limiters, keyed by their settings and
// the configuration they protect, so a reload keeps the counts.
var limiterPool = caddy.NewUsagePool()

// sessionPool holds session bindings, keyed by their settings only: every
// route shares them (session ids are random and bound with the issuer),
// and a reload, even one that changes the rest of the configuration,
// keeps them.
var sessionPool = caddy.NewUsagePool()

// pooled is a value in one of the pools; stop, if any, runs when the last
// configuration using it is cleaned up.
type pooled[T any] struct {
	value T
	stop  func()
}

func (p pooled[T]) Destruct() error {
	if p.stop != nil {
		p.stop()
	}
	return nil
}

// acquire takes the value for key from pool, making it with create if no
// configuration holds it yet, and records it for c.release.
func acquire[T any](c *core, pool *caddy.UsagePool, key string, create func() (T, func(), error)) (T, error) {
	val, _, err := pool.LoadOrNew(key, func() (caddy.Destructor, error) {
		v, stop, err := create()
		if err != nil {
			return nil, err
		}
		return pooled[T]{v, stop}, nil
	})
	if err != nil {
		var zero T
		return zero, err
	}
	c.pooled = append(c.pooled, pooledRef{pool, key})
	return val.(pooled[T]).value, nil
}

// rangePool calls f with every value of type T in pool.
func rangePool[T any](pool *caddy.UsagePool, f func(T)) {
	pool.Range(func(_, v any) bool {
		if p, ok := v.(pooled[T]); ok {
			f(p.value)
		}
		return true
	})
}

// rateLimiter takes the shared limiter for cfg from the pool; nil when off.
func (c *core) rateLimiter(cfg *Config) (*limiter.Limiter, error) {
	rl := RateLimitConfig{}
	if cfg.RateLimit != nil {
		rl = *cfg.RateLimit
	}
	if rl.Disabled {
		return nil, nil
	}
	identity, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(identity)
	key := fmt.Sprintf("max=%d window=%s addrs=%d config=%x", rl.MaxAttempts, time.Duration(rl.Window), rl.MaxAddresses, sum[:8])
	return acquire(c, limiterPool, key, func() (*limiter.Limiter, func(), error) {
		return limiter.New(rl.MaxAttempts, time.Duration(rl.Window), rl.MaxAddresses), nil, nil
	})
}

// sessionStore takes the shared session bindings for cfg; nil when off.
func (c *core) sessionStore(cfg *Config) (*sessionStore, error) {
	size, ttl, on, err := cfg.BindSessions.settings()
	if !on || err != nil {
		return nil, err
	}
	key := fmt.Sprintf("size=%d ttl=%s", size, ttl)
	return acquire(c, sessionPool, key, func() (*sessionStore, func(), error) {
		return newSessionStore(size, ttl), nil, nil
	})
}

// release gives back the pooled JWKS caches.
func (c *core) release() error {
	var errs []error
	for _, ref := range c.pooled {
		if _, err := ref.pool.Delete(ref.key); err != nil {
			errs = append(errs, err)
		}
	}
	c.pooled = nil
	liveTokenCaches.remove(c.tokens)
	return errors.Join(errs...)
}

// jwksSource takes the shared cache for opts from the pool.
func (c *core) jwksSource(opts jwks.Options) (verifiers.KeySource, error) {
	key := fmt.Sprintf("url=%s discover=%s ttl=%s timeout=%s throttle=%s guarded=%v",
		opts.URL, opts.Issuer, opts.RefreshInterval, opts.Timeout, opts.Throttle, opts.Client != nil)
	opts.Logger = caddy.Log().Named("http.handlers.mcp_token.jwks")
	return acquire(c, jwksPool, key, func() (*jwks.Cache, func(), error) {
		cache, err := jwks.New(opts)
		if err != nil {
			return nil, nil, err
		}
		return cache, cache.Close, nil
	})
}

// introspectionClient takes the shared client for opts from the pool.
func (c *core) introspectionClient(opts introspection.Options) (*introspection.Client, error) {
	secret := sha256.Sum256([]byte(opts.ClientSecret))
	key := fmt.Sprintf("url=%s id=%s secret=%x auth=%s timeout=%s ttl=%s nocache=%v neg=%s size=%d",
		opts.URL, opts.ClientID, secret[:8], opts.AuthMethod, opts.Timeout, opts.CacheTTL, opts.NoCache,
		opts.NegativeCacheTTL, opts.CacheSize)
	opts.Logger = caddy.Log().Named("http.handlers.mcp_token.introspection")
	return acquire(c, introspectionPool, key, func() (*introspection.Client, func(), error) {
		cl, err := introspection.New(opts)
		return cl, nil, err
	})
}

// sources supply the shared remote parts; the Caddyfile parser passes ones
