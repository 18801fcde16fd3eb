package mcptoken

import (
	"errors"
	"fmt"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/mcptoken/caddy-mcp-token/introspection"
	"github.com/mcptoken/caddy-mcp-token/jwks"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// Config → verifiers: the JWT policies and their key sources, static
// tokens and introspection. The Caddyfile parser calls buildChain too,
// with sources that touch nothing, to report bad values at their line.

// sources supply the shared remote parts; the Caddyfile parser passes ones
// that touch nothing.
type sources struct {
	jwks          func(jwks.Options) (verifiers.KeySource, error)
	introspection func(introspection.Options) (*introspection.Client, error)
	// shared is the fleet's introspection cache for share_introspection;
	// nil without a fleet store (share_introspection is then refused).
	shared  introspection.SharedCache
	keyFile func(key string, create func() (*keyFile, error)) (*keyFile, error) // nil: not shared
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
	if ic.ShareIntrospection {
		if src.shared == nil {
			return nil, errors.New("share_introspection needs the fleet's store: add the global option `mcp_token { store redis <url> }`")
		}
		opts.Shared = src.shared
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
