package mcptoken

import (
	"cmp"
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/mcptoken/caddy-mcp-token/internal/limiter"
	"github.com/mcptoken/caddy-mcp-token/introspection"
	"github.com/mcptoken/caddy-mcp-token/jwks"
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
	noMetadata     bool             // no metadata is published: challenges name none (see checkAuthorizationServers)
	filterLists    bool             // list results are filtered (listfilter.go)
	allow          *allowRules      // allow_if rules (policy.go); nil when none
	audit          *zap.Logger      // the audit logger (audit.go); nil when off
	limiter        *limiter.Limiter // nil when rate limiting is off
	metrics        *metrics         // nil without a metrics registry
	logger         *zap.Logger
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
	fleet, err := fleetReplay(ctx) // the global mcp_token app's store (storeapp.go)
	if err != nil {
		return err
	}
	if err := c.provisionDPoP(cfg, fleet); err != nil {
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
	chain, err := cfg.buildChain(caddy.NewReplacer(), guardsFor(cfg), sources{c.jwksSource, c.introspectionClient, c.keyFile})
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

// audienceWarnings names each verifier that enforces no audience (a token
// the same issuer minted for any other service would pass). resource
// counts as the top-level audience, since it is enforced as one.
func (cfg *Config) audienceWarnings() []string {
	var out []string
	ps, _ := cfg.policies()
	for _, p := range ps {
		if len(p.audiences) > 0 {
			continue
		}
		who := "JWT verification"
		if p.block {
			who = "issuer " + p.issuers[0]
		}
		out = append(out, who+": no audience configured: tokens issued for any service are accepted (set audience, or resource)")
	}
	if ic := cfg.Introspection; ic != nil && len(orList(ic.Audiences, cfg.audiences())) == 0 {
		out = append(out, "introspection: no audience configured: active tokens issued for any service are accepted (set audience, or resource)")
	}
	return out
}

// checkScopes applies checkScope to every scope of the configuration, for
// JSON configs (the Caddyfile parser checks them as it reads them).
func (cfg *Config) checkScopes() error {
	lists := map[string][]string{"required_scopes": cfg.RequiredScopes, "scopes_supported": cfg.ScopesSupported}
	for name, rules := range map[string]map[string][]string{"method_scopes": cfg.MethodScopes, "tool_scopes": cfg.ToolScopes} {
		for k, v := range rules {
			lists[name+" "+k] = v
		}
	}
	for _, ic := range cfg.IssuerConfigs {
		lists["issuer "+ic.Issuer+": required_scopes"] = ic.RequiredScopes
	}
	if cfg.Introspection != nil {
		lists["introspection: required_scopes"] = cfg.Introspection.RequiredScopes
	}
	for i, st := range cfg.StaticTokens {
		lists[fmt.Sprintf("static token %d: scopes", i+1)] = st.Scopes
	}
	for _, name := range slices.Sorted(maps.Keys(lists)) {
		for _, s := range lists[name] {
			if err := checkScope(s); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	return nil
}

// sources supply the shared remote parts; the Caddyfile parser passes ones
// that touch nothing.
type sources struct {
	jwks          func(jwks.Options) (verifiers.KeySource, error)
	introspection func(introspection.Options) (*introspection.Client, error)
	keyFile       func(key string, create func() (*keyFile, error)) (*keyFile, error) // nil: not shared
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
		return nil, errors.New("issuer, audience and algorithms need a key: set public_key, hmac_secret, jwks_uri, jwks_file or discover (or use issuer blocks)")
	}
	for i, ic := range cfg.IssuerConfigs {
		if ic.Issuer == "" {
			return nil, fmt.Errorf("issuer config %d: issuer is required", i+1)
		}
		if ic.KeyConfig.count() == 0 {
			return nil, fmt.Errorf("issuer %s: set one of public_key, hmac_secret, jwks_uri, jwks_file or discover", ic.Issuer)
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
	for _, set := range []bool{k.PublicKey != "", k.HMACSecret != "", k.JWKSURI != "", k.JWKSFile != "", k.Discover} {
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
	implies, err := cfg.scopeHierarchy()
	if err != nil {
		return nil, err
	}
	// Every scope rule of the verifiers is checked by the chain, after the
	// hierarchy expanded the token's scopes (see verifiers.Chain).
	chain := &verifiers.Chain{RequiredScopes: cfg.RequiredScopes, Implies: implies}
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
		if len(p.requiredScopes) > 0 {
			if chain.IssuerScopes == nil {
				chain.IssuerScopes = map[string][]string{}
			}
			chain.IssuerScopes[repl.ReplaceKnown(p.issuers[0], "")] = p.requiredScopes
		}
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
		chain.OpaqueScopes = cfg.Introspection.RequiredScopes
	}
	if chain.JWT == nil && chain.Static == nil && chain.Opaque == nil {
		return nil, errors.New("no verifier configured: set public_key, hmac_secret, jwks_uri, jwks_file, an issuer block, introspection or static_token")
	}
	return chain, nil
}

// buildIntrospection builds the introspection verifier; issuers and
// audiences default to the top-level ones.
func (cfg *Config) buildIntrospection(repl *caddy.Replacer, g guards, src sources) (*introspection.Verifier, error) {
	ic := cfg.Introspection
	var values [3]string
	for i, o := range []struct{ name, value string }{{"url", ic.URL}, {"client_id", ic.ClientID}, {"client_secret", ic.ClientSecret}} {
		v, err := resolve(repl, o.name, o.value)
		if err != nil {
			return nil, err
		}
		values[i] = v
	}
	opts := introspection.Options{
		URL:              values[0],
		ClientID:         values[1],
		ClientSecret:     values[2],
		AuthMethod:       ic.AuthMethod,
		Timeout:          time.Duration(ic.Timeout),
		NegativeCacheTTL: time.Duration(ic.NegativeCacheTTL),
		CacheSize:        ic.CacheSize,
		MaxInFlight:      ic.MaxInFlight,
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
	requireAud, err := g.requireAudience(ic.RequireAudience, auds)
	if err != nil {
		return nil, err
	}
	rules := introspection.Rules{
		Issuers:         replaceAll(repl, orList(ic.Issuers, cfg.Issuers)),
		Audiences:       replaceAll(repl, auds),
		RequireIssuer:   ic.RequireIssuer,
		RequireAudience: requireAud,
		// RequiredScopes: checked by the chain, after scope_implies.
		ClockSkew: verifiers.DefaultClockSkew,
	}
	if cfg.ClockSkew != nil {
		rules.ClockSkew = time.Duration(*cfg.ClockSkew)
	}
	return client.Verifier(rules)
}

func (cfg *Config) buildStatic(repl *caddy.Replacer, g guards) (*verifiers.Static, error) {
	tokens := make([]verifiers.StaticToken, len(cfg.StaticTokens))
	for i, st := range cfg.StaticTokens {
		token, err := resolve(repl, fmt.Sprintf("static token %d", i+1), st.Token)
		if err != nil {
			return nil, err
		}
		tokens[i] = verifiers.StaticToken{
			Token:    token,
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
		return nil, errors.New("public_key, hmac_secret, jwks_uri, jwks_file and discover are mutually exclusive")
	}
	switch {
	case k.PublicKey != "":
		pemText, err := resolve(repl, "public_key", k.PublicKey)
		if err != nil {
			return nil, err
		}
		key, err := verifiers.LoadPublicKey(pemText)
		if err != nil {
			return nil, fromPlaceholder("public_key", k.PublicKey, err)
		}
		return verifiers.NewStaticKey(key), nil
	case k.HMACSecret != "":
		secret, err := resolve(repl, "hmac_secret", k.HMACSecret)
		if err != nil {
			return nil, err
		}
		return verifiers.NewStaticKey([]byte(secret)), nil
	case k.JWKSFile != "":
		return keyFileSource(repl, k.JWKSFile, src.keyFile)
	}
	opts := jwks.Options{
		RefreshInterval: time.Duration(cfg.JWKSCacheTTL),
		Timeout:         time.Duration(cfg.JWKSTimeout),
		Throttle:        time.Duration(cfg.JWKSThrottle),
		Client:          g.jwksClient(time.Duration(cfg.JWKSTimeout)),
		MaxWait:         time.Duration(cfg.JWKSMaxWait),
	}
	if k.JWKSURI != "" {
		var err error
		if opts.URL, err = resolve(repl, "jwks_uri", k.JWKSURI); err != nil {
			return nil, err
		}
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
	algs, err := fileAlgorithms(keys, p.algorithms)
	if err != nil {
		return nil, err
	}
	skew := verifiers.DefaultClockSkew
	if cfg.ClockSkew != nil {
		skew = time.Duration(*cfg.ClockSkew)
	}
	v, err := verifiers.NewJWT(verifiers.JWTConfig{
		Issuers:    replaceAll(repl, p.issuers),
		Audiences:  replaceAll(repl, p.audiences),
		Algorithms: algs,
		Keys:       keys,
		ClockSkew:  skew,
		TokenType:  cfg.TokenType,
		// RequiredScopes: checked by the chain, after scope_implies.
	})
	if err != nil && p.keys.HMACSecret != "" {
		return nil, fromPlaceholder("hmac_secret", p.keys.HMACSecret, err)
	}
	return v, err
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

// resolve replaces the placeholders of an option's value, once, at start.
// A value written with placeholders that resolves to nothing is an error
// naming the option and the placeholder as written — never a value, which
// may be a secret.
func resolve(repl *caddy.Replacer, option, value string) (string, error) {
	out := repl.ReplaceKnown(value, "")
	if out == "" && hasPlaceholder(value) {
		return "", fmt.Errorf("%s %s: resolves to an empty value%s", option, value, emptyHint(value))
	}
	return out, nil
}

var envPlaceholder = regexp.MustCompile(`\{env\.([^}]+)\}`)
var filePlaceholder = regexp.MustCompile(`\{file\.([^}]+)\}`)

// emptyHint says why a placeholder may have resolved to nothing.
func emptyHint(value string) string {
	if m := envPlaceholder.FindStringSubmatch(value); m != nil {
		return fmt.Sprintf(" (the environment variable %s is unset or empty)", m[1])
	}
	if m := filePlaceholder.FindStringSubmatch(value); m != nil {
		return fmt.Sprintf(" (the file %s is missing or empty)", m[1])
	}
	return ""
}

// fromPlaceholder names the option and its placeholder text in an error
// about a value that came from a placeholder.
func fromPlaceholder(option, value string, err error) error {
	if hasPlaceholder(value) {
		return fmt.Errorf("%s %s: %w", option, value, err)
	}
	return err
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
