package mcptoken

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/mcptoken/caddy-mcp-token/internal/limiter"
	"github.com/mcptoken/caddy-mcp-token/introspection"
	"github.com/mcptoken/caddy-mcp-token/jwks"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
	"github.com/prometheus/client_golang/prometheus"
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

// sessionPool holds session bindings, keyed by their settings and store
// only: every route shares them (session ids are random and bound with the issuer),
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
// With the fleet's store its windows live in Redis, under a namespace
// every instance with the same configuration derives alike.
func (c *core) rateLimiter(cfg *Config) (limiter.Counter, error) {
	rl := RateLimitConfig{}
	if cfg.RateLimit != nil {
		rl = *cfg.RateLimit
	}
	if rl.Disabled {
		return nil, nil
	}
	key, ns, err := limiterKey(cfg, rl)
	if err != nil {
		return nil, err
	}
	shared := c.fleet.shared()
	return acquire(c, limiterPool, key+" store="+c.fleet.storeID(), func() (limiter.Counter, func(), error) {
		local := limiter.New(rl.MaxAttempts, time.Duration(rl.Window), rl.MaxAddresses)
		if shared == nil {
			return local, nil, nil
		}
		return limiter.NewShared(local, shared, ns+":", outageLog("failed-attempt limits")), nil, nil
	})
}

// limiterKey names a limiter in the pool (key) and its windows in Redis
// (ns): its settings and the configuration it protects, without the
// configuration's secrets, which a reader of Redis could otherwise test
// guesses against offline.
func limiterKey(cfg *Config, rl RateLimitConfig) (key, ns string, err error) {
	identity, err := publicIdentity(cfg)
	if err != nil {
		return "", "", err
	}
	sum := sha256.Sum256(identity)
	key = fmt.Sprintf("max=%d window=%s addrs=%d config=%x", rl.MaxAttempts, time.Duration(rl.Window), rl.MaxAddresses, sum[:8])
	nsum := sha256.Sum256([]byte(key))
	return key, fmt.Sprintf("%x", nsum[:8]), nil
}

// secretFields are the JSON names of a configuration's secrets (the HMAC
// secret, the introspection client secret, static tokens, the DPoP nonce
// key), wherever they appear.
var secretFields = map[string]bool{"hmac_secret": true, "client_secret": true, "token": true, "nonce_key": true}

// publicIdentity is cfg as JSON without its secrets.
func publicIdentity(cfg *Config) ([]byte, error) {
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return json.Marshal(withoutSecrets(v))
}

// withoutSecrets deletes the secretFields of every object in v.
func withoutSecrets(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			if secretFields[k] {
				delete(t, k)
			} else {
				t[k] = withoutSecrets(e)
			}
		}
	case []any:
		for i, e := range t {
			t[i] = withoutSecrets(e)
		}
	}
	return v
}

// sessionStore takes the shared session bindings for cfg; nil when off.
func (c *core) sessionStore(cfg *Config) (*sessionStore, error) {
	size, ttl, on, err := cfg.BindSessions.settings()
	if !on || err != nil {
		return nil, err
	}
	key := fmt.Sprintf("size=%d ttl=%s store=%s", size, ttl, c.fleet.storeID())
	shared := c.fleet.shared()
	return acquire(c, sessionPool, key, func() (*sessionStore, func(), error) {
		s := newSessionStore(size, ttl)
		if shared != nil {
			s.shared, s.outage = shared, outageLog("session bindings")
		}
		return s, nil, nil
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
	c.pooled, c.jwksCaches = nil, nil
	liveTokenCaches.remove(c.tokens)
	c.stopServing()
	return errors.Join(errs...)
}

// jwksSource takes the shared cache for opts from the pool.
func (c *core) jwksSource(opts jwks.Options) (verifiers.KeySource, error) {
	key := fmt.Sprintf("url=%s discover=%s ttl=%s timeout=%s throttle=%s wait=%s guarded=%v",
		opts.URL, opts.Issuer, opts.RefreshInterval, opts.Timeout, opts.Throttle, opts.MaxWait, opts.Client != nil)
	opts.Logger = caddy.Log().Named("http.handlers.mcp_token.jwks")
	cache, err := acquire(c, jwksPool, key, func() (*jwks.Cache, func(), error) {
		cache, err := jwks.New(opts)
		if err != nil {
			return nil, nil, err
		}
		return cache, cache.Close, nil
	})
	if err != nil {
		return nil, err
	}
	c.jwksCaches = append(c.jwksCaches, jwksRef{cache, opts.Timeout})
	return cache, nil
}

// jwksRef is a key source this config holds, with its fetch timeout.
type jwksRef struct {
	cache   *jwks.Cache
	timeout time.Duration
}

// Reloads. A config loaded while another one serves mcp_token (a reload)
// must not lose the ability to verify: each key source it brings that has
// no keys yet must load them within its jwks_timeout, or the reload fails
// and Caddy keeps the running config. At a first start nothing is running
// to fall back on, so key sources load in the background (503 until then).

// serving counts the provisioned cores of each config. A config is known
// by its metrics registry: Caddy makes one per config and every context
// derived for its modules carries it (their context.Context values are
// children of the config's, which cannot be compared with it).
var serving = struct {
	sync.Mutex
	cores map[*prometheus.Registry]int
}{cores: map[*prometheus.Registry]int{}}

// isReload reports whether ctx provisions a config (not a tool or test
// provisioning a module on its own) while another config with mcp_token
// in it is the running one.
func isReload(ctx caddy.Context) bool {
	// A context made for a config shares its config's file systems; one
	// made without a config gets a fresh map on each call.
	if ctx.FileSystems() != ctx.FileSystems() {
		return false
	}
	running := caddy.ActiveContext()
	active := running.GetMetricsRegistry()
	if running.Context == nil || active == nil || active == ctx.GetMetricsRegistry() {
		return false
	}
	serving.Lock()
	defer serving.Unlock()
	return serving.cores[active] > 0
}

// waitForKeys waits, on a reload, for each key source without keys.
func (c *core) waitForKeys(ctx caddy.Context) error {
	if !isReload(ctx) {
		return nil
	}
	for _, ref := range c.jwksCaches {
		if ref.cache.Ready() {
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, cmp.Or(ref.timeout, jwks.DefaultTimeout))
		err := ref.cache.WaitReady(wctx)
		cancel()
		if err != nil {
			return fmt.Errorf("a running config serves requests and this one could not load its keys, so it is refused and the running config stays: %w", err)
		}
	}
	return nil
}

// startServing records a provisioned core under its config.
func (c *core) startServing(ctx caddy.Context) {
	serving.Lock()
	defer serving.Unlock()
	c.config = ctx.GetMetricsRegistry()
	serving.cores[c.config]++
}

// stopServing undoes startServing.
func (c *core) stopServing() {
	if c.config == nil {
		return
	}
	serving.Lock()
	defer serving.Unlock()
	if serving.cores[c.config]--; serving.cores[c.config] <= 0 {
		delete(serving.cores, c.config)
	}
	c.config = nil
}

// introspectionClient takes the shared client for opts from the pool.
func (c *core) introspectionClient(opts introspection.Options) (*introspection.Client, error) {
	secret := sha256.Sum256([]byte(opts.ClientSecret))
	shared := ""
	if opts.Shared != nil {
		shared = c.fleet.storeID()
	}
	key := fmt.Sprintf("url=%s id=%s secret=%x auth=%s timeout=%s ttl=%s nocache=%v neg=%s size=%d inflight=%d shared=%s",
		opts.URL, opts.ClientID, secret[:8], opts.AuthMethod, opts.Timeout, opts.CacheTTL, opts.NoCache,
		opts.NegativeCacheTTL, opts.CacheSize, opts.MaxInFlight, shared)
	opts.Logger = caddy.Log().Named("http.handlers.mcp_token.introspection")
	return acquire(c, introspectionPool, key, func() (*introspection.Client, func(), error) {
		cl, err := introspection.New(opts)
		if err != nil {
			return nil, nil, err
		}
		return cl, cl.Close, nil
	})
}

// sources supply the shared remote parts; the Caddyfile parser passes ones
