package mcptoken

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/dustin/go-humanize"

	"github.com/mcptoken/caddy-mcp-token/introspection"
	"github.com/mcptoken/caddy-mcp-token/jwks"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

func init() {
	httpcaddyfile.RegisterDirective("mcp_token", parseDirective)
	httpcaddyfile.RegisterDirectiveOrder("mcp_token", httpcaddyfile.Before, "basic_auth")
	httpcaddyfile.RegisterHandlerDirective("mcp_token_metadata", func(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
		m := new(MetadataHandler)
		err := m.UnmarshalCaddyfile(h.Dispenser)
		return m, err
	})
	httpcaddyfile.RegisterDirectiveOrder("mcp_token_metadata", httpcaddyfile.Before, "basic_auth")
}

// parseDirective turns one mcp_token block into routes: the token check
// under the user's matcher, and, outside it so that they need no token,
// the RFC 9728 metadata at the path-suffixed well-known URL of the
// protected path and at the root well-known URL. With several mcp_token
// blocks on a site, the root URL answers for the first one.
func parseDirective(h httpcaddyfile.Helper) ([]httpcaddyfile.ConfigValue, error) {
	if !h.Next() {
		return nil, h.ArgErr()
	}
	matcherSet, err := h.ExtractMatcherSet()
	if err != nil {
		return nil, err
	}
	handler := new(Handler)
	if err := handler.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	if handler.ResourcePath == "" {
		handler.ResourcePath = matcherPath(matcherSet)
	}
	meta := &MetadataHandler{ProtectedResource: handler.metadata()}
	var routes []httpcaddyfile.ConfigValue
	paths := []string{WellKnownPath}
	if rp := meta.configuredPath(); rp != "" {
		paths = []string{WellKnownPath + rp, WellKnownPath}
	}
	for _, p := range paths {
		pm, _ := json.Marshal(caddyhttp.MatchPath{p})
		routes = append(routes, h.NewRoute(caddy.ModuleMap{"path": pm}, meta)...)
	}
	return append(routes, h.NewRoute(matcherSet, handler)...), nil
}

// matcherPath derives the protected path from a matcher with a single
// path (such as /mcp* → /mcp); "" when there is none.
func matcherPath(set caddy.ModuleMap) string {
	raw, ok := set["path"]
	if !ok || len(set) != 1 {
		return ""
	}
	var paths caddyhttp.MatchPath
	if json.Unmarshal(raw, &paths) != nil || len(paths) != 1 {
		return ""
	}
	p := strings.TrimRight(paths[0], "*")
	p = strings.TrimSuffix(p, "/")
	if strings.ContainsAny(p, "*?[") {
		return ""
	}
	return p
}

// UnmarshalCaddyfile parses the mcp_token directive:
//
//	mcp_token [<matcher>] {
//	    issuer          <iss> [<iss>...]
//	    audience        <aud> [<aud>...]
//	    algorithms      <alg> [<alg>...]
//	    public_key      <pem-or-file>
//	    hmac_secret     <secret>
//	    jwks_uri        <url>
//	    discover
//	    jwks_cache_ttl  <duration>
//	    jwks_timeout    <duration>
//	    jwks_throttle   <duration>
//	    required_scopes <scope> [<scope>...]
//	    clock_skew      <duration>
//	    token_type      at+jwt
//	    forward_token
//	    production
//	    from_env
//	    rate_limit      <max_attempts> <window> | off
//	    token_cache     <size> [<ttl>] | off
//	    static_token    <token> <client_id> [<scope>...]
//	    introspection <url> {
//	        client_id          <id>
//	        client_secret      <secret>
//	        auth_method        basic|post
//	        timeout            <duration>
//	        cache_ttl          <duration>
//	        negative_cache_ttl <duration>
//	        cache_size         <entries>
//	        issuer             <iss> [<iss>...]
//	        audience           <aud> [<aud>...]
//	        require_issuer
//	        require_audience
//	        required_scopes    <scope> [<scope>...]
//	    }
//	    resource               <uri>
//	    authorization_servers  <url...>
//	    scopes_supported       <scope...>
//	    resource_name          <text>
//	    resource_documentation <url>
//	    resource_path          <path>
//	    method_scopes          <method> <scope...>
//	    tool_scopes            <tool> <scope...>
//	    cors_preflight         on|off
//	    max_body               <size>
//	    issuer <iss> {
//	        public_key | hmac_secret | jwks_uri <...> | discover
//	        audience        <aud> [<aud>...]
//	        algorithms      <alg> [<alg>...]
//	        required_scopes <scope> [<scope>...]
//	    }
//	}
//
// One key source (public_key, hmac_secret, jwks_uri or discover) per
// policy: the top level is one policy, each issuer block another. public_key
// takes inline PEM (a heredoc works: public_key <<PEM ... PEM) or a file
// path. Secrets should come from {env.*}, {$VAR} or {file.*} placeholders.
// Values are checked here where they can be, so that `caddy adapt` and
// `caddy validate` name the Caddyfile line.
func (c *Config) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	p := parseState{start: d.Token()}
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		tok := d.Token()
		handled, err := p.policyOption(d, sub, &c.KeyConfig, &c.Audiences, &c.Algorithms, &c.RequiredScopes, &p.keyTok)
		if handled {
			if err != nil {
				return err
			}
			continue
		}
		if handled, err := c.ProtectedResource.parseOption(d, sub); handled {
			if err != nil {
				return err
			}
			continue
		}
		switch sub {
		case "issuer":
			err = c.parseIssuer(d, &p)
		case "method_scopes":
			err = parseScopeRule(d, &c.MethodScopes)
		case "tool_scopes":
			err = parseScopeRule(d, &c.ToolScopes)
		case "cors_preflight":
			var v string
			if v, err = singleArg(d); err == nil {
				if v != "on" && v != "off" {
					return d.Errf("cors_preflight: %q, want on or off", v)
				}
				on := v == "on"
				c.CORSPreflight = &on
			}
		case "max_body":
			var v string
			if v, err = singleArg(d); err == nil {
				n, perr := humanize.ParseBytes(v)
				if perr != nil || n == 0 || n > 1<<30 {
					return d.Errf("max_body: %q is not a size between 1B and 1GiB (for example 1MiB)", v)
				}
				c.MaxBody = int64(n)
			}
		case "introspection":
			p.introTok = &tok
			err = c.parseIntrospection(d)
		case "jwks_cache_ttl":
			err = parseDuration(d, &c.JWKSCacheTTL, 0)
		case "jwks_timeout":
			err = parseDuration(d, &c.JWKSTimeout, 0)
		case "jwks_throttle":
			err = parseDuration(d, &c.JWKSThrottle, 0)
		case "clock_skew":
			var skew caddy.Duration
			if err = parseDuration(d, &skew, verifiers.MaxClockSkew); err == nil {
				c.ClockSkew = &skew
			}
		case "token_type":
			var v string
			if v, err = singleArg(d); err == nil {
				if !strings.EqualFold(v, "at+jwt") {
					return d.Errf("token_type: %q not supported; the only value is at+jwt (RFC 9068)", v)
				}
				c.TokenType = "at+jwt"
			}
		case "from_env":
			if d.NextArg() {
				return d.ArgErr()
			}
			c.FromEnv = true
		case "rate_limit":
			err = c.parseRateLimit(d)
		case "token_cache":
			err = c.parseTokenCache(d)
		case "production":
			if d.NextArg() {
				return d.ArgErr()
			}
			c.Production = true
		case "forward_token":
			if d.NextArg() {
				return d.ArgErr()
			}
			c.ForwardToken = true
		case "static_token":
			if p.staticTok == nil {
				p.staticTok = &tok
			}
			args := d.RemainingArgs()
			if len(args) < 2 {
				return d.Errf("static_token: want <token> <client_id> [<scope>...]")
			}
			c.StaticTokens = append(c.StaticTokens, StaticToken{Token: args[0], ClientID: args[1], Scopes: args[2:]})
		default:
			return d.Errf("unrecognized subdirective '%s'", sub)
		}
		if err != nil {
			return err
		}
	}
	return c.checkParsed(&p)
}

// parseRateLimit reads `rate_limit <max_attempts> <window>` or `rate_limit off`.
func (c *Config) parseRateLimit(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	switch {
	case len(args) == 1 && args[0] == "off":
		c.RateLimit = &RateLimitConfig{Disabled: true}
		return nil
	case len(args) != 2:
		return d.Errf("rate_limit: want <max_attempts> <window> (for example 10 60s) or off")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 {
		return d.Errf("rate_limit: max_attempts %q is not a positive number", args[0])
	}
	win, err := caddy.ParseDuration(args[1])
	if err != nil || win <= 0 {
		return d.Errf("rate_limit: window %q is not a positive duration (for example 60s)", args[1])
	}
	c.RateLimit = &RateLimitConfig{MaxAttempts: n, Window: caddy.Duration(win)}
	return nil
}

// parseTokenCache reads `token_cache <size> [<ttl>]` or `token_cache off`.
func (c *Config) parseTokenCache(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	switch {
	case len(args) == 1 && args[0] == "off":
		c.TokenCache = &TokenCacheConfig{Disabled: true}
		return nil
	case len(args) < 1 || len(args) > 2:
		return d.Errf("token_cache: want <size> [<ttl>] (for example 10000 5m) or off")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 || n > 10_000_000 {
		return d.Errf("token_cache: size %q is not a number of tokens between 1 and 10000000", args[0])
	}
	tc := &TokenCacheConfig{Size: n}
	if len(args) == 2 {
		ttl, err := caddy.ParseDuration(args[1])
		if err != nil || ttl <= 0 {
			return d.Errf("token_cache: ttl %q is not a positive duration (for example 5m)", args[1])
		}
		tc.TTL = caddy.Duration(ttl)
	}
	c.TokenCache = tc
	return nil
}

// parseScopeRule reads `<name> <scope>...` into rules.
func parseScopeRule(d *caddyfile.Dispenser, rules *map[string][]string) error {
	sub := d.Val()
	args := d.RemainingArgs()
	if len(args) < 2 {
		return d.Errf("%s: want <name> <scope> [<scope>...]", sub)
	}
	if *rules == nil {
		*rules = map[string][]string{}
	}
	if _, dup := (*rules)[args[0]]; dup {
		return d.Errf("%s: %q is already configured", sub, args[0])
	}
	(*rules)[args[0]] = args[1:]
	return nil
}

// parseState remembers where things were written, to point errors found
// after the whole block is read at the right line.
type parseState struct {
	start     caddyfile.Token
	keyTok    *caddyfile.Token   // the top-level key source
	staticTok *caddyfile.Token   // the first static_token
	issuerTok []*caddyfile.Token // one per issuer block
	introTok  *caddyfile.Token   // the introspection block
}

// parseIntrospection reads `introspection <url> { ... }`.
func (c *Config) parseIntrospection(d *caddyfile.Dispenser) error {
	if c.Introspection != nil {
		return d.Errf("introspection: only one introspection endpoint per mcp_token")
	}
	u, err := singleArgBeforeBlock(d)
	if err != nil {
		return err
	}
	if !hasPlaceholder(u) {
		if err := verifiers.CheckURL(u, false); err != nil {
			return d.Errf("introspection: %v", err)
		}
	}
	ic := &IntrospectionConfig{URL: u}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		switch sub {
		case "client_id":
			ic.ClientID, err = singleArg(d)
		case "client_secret":
			ic.ClientSecret, err = singleArg(d)
		case "auth_method":
			if ic.AuthMethod, err = singleArg(d); err == nil && ic.AuthMethod != introspection.AuthBasic && ic.AuthMethod != introspection.AuthPost {
				return d.Errf("auth_method: %q not supported; use basic (client_secret_basic) or post (client_secret_post)", ic.AuthMethod)
			}
		case "timeout":
			err = parseDuration(d, &ic.Timeout, introspection.MaxTimeout)
		case "cache_ttl":
			var ttl caddy.Duration
			if err = parseDuration(d, &ttl, 0); err == nil {
				ic.CacheTTL = &ttl
			}
		case "negative_cache_ttl":
			err = parseDuration(d, &ic.NegativeCacheTTL, 0)
		case "cache_size":
			var v string
			if v, err = singleArg(d); err == nil {
				n, convErr := strconv.Atoi(v)
				if convErr != nil || n < 1 {
					return d.Errf("cache_size: %q is not a positive number of entries", v)
				}
				ic.CacheSize = n
			}
		case "issuer":
			ic.Issuers, err = appendArgs(d, ic.Issuers)
		case "audience":
			ic.Audiences, err = appendArgs(d, ic.Audiences)
		case "required_scopes":
			ic.RequiredScopes, err = appendArgs(d, ic.RequiredScopes)
		case "require_issuer", "require_audience":
			if d.NextArg() {
				return d.ArgErr()
			}
			if sub == "require_issuer" {
				ic.RequireIssuer = true
			} else {
				ic.RequireAudience = true
			}
		default:
			return d.Errf("introspection: unrecognized subdirective '%s'", sub)
		}
		if err != nil {
			return err
		}
	}
	c.Introspection = ic
	return nil
}

// singleArgBeforeBlock reads exactly one argument on a line that may open
// a block.
func singleArgBeforeBlock(d *caddyfile.Dispenser) (string, error) {
	args := d.RemainingArgs()
	if len(args) != 1 {
		return "", d.ArgErr()
	}
	return args[0], nil
}

// parseIssuer reads `issuer <iss>...` (accepted values for the top-level
// key source) or `issuer <iss> { ... }` (a policy of its own).
func (c *Config) parseIssuer(d *caddyfile.Dispenser, p *parseState) error {
	tok := d.Token()
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	var ic IssuerConfig
	var keyTok *caddyfile.Token
	hasBlock := false
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		hasBlock = true
		sub := d.Val()
		handled, err := p.policyOption(d, sub, &ic.KeyConfig, &ic.Audiences, &ic.Algorithms, &ic.RequiredScopes, &keyTok)
		if !handled {
			return d.Errf("issuer block: unrecognized subdirective '%s' (allowed: public_key, hmac_secret, jwks_uri, discover, audience, algorithms, required_scopes)", sub)
		}
		if err != nil {
			return err
		}
	}
	if !hasBlock {
		c.Issuers = append(c.Issuers, args...)
		return nil
	}
	if len(args) != 1 {
		return fmt.Errorf("issuer block: name exactly one issuer per block, at %s:%d", tok.File, tok.Line)
	}
	ic.Issuer = args[0]
	c.IssuerConfigs = append(c.IssuerConfigs, ic)
	p.issuerTok = append(p.issuerTok, &tok)
	return nil
}

// policyOption parses the options a policy takes both at the top level and
// in an issuer block. handled is false for any other subdirective.
func (p *parseState) policyOption(d *caddyfile.Dispenser, sub string, keys *KeyConfig,
	audiences, algorithms, scopes *[]string, keyTok **caddyfile.Token) (handled bool, err error) {
	switch sub {
	case "audience":
		*audiences, err = appendArgs(d, *audiences)
	case "required_scopes":
		*scopes, err = appendArgs(d, *scopes)
	case "algorithms":
		if *algorithms, err = appendArgs(d, *algorithms); err == nil {
			err = checkAlgorithms(d, *algorithms)
		}
	case "public_key", "hmac_secret", "jwks_uri", "discover":
		if *keyTok != nil {
			return true, d.Errf("%s: one key source per policy (public_key, hmac_secret, jwks_uri or discover); one is already set at line %d", sub, (*keyTok).Line)
		}
		tok := d.Token()
		*keyTok = &tok
		if sub == "discover" {
			if d.NextArg() {
				return true, d.ArgErr()
			}
			keys.Discover = true
			return true, nil
		}
		var v string
		if v, err = singleArg(d); err != nil {
			return true, err
		}
		switch sub {
		case "public_key":
			keys.PublicKey = v
			err = checkPublicKey(d, v)
		case "hmac_secret":
			keys.HMACSecret = v
		case "jwks_uri":
			keys.JWKSURI = v
			if !hasPlaceholder(v) {
				if uerr := verifiers.CheckURL(v, false); uerr != nil {
					err = d.Errf("jwks_uri: %v", uerr)
				}
			}
		}
	default:
		return false, nil
	}
	return true, err
}

// checkParsed builds the verifiers once with the literal values (fetching
// nothing), so that a bad combination (algorithm confusion, a short
// secret, a key that does not fit the algorithms, HMAC with a JWKS) fails
// `caddy adapt` at the line that caused it. Values behind runtime
// placeholders are checked at start instead.
func (c *Config) checkParsed(p *parseState) error {
	if c.FromEnv {
		// The rest of the configuration comes from the environment at
		// start; each value written here was checked as it was read.
		return nil
	}
	at := func(tok *caddyfile.Token, err error) error {
		if tok == nil {
			tok = &p.start
		}
		return fmt.Errorf("%s: %w, at %s:%d", p.start.Text, err, tok.File, tok.Line)
	}
	probe := *c
	probe.KeyConfig = probeKeys(c.KeyConfig)
	probe.IssuerConfigs = make([]IssuerConfig, len(c.IssuerConfigs))
	for i, ic := range c.IssuerConfigs {
		ic.KeyConfig = probeKeys(ic.KeyConfig)
		probe.IssuerConfigs[i] = ic
	}
	probe.StaticTokens = make([]StaticToken, len(c.StaticTokens))
	for i, st := range c.StaticTokens {
		if hasPlaceholder(st.Token) {
			st.Token = fmt.Sprintf("placeholder-%d", i)
		}
		probe.StaticTokens[i] = st
	}
	if ic := c.Introspection; ic != nil {
		probeIC := *ic
		if hasPlaceholder(probeIC.URL) {
			probeIC.URL = "https://placeholder.invalid/introspect"
		}
		probe.Introspection = &probeIC
	}
	repl := caddy.NewReplacer()
	noFetch := sources{
		jwks:          func(jwks.Options) (verifiers.KeySource, error) { return parseTimeKeys{}, nil },
		introspection: introspection.New, // touches no network
	}
	ps, err := probe.policies()
	if err != nil {
		return at(nil, err)
	}
	toks := append([]*caddyfile.Token{}, p.issuerTok...)
	if probe.KeyConfig.count() > 0 {
		toks = append([]*caddyfile.Token{p.keyTok}, toks...)
	}
	for i, pol := range ps {
		if _, err := probe.buildJWT(pol, repl, guards{}, noFetch); err != nil {
			return at(toks[i], err)
		}
	}
	if len(probe.StaticTokens) > 0 {
		if _, err := probe.buildStatic(repl, guards{}); err != nil {
			return at(p.staticTok, err)
		}
	}
	if probe.Introspection != nil {
		if _, err := probe.buildIntrospection(repl, guards{}, noFetch); err != nil {
			return at(p.introTok, fmt.Errorf("introspection: %w", err))
		}
	}
	if _, err := probe.buildChain(repl, guards{}, noFetch); err != nil {
		return at(nil, err) // what is left concerns the block as a whole
	}
	return nil
}

// probeKeys stands in for values that only exist at start: a placeholder
// secret becomes a long dummy (its length is checked at start), and a
// placeholder public key or JWKS URL a JWKS that holds no key (the key's
// fit to the algorithms is checked at start).
func probeKeys(k KeyConfig) KeyConfig {
	if hasPlaceholder(k.PublicKey) {
		k = KeyConfig{JWKSURI: "https://placeholder.invalid/jwks"}
	}
	if hasPlaceholder(k.HMACSecret) {
		k.HMACSecret = strings.Repeat("x", 64)
	}
	if hasPlaceholder(k.JWKSURI) {
		k.JWKSURI = "https://placeholder.invalid/jwks"
	}
	return k
}

// parseTimeKeys is the key source used while parsing: it holds no key.
type parseTimeKeys struct{}

func (parseTimeKeys) Key(context.Context, *verifiers.Algorithm, string) (any, error) {
	return nil, verifiers.ErrUnavailable
}

func hasPlaceholder(s string) bool { return strings.Contains(s, "{") }

// appendArgs reads one or more arguments onto list.
func appendArgs(d *caddyfile.Dispenser, list []string) ([]string, error) {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.ArgErr()
	}
	return append(list, args...), nil
}

// singleArg reads exactly one argument.
func singleArg(d *caddyfile.Dispenser) (string, error) {
	var v string
	if !d.AllArgs(&v) {
		return "", d.ArgErr()
	}
	return v, nil
}

func checkAlgorithms(d *caddyfile.Dispenser, algs []string) error {
	for _, a := range algs {
		if _, err := verifiers.LookupAlgorithm(a); err != nil {
			return d.Errf("algorithms: %v", err)
		}
	}
	return nil
}

func checkPublicKey(d *caddyfile.Dispenser, v string) error {
	if hasPlaceholder(v) {
		return nil
	}
	if _, err := verifiers.LoadPublicKey(v); err != nil {
		return d.Errf("public_key: %v", err)
	}
	return nil
}

// parseDuration reads one duration into dst; max, when not 0, is the
// largest value allowed. Negative durations are refused.
func parseDuration(d *caddyfile.Dispenser, dst *caddy.Duration, max time.Duration) error {
	name := d.Val()
	v, err := singleArg(d)
	if err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil {
		return d.Errf("%s: %q is not a duration (for example 60s): %v", name, v, err)
	}
	if dur < 0 || (max > 0 && dur > max) {
		if max > 0 {
			return d.Errf("%s: %s out of range (0s to %s)", name, dur, max)
		}
		return d.Errf("%s: %s must not be negative", name, dur)
	}
	*dst = caddy.Duration(dur)
	return nil
}
