// Package mcptoken is a Caddy module that verifies OAuth bearer tokens
// (JWTs, static development tokens) in front of MCP servers.
//
// It provides the `mcp_token` HTTP handler (and Caddyfile directive),
// which answers 401, 403 and 503 as RFC 6750 and the MCP authorization
// specification ask, and the `mcp_token` authentication provider for the
// `authentication` handler, for JSON users who compose it with others.
package mcptoken

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mcptoken/caddy-mcp-token/internal/limiter"
	"github.com/mcptoken/caddy-mcp-token/introspection"
	"github.com/mcptoken/caddy-mcp-token/jwks"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

func init() {
	caddy.RegisterModule(Authenticator{})
}

// KeyConfig says where the keys that verify JWTs come from: exactly one of
// a public key, an HMAC secret, a JWKS endpoint, or discovery.
type KeyConfig struct {
	// A PEM public key (PKIX PUBLIC KEY, PKCS#1 RSA PUBLIC KEY or an X.509
	// CERTIFICATE; RSA of 2048 bits or more, ECDSA P-256/384/521, or
	// Ed25519), given inline or as the path of a PEM file. Placeholders
	// such as {env.*} and {file.*} are resolved at start.
	PublicKey string `json:"public_key,omitempty"`

	// A shared HMAC secret for HS256/384/512 (at least 32/48/64 bytes).
	// Use a placeholder such as {env.MCP_HMAC_SECRET} or {file./path}
	// rather than writing the secret in the config. Never logged.
	HMACSecret string `json:"hmac_secret,omitempty"`

	// The URL of the issuer's JSON Web Key Set. Keys are fetched in the
	// background, shared by every route and config naming the same URL,
	// refreshed every jwks_cache_ttl, and refetched (at most once per
	// jwks_throttle) when a token names an unknown kid. Must be https
	// when ENVIRONMENT=production.
	JWKSURI string `json:"jwks_uri,omitempty"`

	// Discover the JWKS URL from the issuer's metadata
	// (/.well-known/oauth-authorization-server, then
	// /.well-known/openid-configuration). Needs exactly one issuer.
	Discover bool `json:"discover,omitempty"`
}

// IssuerConfig is one issuer's policy when several issuers are accepted:
// a token's iss selects it, and only its keys can verify the token.
type IssuerConfig struct {
	// The issuer (iss) this policy is for. Required.
	Issuer string `json:"issuer"`

	// Where this issuer's keys come from.
	KeyConfig

	// Accepted aud values for this issuer's tokens (any of them).
	Audiences []string `json:"audiences,omitempty"`

	// Accepted algorithms. Default: as for the top-level algorithms.
	Algorithms []string `json:"algorithms,omitempty"`

	// Scopes this issuer's tokens must carry, on top of the global ones.
	RequiredScopes []string `json:"required_scopes,omitempty"`
}

// Config is the configuration shared by the `mcp_token` handler and the
// `mcp_token` authentication provider. At least one key source (top-level
// or in issuer_configs) or static token must be set.
type Config struct {
	// Accepted values of the token's `iss` claim for the top-level key
	// source. When empty, any issuer is accepted (not recommended).
	Issuers []string `json:"issuers,omitempty"`

	// Where the top-level policy's keys come from.
	KeyConfig

	// Accepted values of the token's `aud` claim; a token matches when any
	// of its audiences is one of these. When empty, any audience is
	// accepted (not recommended: a token minted for another service would
	// pass).
	Audiences []string `json:"audiences,omitempty"`

	// The JWS algorithms accepted (allow-list). Default: the algorithm of
	// the public key's type (RS256 for RSA, ES256/ES384/ES512 for EC,
	// EdDSA for Ed25519), HS256 with an HMAC secret, RS256 with a JWKS.
	// HMAC and asymmetric algorithms can never be mixed, HMAC never comes
	// from a JWKS, and "none" is never accepted.
	Algorithms []string `json:"algorithms,omitempty"`

	// Per-issuer policies, each with its own key source, audiences,
	// algorithms and scopes. A token's iss selects the policy.
	IssuerConfigs []IssuerConfig `json:"issuer_configs,omitempty"`

	// Time between background refreshes of JWKS key sets. Default: 1h.
	JWKSCacheTTL caddy.Duration `json:"jwks_cache_ttl,omitempty"`

	// Timeout of each JWKS or discovery request. Default: 10s.
	JWKSTimeout caddy.Duration `json:"jwks_timeout,omitempty"`

	// Minimum time between two JWKS refetches caused by tokens with an
	// unknown kid (meanwhile such tokens get 401). Default: 5m.
	JWKSThrottle caddy.Duration `json:"jwks_throttle,omitempty"`

	// Scopes every request's token must carry (all of them). A valid token
	// without them gets 403 insufficient_scope from the handler.
	RequiredScopes []string `json:"required_scopes,omitempty"`

	// Leeway for exp, nbf and iat, to absorb clock differences. Default:
	// 60s; at most 120s.
	ClockSkew *caddy.Duration `json:"clock_skew,omitempty"`

	// When "at+jwt", only JWTs whose typ header is at+jwt or
	// application/at+jwt (RFC 9068 access tokens) are accepted, which
	// refuses ID tokens presented as access tokens.
	TokenType string `json:"token_type,omitempty"`

	// Keep the Authorization header on the request that continues to the
	// backend. Default: false, the header is removed after verification.
	ForwardToken bool `json:"forward_token,omitempty"`

	// Fixed development tokens. Refused in production.
	StaticTokens []StaticToken `json:"static_tokens,omitempty"`

	// Failed-attempt rate limiting per client address (Caddy's client IP,
	// which honours trusted_proxies). Default: on, 10 failures per 60s.
	RateLimit *RateLimitConfig `json:"rate_limit,omitempty"`

	// Fill what this configuration leaves unset from FastMCP's
	// FASTMCP_SERVER_AUTH_* environment variables (JWT, introspection, rate
	// limiting; TYPE and SECRET_BACKEND). Options set here win.
	FromEnv bool `json:"from_env,omitempty"`

	// Apply the production guards whatever ENVIRONMENT says: no static
	// tokens, https and non-loopback endpoints only, an audience required.
	// They also apply when ENVIRONMENT=production.
	Production bool `json:"production,omitempty"`

	// The protected MCP resource: RFC 9728 metadata and the
	// resource_metadata URL of challenges.
	ProtectedResource

	// Scopes required per JSON-RPC method (such as tools/list), checked
	// after the global required_scopes on POST requests.
	MethodScopes map[string][]string `json:"method_scopes,omitempty"`

	// Scopes required per tool, for tools/call with that params.name.
	ToolScopes map[string][]string `json:"tool_scopes,omitempty"`

	// Let CORS preflight requests (OPTIONS with Origin and
	// Access-Control-Request-Method) through without a token, so browser
	// clients work. Default: true.
	CORSPreflight *bool `json:"cors_preflight,omitempty"`

	// The largest JSON-RPC body the handler reads to check method and tool
	// scopes and the Mcp-Method/Mcp-Name headers; larger bodies get 413.
	// Default: 1 MiB.
	MaxBody int64 `json:"max_body,omitempty"`

	// Verify opaque tokens with an OAuth 2.0 Token Introspection endpoint
	// (RFC 7662). With JWT key sources configured too, a token shaped like
	// a JWS goes to JWT verification and any other token to introspection.
	Introspection *IntrospectionConfig `json:"introspection,omitempty"`
}

// RateLimitConfig limits failed authentication attempts per client
// address. Only failures count (a token refused as invalid, expired, badly
// signed, for another audience...; not a missing token, a missing scope or
// a technical failure), so a client that never fails is never limited.
// Over the limit the handler answers 429 with Retry-After before any
// signature check or introspection call. State survives config reloads.
type RateLimitConfig struct {
	// Turn rate limiting off.
	Disabled bool `json:"disabled,omitempty"`
	// Failures allowed per window. Default: 10.
	MaxAttempts int `json:"max_attempts,omitempty"`
	// The window, starting at an address's first failure. Default: 60s.
	Window caddy.Duration `json:"window,omitempty"`
	// Most addresses tracked at once (least recently seen forgotten
	// first). Default: 10000.
	MaxAddresses int `json:"max_addresses,omitempty"`
}

// IntrospectionConfig configures RFC 7662 token introspection.
type IntrospectionConfig struct {
	// The introspection endpoint. Must be https (and not localhost) when
	// ENVIRONMENT=production.
	URL string `json:"url"`

	// This resource server's client id at the authorization server. Required.
	ClientID string `json:"client_id,omitempty"`

	// Its client secret; use a placeholder such as {env.INTROSPECTION_SECRET}
	// or {file./path}. Never logged.
	ClientSecret string `json:"client_secret,omitempty"`

	// How to authenticate: "basic" (client_secret_basic, default) or
	// "post" (client_secret_post).
	AuthMethod string `json:"auth_method,omitempty"`

	// Timeout of each introspection call. Default: 10s; at most 60s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// How long an active result is reused (never past the token's exp).
	// Default: 60s; 0 disables the cache (every request is introspected,
	// so a revocation is seen at once).
	CacheTTL *caddy.Duration `json:"cache_ttl,omitempty"`

	// How long an inactive result is reused. Default: 5s.
	NegativeCacheTTL caddy.Duration `json:"negative_cache_ttl,omitempty"`

	// Maximum number of cached results (LRU). Default: 10000.
	CacheSize int `json:"cache_size,omitempty"`

	// Accepted iss values of introspection results. Default: the top-level
	// issuers. A result naming another issuer is refused.
	Issuers []string `json:"issuers,omitempty"`

	// Accepted aud values (any of them). Default: the top-level audiences.
	Audiences []string `json:"audiences,omitempty"`

	// Refuse results without iss (resp. aud).
	RequireIssuer   bool `json:"require_issuer,omitempty"`
	RequireAudience bool `json:"require_audience,omitempty"`

	// Scopes introspected tokens must carry, on top of the global ones.
	RequiredScopes []string `json:"required_scopes,omitempty"`
}

// StaticToken is one development token. Never use them in production.
type StaticToken struct {
	// The bearer token string. Placeholders are resolved at start.
	Token string `json:"token"`
	// The client identity the token stands for. Required.
	ClientID string `json:"client_id"`
	// Scopes the token grants.
	Scopes []string `json:"scopes,omitempty"`
	// Optional subject.
	Subject string `json:"sub,omitempty"`
	// Optional expiry, in seconds since the Unix epoch.
	ExpiresAt int64 `json:"expires_at,omitempty"`
	// Optional extra claims.
	Claims map[string]any `json:"claims,omitempty"`
}

// core is the provisioned state shared by the handler and the provider.
type core struct {
	verifier       verifiers.Verifier
	requiredScopes []string
	forwardToken   bool
	rules          scopeRules
	maxBody        int64
	corsPreflight  bool
	resource       ProtectedResource
	limiter        *limiter.Limiter // nil when rate limiting is off
	metrics        *metrics         // nil without a metrics registry
	logger         *zap.Logger
	pooled         []pooledRef // the shared caches this config holds
}

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

// provision builds the verifier chain into c. Placeholders in key material
// and tokens are resolved once, here. c.release undoes what it acquired,
// also when provisioning fails.
func (cfg *Config) provision(ctx caddy.Context, c *core) error {
	if cfg.FromEnv {
		eff := *cfg
		if err := eff.applyEnv(os.LookupEnv, guardsFor(cfg).production); err != nil {
			return fmt.Errorf("from_env: %w", err)
		}
		cfg = &eff
	}
	c.logger = ctx.Logger()
	if err := c.provisionMetrics(ctx); err != nil {
		return err
	}
	c.requiredScopes = cfg.RequiredScopes
	c.forwardToken = cfg.ForwardToken
	c.rules = scopeRules{method: cfg.MethodScopes, tool: cfg.ToolScopes}
	c.maxBody = cmp.Or(cfg.MaxBody, DefaultMaxBody)
	c.corsPreflight = cfg.CORSPreflight == nil || *cfg.CORSPreflight
	c.resource = cfg.metadata()
	lim, err := c.rateLimiter(cfg)
	if err != nil {
		return err
	}
	c.limiter = lim
	chain, err := cfg.buildChain(caddy.NewReplacer(), guardsFor(cfg), sources{c.jwksSource, c.introspectionClient})
	if err != nil {
		return err
	}
	c.verifier = chain
	if chain.Static != nil {
		c.logger.Warn("static tokens are configured: for DEVELOPMENT ONLY, never in production",
			zap.Int("count", len(cfg.StaticTokens)))
	}
	if chain.JWT != nil && len(cfg.Audiences) == 0 && len(cfg.IssuerConfigs) == 0 {
		c.logger.Warn("no audience configured: tokens issued for any service are accepted")
	}
	return nil
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
	return errors.Join(errs...)
}

// jwksSource takes the shared cache for opts from the pool.
func (c *core) jwksSource(opts jwks.Options) (verifiers.KeySource, error) {
	key := fmt.Sprintf("url=%s discover=%s ttl=%s timeout=%s throttle=%s",
		opts.URL, opts.Issuer, opts.RefreshInterval, opts.Timeout, opts.Throttle)
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
// that touch nothing.
type sources struct {
	jwks          func(jwks.Options) (verifiers.KeySource, error)
	introspection func(introspection.Options) (*introspection.Client, error)
}

// policy is one set of JWT rules with its key source.
type policy struct {
	issuers, audiences, algorithms, requiredScopes []string
	keys                                           KeyConfig
	block                                          bool // an issuer_configs entry
}

// policies lists the JWT policies: the top-level one (when it has a key
// source) and one per issuer_configs entry.
func (cfg *Config) policies() ([]policy, error) {
	var ps []policy
	if cfg.KeyConfig.count() > 0 {
		ps = append(ps, policy{issuers: cfg.Issuers, audiences: cfg.audiences(), algorithms: cfg.Algorithms, keys: cfg.KeyConfig})
	} else if len(cfg.Algorithms) > 0 || (cfg.Introspection == nil && len(cfg.Issuers)+len(cfg.Audiences) > 0) {
		return nil, errors.New("issuer, audience and algorithms need a key: set public_key, hmac_secret, jwks_uri or discover (or use issuer blocks)")
	}
	for i, ic := range cfg.IssuerConfigs {
		if ic.Issuer == "" {
			return nil, fmt.Errorf("issuer config %d: issuer is required", i+1)
		}
		if ic.KeyConfig.count() == 0 {
			return nil, fmt.Errorf("issuer %s: set one of public_key, hmac_secret, jwks_uri or discover", ic.Issuer)
		}
		algs := ic.Algorithms
		if len(algs) == 0 {
			algs = cfg.Algorithms
		}
		ps = append(ps, policy{issuers: []string{ic.Issuer}, audiences: ic.Audiences, algorithms: algs,
			requiredScopes: ic.RequiredScopes, keys: ic.KeyConfig, block: true})
	}
	return ps, nil
}

func (k KeyConfig) count() int {
	n := 0
	for _, set := range []bool{k.PublicKey != "", k.HMACSecret != "", k.JWKSURI != "", k.Discover} {
		if set {
			n++
		}
	}
	return n
}

// buildChain turns the config into verifiers. repl resolves placeholders;
// source supplies JWKS key sources. The Caddyfile parser calls it too, to
// report bad values with their line.
func (cfg *Config) buildChain(repl *caddy.Replacer, g guards, src sources) (*verifiers.Chain, error) {
	if cfg.TokenType != "" && len(cfg.IssuerConfigs)+cfg.KeyConfig.count() == 0 {
		return nil, errors.New("token_type needs a JWT key source")
	}
	chain := &verifiers.Chain{RequiredScopes: cfg.RequiredScopes}
	ps, err := cfg.policies()
	if err != nil {
		return nil, err
	}
	var jwts []*verifiers.JWT
	for _, p := range ps {
		v, err := cfg.buildJWT(p, repl, g, src)
		if err != nil {
			return nil, err
		}
		jwts = append(jwts, v)
	}
	switch len(jwts) {
	case 0:
	case 1:
		chain.JWT = jwts[0]
	default:
		b, err := verifiers.NewByIssuer(jwts)
		if err != nil {
			return nil, err
		}
		chain.JWT = b
	}
	if len(cfg.StaticTokens) > 0 {
		s, err := cfg.buildStatic(repl, g)
		if err != nil {
			return nil, err
		}
		chain.Static = s
	}
	if cfg.Introspection != nil {
		v, err := cfg.buildIntrospection(repl, g, src)
		if err != nil {
			return nil, fmt.Errorf("introspection: %w", err)
		}
		chain.Opaque = v
	}
	if chain.JWT == nil && chain.Static == nil && chain.Opaque == nil {
		return nil, errors.New("no verifier configured: set public_key, hmac_secret, jwks_uri, an issuer block, introspection or static_token")
	}
	return chain, nil
}

// buildIntrospection builds the introspection verifier; issuers and
// audiences default to the top-level ones.
func (cfg *Config) buildIntrospection(repl *caddy.Replacer, g guards, src sources) (*introspection.Verifier, error) {
	ic := cfg.Introspection
	opts := introspection.Options{
		URL:              repl.ReplaceKnown(ic.URL, ""),
		ClientID:         repl.ReplaceKnown(ic.ClientID, ""),
		ClientSecret:     repl.ReplaceKnown(ic.ClientSecret, ""),
		AuthMethod:       ic.AuthMethod,
		Timeout:          time.Duration(ic.Timeout),
		NegativeCacheTTL: time.Duration(ic.NegativeCacheTTL),
		CacheSize:        ic.CacheSize,
	}
	if ic.CacheTTL != nil {
		opts.CacheTTL = time.Duration(*ic.CacheTTL)
		opts.NoCache = opts.CacheTTL == 0
	}
	if err := g.endpoint("url", opts.URL); err != nil {
		return nil, err
	}
	client, err := src.introspection(opts)
	if err != nil {
		return nil, err
	}
	auds := orList(ic.Audiences, cfg.audiences())
	if err := g.audience("introspection", auds); err != nil {
		return nil, err
	}
	rules := introspection.Rules{
		Issuers:         replaceAll(repl, orList(ic.Issuers, cfg.Issuers)),
		Audiences:       replaceAll(repl, auds),
		RequireIssuer:   ic.RequireIssuer,
		RequireAudience: ic.RequireAudience,
		RequiredScopes:  ic.RequiredScopes,
		ClockSkew:       verifiers.DefaultClockSkew,
	}
	if cfg.ClockSkew != nil {
		rules.ClockSkew = time.Duration(*cfg.ClockSkew)
	}
	return client.Verifier(rules)
}

func (cfg *Config) buildStatic(repl *caddy.Replacer, g guards) (*verifiers.Static, error) {
	tokens := make([]verifiers.StaticToken, len(cfg.StaticTokens))
	for i, st := range cfg.StaticTokens {
		tokens[i] = verifiers.StaticToken{
			Token:    repl.ReplaceKnown(st.Token, ""),
			ClientID: st.ClientID,
			Subject:  st.Subject,
			Scopes:   st.Scopes,
			Claims:   st.Claims,
		}
		if st.ExpiresAt != 0 {
			tokens[i].ExpiresAt = time.Unix(st.ExpiresAt, 0)
		}
	}
	if err := g.static(); err != nil {
		return nil, err
	}
	return verifiers.NewStatic(tokens, false)
}

// keySource builds a policy's key source.
func (cfg *Config) keySource(p policy, repl *caddy.Replacer, g guards, src sources) (verifiers.KeySource, error) {
	k := p.keys
	if k.count() > 1 {
		return nil, errors.New("public_key, hmac_secret, jwks_uri and discover are mutually exclusive")
	}
	switch {
	case k.PublicKey != "":
		key, err := verifiers.LoadPublicKey(repl.ReplaceKnown(k.PublicKey, ""))
		if err != nil {
			return nil, err
		}
		return verifiers.NewStaticKey(key), nil
	case k.HMACSecret != "":
		return verifiers.NewStaticKey([]byte(repl.ReplaceKnown(k.HMACSecret, ""))), nil
	}
	opts := jwks.Options{
		RefreshInterval: time.Duration(cfg.JWKSCacheTTL),
		Timeout:         time.Duration(cfg.JWKSTimeout),
		Throttle:        time.Duration(cfg.JWKSThrottle),
	}
	if k.JWKSURI != "" {
		opts.URL = repl.ReplaceKnown(k.JWKSURI, "")
		if err := g.endpoint("jwks_uri", opts.URL); err != nil {
			return nil, err
		}
	} else {
		if len(p.issuers) != 1 {
			return nil, errors.New("discover needs exactly one issuer")
		}
		opts.Issuer = repl.ReplaceKnown(p.issuers[0], "")
		if err := g.endpoint("discover: issuer", opts.Issuer); err != nil {
			return nil, err
		}
	}
	return src.jwks(opts)
}

// buildJWT builds a policy's verifier; errors of an issuer block name it.
func (cfg *Config) buildJWT(p policy, repl *caddy.Replacer, g guards, src sources) (*verifiers.JWT, error) {
	v, err := cfg.newJWT(p, repl, g, src)
	if err != nil && p.block {
		return nil, fmt.Errorf("issuer %s: %w", p.issuers[0], err)
	}
	return v, err
}

func (cfg *Config) newJWT(p policy, repl *caddy.Replacer, g guards, src sources) (*verifiers.JWT, error) {
	keys, err := cfg.keySource(p, repl, g, src)
	if err != nil {
		return nil, err
	}
	if err := g.audience("jwt", p.audiences); err != nil {
		return nil, err
	}
	skew := verifiers.DefaultClockSkew
	if cfg.ClockSkew != nil {
		skew = time.Duration(*cfg.ClockSkew)
	}
	return verifiers.NewJWT(verifiers.JWTConfig{
		Issuers:        replaceAll(repl, p.issuers),
		Audiences:      replaceAll(repl, p.audiences),
		Algorithms:     p.algorithms,
		Keys:           keys,
		ClockSkew:      skew,
		TokenType:      cfg.TokenType,
		RequiredScopes: p.requiredScopes,
	})
}

// audiences are the accepted audiences of the top-level policy: the
// configured ones, else the resource (RFC 8707: tokens bound to this MCP
// server).
func (cfg *Config) audiences() []string {
	if len(cfg.Audiences) == 0 && cfg.Resource != "" {
		return []string{cfg.Resource}
	}
	return cfg.Audiences
}

// metadata is the protected-resource description with its defaults:
// authorization servers from the issuers, scopes_supported from every
// scope the configuration requires.
func (cfg *Config) metadata() ProtectedResource {
	pr := cfg.ProtectedResource
	if len(pr.AuthorizationServers) == 0 {
		var servers []string
		add := func(list ...string) {
			for _, s := range list {
				if s != "" && !slices.Contains(servers, s) && !hasPlaceholder(s) {
					servers = append(servers, s)
				}
			}
		}
		add(cfg.Issuers...)
		for _, ic := range cfg.IssuerConfigs {
			add(ic.Issuer)
		}
		if cfg.Introspection != nil {
			add(cfg.Introspection.Issuers...)
		}
		pr.AuthorizationServers = servers
	}
	if len(pr.ScopesSupported) == 0 {
		var scopes []string
		add := func(list []string) {
			for _, s := range list {
				if !slices.Contains(scopes, s) {
					scopes = append(scopes, s)
				}
			}
		}
		add(cfg.RequiredScopes)
		for _, ic := range cfg.IssuerConfigs {
			add(ic.RequiredScopes)
		}
		if cfg.Introspection != nil {
			add(cfg.Introspection.RequiredScopes)
		}
		for _, k := range slices.Sorted(maps.Keys(cfg.MethodScopes)) {
			add(cfg.MethodScopes[k])
		}
		for _, k := range slices.Sorted(maps.Keys(cfg.ToolScopes)) {
			add(cfg.ToolScopes[k])
		}
		pr.ScopesSupported = scopes
	}
	return pr
}

// orList returns list, or def when list is empty.
func orList(list, def []string) []string {
	if len(list) > 0 {
		return list
	}
	return def
}

func replaceAll(repl *caddy.Replacer, in []string) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = repl.ReplaceKnown(s, "")
	}
	return out
}

// bearerToken extracts the bearer token from the Authorization header, the
// only place a credential is taken from (RFC 6750 §2.1; never the query).
func bearerToken(r *http.Request) (string, error) {
	values := r.Header.Values("Authorization")
	switch len(values) {
	case 0:
		return "", verifiers.ErrMissingToken
	case 1:
	default:
		return "", fmt.Errorf("%w: %d Authorization headers", verifiers.ErrBadRequest, len(values))
	}
	scheme, token, _ := strings.Cut(strings.TrimSpace(values[0]), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", verifiers.ErrMissingToken // another scheme: no bearer credentials
	}
	token = strings.TrimLeft(token, " ")
	if token == "" || !isB64Token(token) {
		return "", fmt.Errorf("%w: malformed bearer token", verifiers.ErrBadRequest)
	}
	return token, nil
}

// isB64Token checks RFC 6750's b64token syntax:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	s = strings.TrimRight(s, "=")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

// authenticate verifies the request's bearer token. On success the
// Authorization header is removed unless forward_token is set. It reports
// which verifier judged the token and how long that took (0 when none ran).
func (c *core) authenticate(r *http.Request) (*verifiers.AccessToken, string, time.Duration, error) {
	token, err := bearerToken(r)
	if err != nil {
		c.logRejection(err, "", nil)
		return nil, verifiers.KindNone, 0, err
	}
	start := time.Now()
	tok, kind, err := c.verify(r, token)
	took := time.Since(start)
	if err != nil {
		c.logRejection(err, token, tok)
		return tok, kind, took, err
	}
	if !c.forwardToken {
		r.Header.Del("Authorization")
	}
	return tok, kind, took, nil
}

// verify runs the verifier, with its kind when it is a chain. r may be
// nil (the CLI).
func (c *core) verify(r *http.Request, token string) (*verifiers.AccessToken, string, error) {
	ctx := context.Background()
	if r != nil {
		ctx = r.Context()
	}
	if chain, ok := c.verifier.(*verifiers.Chain); ok {
		return chain.VerifyKind(ctx, token)
	}
	tok, err := c.verifier.Verify(ctx, token)
	return tok, verifiers.KindNone, err
}

func (c *core) logRejection(err error, token string, tok *verifiers.AccessToken) {
	ce := c.logger.Check(zapcore.DebugLevel, "bearer token rejected")
	if ce == nil {
		return
	}
	fields := []zap.Field{zap.String("reason", verifiers.Classify(err).Reason), zap.Error(err)}
	if token != "" {
		fields = append(fields, zap.String("token_hash", TokenHash(token)))
	}
	if tok != nil {
		fields = append(fields, zap.String("client_id", tok.ClientID), zap.String("kid", tok.KeyID))
	}
	ce.Write(fields...)
}

// TokenHash is the short, non-reversible token fingerprint used in logs
// to correlate requests: the first 8 bytes of SHA-256, in hex.
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:8])
}

// userMetadata is the identity exposed as {http.auth.user.*}. Every key is
// always set (empty when absent): Caddy would otherwise forward an unset
// placeholder's literal text.
func userMetadata(tok *verifiers.AccessToken) map[string]string {
	exp := ""
	if !tok.ExpiresAt.IsZero() {
		exp = strconv.FormatInt(tok.ExpiresAt.Unix(), 10)
	}
	return map[string]string{
		"client_id": tok.ClientID,
		"sub":       tok.Subject,
		"iss":       tok.Issuer,
		"aud":       strings.Join(tok.Audience, " "),
		"scopes":    strings.Join(tok.Scopes, " "),
		"exp":       exp,
		"kid":       tok.KeyID,
	}
}

// challenge is the WWW-Authenticate value for a refusal (RFC 6750 §3,
// RFC 9728 §5.1, MCP authorization): error and error_description only when
// a token was presented; scope, the scopes this request needs, when known;
// and resource_metadata, the URL of the protected-resource metadata.
func (c *core) challenge(r *http.Request, err error) string {
	out := verifiers.Classify(err)
	var params []string
	scopes := c.requiredScopes
	var se *verifiers.ScopeError
	if errors.As(err, &se) {
		scopes = se.Required
	}
	if out.Code != "" {
		params = append(params, param("error", out.Code), param("error_description", out.Description))
	}
	if len(scopes) > 0 {
		params = append(params, param("scope", strings.Join(scopes, " ")))
	}
	params = append(params, param("resource_metadata", c.resource.MetadataURL(r)))
	return "Bearer " + strings.Join(params, ", ")
}

func param(name, value string) string {
	return name + "=" + strconv.Quote(value)
}

// module is what the handler and the provider share: the configuration
// and what provisioning built from it.
type module struct {
	Config
	core *core
}

// Provision builds the verifiers.
func (m *module) Provision(ctx caddy.Context) error {
	m.core = new(core)
	if err := m.provision(ctx, m.core); err != nil {
		return fmt.Errorf("mcp_token: %w", err)
	}
	return nil
}

// Cleanup releases the shared JWKS caches, introspection clients and
// limiters; Caddy also calls it after a failed Provision.
func (m *module) Cleanup() error {
	if m.core == nil {
		return nil
	}
	return m.core.release()
}

// Authenticator is the `mcp_token` authentication provider for Caddy's
// `authentication` handler. Caddy's handler can only answer 401, so a
// missing scope is a 401 with error="insufficient_scope", and a technical
// failure (key source down) is a 401 too, logged by Caddy at error level;
// use the `mcp_token` handler for 403 and 503 answers.
type Authenticator struct {
	module
}

// CaddyModule returns the Caddy module information.
func (Authenticator) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.authentication.providers.mcp_token",
		New: func() caddy.Module { return new(Authenticator) },
	}
}

// Authenticate implements caddyauth.Authenticator. A bad or missing token
// is (User{}, false, nil) with a WWW-Authenticate challenge; an error is
// returned only for a technical failure.
func (a *Authenticator) Authenticate(w http.ResponseWriter, r *http.Request) (caddyauth.User, bool, error) {
	tok, kind, took, err := a.core.authenticate(r)
	a.core.metrics.observe(kind, err, took > 0, took)
	if err == nil {
		return caddyauth.User{ID: tok.ClientID, Metadata: userMetadata(tok)}, true, nil
	}
	if errors.Is(err, verifiers.ErrUnavailable) || verifiers.Classify(err).Status == http.StatusServiceUnavailable {
		return caddyauth.User{}, false, fmt.Errorf("mcp_token: %w", err)
	}
	w.Header().Set("WWW-Authenticate", a.core.challenge(r, err))
	return caddyauth.User{}, false, nil
}

// Interface guards
var (
	_ caddy.Provisioner       = (*Authenticator)(nil)
	_ caddy.CleanerUpper      = (*Authenticator)(nil)
	_ caddyauth.Authenticator = (*Authenticator)(nil)
)
