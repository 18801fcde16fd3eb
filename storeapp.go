package mcptoken

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"go.uber.org/zap"

	"github.com/mcptoken/caddy-mcp-token/internal/streak"
	"github.com/mcptoken/caddy-mcp-token/introspection"
	"github.com/mcptoken/caddy-mcp-token/store"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

func init() {
	caddy.RegisterModule(App{})
	httpcaddyfile.RegisterGlobalOption("mcp_token", parseGlobalOption)
}

// App is the global mcp_token app: the state that gateway instances share
// when they run as a fleet, in Redis: the DPoP replay cache (a proof
// accepted by one instance is refused by every other), failed-attempt
// windows, session bindings and, with share_introspection, introspection
// answers. Without it every instance keeps its own state in memory.
type App struct {
	// Store is where shared state lives. Default: memory (per instance).
	Store *StoreConfig `json:"store,omitempty"`

	redis  *store.Redis
	id     string // the store's key in storePool; names it in other pools' keys
	logger *zap.Logger
	outage *streak.Logger // Redis failures of the replay cache: one WARN per streak
}

// storePool holds the Redis clients, keyed by what they connect to, so a
// config reload keeps the client, and the limiters and session bindings
// pooled with it keep a live one.
var storePool = caddy.NewUsagePool()

// StoreConfig names the shared store.
type StoreConfig struct {
	// memory or redis. Default: memory.
	Type string `json:"type,omitempty"`
	// The Redis URL (redis:// or rediss://, credentials and database
	// included); placeholders such as {env.REDIS_URL} are resolved once.
	URL string `json:"url,omitempty"`
	// The longest one call to the store may take on the request path;
	// past it the request gets 503 (a replay check never passes without
	// the store). Default: 250ms.
	Timeout caddy.Duration `json:"timeout,omitempty"`
	// Prefix of every key. Default: mcp_token:.
	Prefix string `json:"prefix,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (App) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "mcp_token", New: func() caddy.Module { return new(App) }}
}

// Provision builds the store client; it makes no call (the first request
// does, bounded by the timeout).
func (a *App) Provision(ctx caddy.Context) error {
	a.logger = ctx.Logger()
	a.outage = streak.New(a.logger, "mcp_token redis store", nil)
	if a.Store == nil || a.Store.Type == "" || a.Store.Type == "memory" {
		return nil
	}
	if a.Store.Type != "redis" {
		return fmt.Errorf("mcp_token store: type %q, want memory or redis", a.Store.Type)
	}
	url := caddy.NewReplacer().ReplaceKnown(a.Store.URL, "")
	if url == "" {
		return errors.New("mcp_token store redis: a URL is required")
	}
	// go-redis's own messages (a dial failure each second of an outage)
	// at debug level, in Caddy's logs.
	store.SetLogger(a.logger.Named("redis"))
	opts := store.RedisOptions{Prefix: a.Store.Prefix, Timeout: time.Duration(a.Store.Timeout)}
	sum := sha256.Sum256([]byte(url)) // the URL may hold a password: only its hash is kept
	id := fmt.Sprintf("redis=%x prefix=%q timeout=%s", sum[:8], opts.Prefix, opts.Timeout)
	val, _, err := storePool.LoadOrNew(id, func() (caddy.Destructor, error) {
		r, err := store.NewRedis(url, opts)
		if err != nil {
			return nil, err
		}
		return pooled[*store.Redis]{r, func() { _ = r.Close() }}, nil
	})
	if err != nil {
		return err
	}
	a.redis, a.id = val.(pooled[*store.Redis]).value, id
	return nil
}

// Start implements caddy.App.
func (a *App) Start() error { return nil }

// Stop implements caddy.App; the client is released by Cleanup.
func (a *App) Stop() error { return nil }

// Cleanup releases the store's client; the last release closes it.
func (a *App) Cleanup() error {
	if a.redis == nil {
		return nil
	}
	a.redis = nil
	_, err := storePool.Delete(a.id)
	return err
}

// shared is the fleet's store, nil for per-instance memory.
func (a *App) shared() *store.Redis {
	if a == nil {
		return nil
	}
	return a.redis
}

// storeID names the fleet's store in pool keys ("" for memory), so a
// limiter or session store made for one store is never handed to a
// config using another.
func (a *App) storeID() string {
	if a.shared() == nil {
		return ""
	}
	return a.id
}

// outageLog is a streak logger for one use of the store; pooled values
// outlive a config, so it writes to Caddy's default logger.
func outageLog(what string) *streak.Logger {
	return streak.New(caddy.Log().Named("mcp_token"), "mcp_token redis store ("+what+")", nil)
}

// replayCache is the fleet's replay cache, nil for per-instance memory.
func (a *App) replayCache() verifiers.ReplayCache {
	if a == nil || a.redis == nil {
		return nil
	}
	return loggedReplay{a.redis, a.outage}
}

// loggedReplay logs the store's failures once per streak (a WARN when
// they start, an INFO on recovery); each failed check is still a 503.
type loggedReplay struct {
	cache  verifiers.ReplayCache
	outage *streak.Logger
}

func (l loggedReplay) Seen(ctx context.Context, key string, until time.Time) (bool, error) {
	seen, err := l.cache.Seen(ctx, key, until)
	if err != nil {
		l.outage.Failure(err, zap.String("answer", "503 to DPoP requests (a replay check never passes without the store)"))
	} else {
		l.outage.Success()
	}
	return seen, err
}

// fleetApp is the global mcp_token app, nil when none is configured (its
// methods then answer "memory").
func fleetApp(ctx caddy.Context) (*App, error) {
	app, err := ctx.AppIfConfigured("mcp_token")
	if errors.Is(err, caddy.ErrNotConfigured) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("mcp_token app: %w", err)
	}
	return app.(*App), nil
}

// parseGlobalOption reads the global option
//
//	mcp_token {
//		store memory
//		store redis <url> [<timeout>]
//	}
func parseGlobalOption(d *caddyfile.Dispenser, _ any) (any, error) {
	app := new(App)
	d.Next() // mcp_token
	if d.NextArg() {
		return nil, d.ArgErr()
	}
	for d.NextBlock(0) {
		switch d.Val() {
		case "store":
			args := d.RemainingArgs()
			switch {
			case len(args) == 1 && args[0] == "memory":
				app.Store = &StoreConfig{Type: "memory"}
			case len(args) >= 2 && len(args) <= 3 && args[0] == "redis":
				app.Store = &StoreConfig{Type: "redis", URL: args[1]}
				if len(args) == 3 {
					dur, err := caddy.ParseDuration(args[2])
					if err != nil || dur <= 0 {
						return nil, d.Errf("store redis: timeout %q is not a positive duration", args[2])
					}
					app.Store.Timeout = caddy.Duration(dur)
				}
			default:
				return nil, d.Errf("store: want `store memory` or `store redis <url> [<timeout>]`")
			}
		default:
			return nil, d.Errf("unrecognized mcp_token global option '%s'", d.Val())
		}
	}
	return httpcaddyfile.App{Name: "mcp_token", Value: caddyconfig.JSON(app, nil)}, nil
}

// Interface guards
var (
	_ caddy.App          = (*App)(nil)
	_ caddy.Provisioner  = (*App)(nil)
	_ caddy.CleanerUpper = (*App)(nil)
)

// sharedIntrospection is the fleet's introspection cache, nil without a
// fleet store. The CLI's verify, which loads no global app, answers from
// the endpoint.
func (c *core) sharedIntrospection() introspection.SharedCache {
	if r := c.fleet.shared(); r != nil {
		return r.Cache("introspection")
	}
	if c.localOnly {
		return localOnly{}
	}
	return nil
}

// localOnly is a shared cache that holds nothing (the CLI).
type localOnly struct{}

func (localOnly) Load(context.Context, [32]byte) ([]byte, bool, error)         { return nil, false, nil }
func (localOnly) Store(context.Context, [32]byte, []byte, time.Duration) error { return nil }
