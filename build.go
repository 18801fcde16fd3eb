package mcptoken

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/mcptoken/caddy-mcp-token/internal/limiter"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
	"golang.org/x/sync/semaphore"
)

// core is the provisioned state shared by the handler and the provider.
type core struct {
	verifier       verifiers.Verifier
	requiredScopes []string
	forwardToken   bool
	rules          scopeRules
	maxBody        int64
	bodyTimeout    time.Duration       // BodyTimeout; tests shorten it
	bodies         *semaphore.Weighted // the body budget (bodyBudget)
	corsPreflight  bool
	resource       ProtectedResource
	noMetadata     bool            // no metadata is published: challenges name none (see checkAuthorizationServers)
	filterLists    bool            // list results are filtered (listfilter.go)
	allow          *allowRules     // allow_if rules (policy.go); nil when none
	audit          *zap.Logger     // the audit logger (audit.go); nil when off
	limiter        limiter.Counter // nil when rate limiting is off
	metrics        *metrics        // nil without a metrics registry
	logger         *zap.Logger
	fleet          *App                   // the global mcp_token app; nil when none
	localOnly      bool                   // the CLI: share_introspection served without a store
	pooled         []pooledRef            // the shared caches this config holds
	tokens         *verifiers.TokenCache  // verified JWTs; nil when off
	sessions       *sessionStore          // session bindings; nil when off
	dpop           *verifiers.DPoPChecker // DPoP proofs; nil when dpop is off
	dpopRequired   bool                   // only DPoP-bound tokens are accepted
	mtlsOff        bool                   // certificate-bound tokens are refused
	mtlsRequired   bool                   // only certificate-bound tokens are accepted
	jwksCaches     []jwksRef              // the key sources among pooled
	config         *prometheus.Registry   // the config this core serves (see startServing)
	metaChecked    atomic.Bool            // checkMetadataServed ran (metadataserved.go)
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
	if err := cfg.checkScopes(); err != nil {
		return err
	}
	c.logger = ctx.Logger()
	var err error
	if cfg.Audit {
		c.audit = c.logger.Named("audit")
	}
	if err := c.provisionMetrics(ctx); err != nil {
		return err
	}
	c.requiredScopes = cfg.RequiredScopes
	c.forwardToken = cfg.ForwardToken
	c.rules = scopeRules{method: cfg.MethodScopes, tool: cfg.ToolScopes, prompt: cfg.PromptScopes, resource: cfg.ResourceScopes}
	if c.allow, err = newPolicy(cfg.AllowIf); err != nil {
		return err
	}
	c.filterLists = c.rules.byName() || c.allow != nil
	if cfg.FilterLists != nil {
		c.filterLists = *cfg.FilterLists
	}
	c.maxBody = cmp.Or(cfg.MaxBody, DefaultMaxBody)
	if c.maxBody < 0 || c.maxBody > MaxMaxBody {
		return fmt.Errorf("max_body: %d bytes out of range (at most %d)", c.maxBody, MaxMaxBody)
	}
	c.bodyTimeout, c.bodies = BodyTimeout, bodyBudget
	c.corsPreflight = cfg.CORSPreflight == nil || *cfg.CORSPreflight
	c.resource = cfg.metadata()
	c.noMetadata = len(c.resource.AuthorizationServers) == 0 && cfg.KeyConfig.count() == 0 &&
		len(cfg.IssuerConfigs) == 0 && cfg.Introspection == nil && !cfg.FromEnv
	if c.fleet, err = fleetApp(ctx); err != nil { // the global mcp_token app's store (storeapp.go)
		return err
	}
	if err := c.provisionDPoP(cfg, c.fleet.replayCache()); err != nil {
		return err
	}
	lim, err := c.rateLimiter(cfg)
	if err != nil {
		return err
	}
	c.limiter = lim
	if c.sessions, err = c.sessionStore(cfg); err != nil {
		return err
	}
	if msg := spoofableClientIP(ctx); lim != nil && msg != "" {
		c.logger.Warn(msg)
	}
	chain, err := cfg.buildChain(caddy.NewReplacer(), guardsFor(cfg), sources{
		jwks: c.jwksSource, introspection: c.introspectionClient, keyFile: c.keyFile, shared: c.sharedIntrospection()})
	if err != nil {
		return err
	}
	c.verifier = chain
	if err := guardsFor(cfg).resource(cfg.Resource); err != nil {
		return err
	}
	if chain.JWT != nil {
		if c.tokens, err = cfg.TokenCache.build(); err != nil {
			return err
		}
		liveTokenCaches.add(c.tokens)
	}
	if chain.Static != nil {
		c.logger.Warn("static tokens are configured: for DEVELOPMENT ONLY, never in production",
			zap.Int("count", len(cfg.StaticTokens)))
	}
	for _, w := range cfg.audienceWarnings() {
		c.logger.Warn(w)
	}
	if err := c.waitForKeys(ctx); err != nil {
		return err
	}
	c.startServing(ctx)
	return nil
}

// build makes the verified-token cache; nil when it is off.
func (tc *TokenCacheConfig) build() (*verifiers.TokenCache, error) {
	if tc == nil {
		tc = &TokenCacheConfig{}
	}
	if tc.Disabled {
		return nil, nil
	}
	if tc.Size < 0 || tc.TTL < 0 {
		return nil, errors.New("token_cache: size and ttl must be positive")
	}
	size := cmp.Or(tc.Size, verifiers.DefaultTokenCacheSize)
	ttl := cmp.Or(time.Duration(tc.TTL), verifiers.DefaultTokenCacheTTL)
	return verifiers.NewTokenCache(size, ttl, nil)
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
