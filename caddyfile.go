package mcptoken

import (
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
	start := h.Token()
	matcherSet, err := h.ExtractMatcherSet()
	if err != nil {
		return nil, err
	}
	if err := checkCoverage(matcherSet); err != nil {
		return nil, fmt.Errorf("%w, at %s:%d", err, start.File, start.Line)
	}
	handler := new(Handler)
	if err := handler.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	if err := checkSecondDirective(h, matcherSet, start); err != nil {
		return nil, err
	}
	publish, err := checkAuthorizationServers(&handler.Config, start)
	if err != nil {
		return nil, err
	}
	if handler.ResourcePath == "" {
		handler.ResourcePath = matcherPath(matcherSet)
	}
	var routes []httpcaddyfile.ConfigValue
	if publish { // else static development tokens only: no authorization server to point to
		// One prefix route per block; the handler answers its own paths
		// and passes the rest on. With several blocks, their routes keep
		// the blocks' order (same matcher), so each answers its own URL
		// and the first the root one.
		meta := &MetadataHandler{ProtectedResource: handler.metadata(), Paths: []string{WellKnownPath}}
		switch rp := meta.configuredPath(); {
		case rp != "":
			meta.Paths = []string{WellKnownPath + rp, WellKnownPath}
		case len(matcherSet) == 0:
			// Every path is protected and names its own resource (the
			// challenge at /x points to <well-known>/x): the handler
			// answers every well-known URL, deriving the resource from
			// it. No other mcp_token can share the site (see
			// checkSecondDirective), so none is shadowed.
			meta.Paths = nil
		}
		pm, _ := json.Marshal(caddyhttp.MatchPath{WellKnownPath + "*"})
		routes = h.NewRoute(caddy.ModuleMap{"path": pm}, meta)
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
//	    jwks_file       <path>
//	    discover
//	    jwks_cache_ttl  <duration>
//	    jwks_timeout    <duration>
//	    jwks_throttle   <duration>
//	    jwks_max_wait   <duration>
//	    required_scopes <scope> [<scope>...]
//	    clock_skew      <duration>
//	    token_type      at+jwt
//	    forward_token
//	    production
//	    from_env
//	    rate_limit      <max_attempts> <window> | off
//	    token_cache     <size> [<ttl>] | off
//	    bind_sessions   on | off | <size> [<ttl>]
//	    static_token    <token> <client_id> [<scope>...]
//	    introspection <url> {
//	        client_id          <id>
//	        client_secret      <secret>
//	        auth_method        basic|post
//	        timeout            <duration>
//	        cache_ttl          <duration>
//	        negative_cache_ttl <duration>
//	        cache_size         <entries>
//	        max_in_flight      <calls>
//	        share_introspection
//	        issuer             <iss> [<iss>...]
//	        audience           <aud> [<aud>...]
//	        require_issuer
//	        require_audience   [on|off]
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
//	    prompt_scopes          <prompt> <scope...>
//	    resource_scopes        <uri> <scope...>
//	    scope_implies          <broad> <narrow> [<narrow>...]
//	    filter_lists           on|off
//	    allow_if               <cel-expression>
//	    audit
//	    cors_preflight         on|off
//	    max_body               <size>
//	    issuer <iss> {
//	        public_key | hmac_secret | jwks_uri | jwks_file <...> | discover
//	        audience        <aud> [<aud>...]
//	        algorithms      <alg> [<alg>...]
//	        required_scopes <scope> [<scope>...]
//	    }
//	}
//
// One key source (public_key, hmac_secret, jwks_uri, jwks_file or discover) per
// policy: the top level is one policy, each issuer block another. public_key
// takes inline PEM (a heredoc works: public_key <<PEM_END ... PEM_END) or a file
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
		case "scope_implies":
			err = c.parseScopeImplies(d)
		case "prompt_scopes":
			err = parseScopeRule(d, &c.PromptScopes)
		case "resource_scopes":
			err = parseScopeRule(d, &c.ResourceScopes)
		case "allow_if":
			err = c.parseAllowIf(d)
		case "audit":
			if d.NextArg() {
				return d.ArgErr()
			}
			c.Audit = true
		case "filter_lists":
			c.FilterLists, err = parseOnOff(d)
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
				if perr != nil || n == 0 || n > MaxMaxBody {
					return d.Errf("max_body: %q is not a size between 1B and 16MiB (for example 1MiB)", v)
				}
				c.MaxBody = int64(n)
			}
		case "dpop", "dpop_algorithms", "dpop_window", "dpop_nonce":
			err = c.parseDPoPOption(d, sub)
		case "mtls_bound":
			err = c.parseMTLSBound(d)
		case "introspection":
			p.introTok = &tok
			err = c.parseIntrospection(d)
		case "jwks_cache_ttl":
			err = parseDuration(d, &c.JWKSCacheTTL, 0)
		case "jwks_timeout":
			err = parseDuration(d, &c.JWKSTimeout, 0)
		case "jwks_throttle":
			err = parseDuration(d, &c.JWKSThrottle, 0)
		case "jwks_max_wait":
			err = parseDuration(d, &c.JWKSMaxWait, time.Minute)
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
		case "bind_sessions":
			err = c.parseBindSessions(d)
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
			for _, sc := range args[2:] {
				if err := checkScope(sc); err != nil {
					return d.Errf("static_token: %v", err)
				}
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

// parseBindSessions reads `bind_sessions on|off` or `bind_sessions <size> [<ttl>]`.
func (c *Config) parseBindSessions(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	switch {
	case len(args) == 1 && (args[0] == "off" || args[0] == "on"):
		c.BindSessions = &SessionBindingConfig{Disabled: args[0] == "off"}
		return nil
	case len(args) < 1 || len(args) > 2:
		return d.Errf("bind_sessions: want on, off, or <size> [<ttl>] (for example 100000 24h)")
	}
	n, err := strconv.Atoi(args[0])
	if err != nil || n < 1 || n > 10_000_000 {
		return d.Errf("bind_sessions: size %q is not a number of sessions between 1 and 10000000", args[0])
	}
	sc := &SessionBindingConfig{Size: n}
	if len(args) == 2 {
		ttl, err := caddy.ParseDuration(args[1])
		if err != nil || ttl <= 0 {
			return d.Errf("bind_sessions: ttl %q is not a positive duration (for example 24h)", args[1])
		}
		sc.TTL = caddy.Duration(ttl)
	}
	c.BindSessions = sc
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
	for _, sc := range args[1:] {
		if err := checkScope(sc); err != nil {
			return d.Errf("%s: %v", sub, err)
		}
	}
	(*rules)[args[0]] = args[1:]
	return nil
}

// parseAllowIf reads `allow_if <cel-expression>`: one argument (quote it
// with backticks, or use a heredoc), compiled and type-checked here so
// that a bad expression fails `caddy adapt` with its line.
func (c *Config) parseAllowIf(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) != 1 {
		return d.Errf("allow_if: want one CEL expression, quoted with backticks (allow_if `\"ops\" in claims.groups`), got %d arguments", len(args))
	}
	if _, _, err := compileRule(args[0]); err != nil {
		return d.Errf("allow_if: %v", err)
	}
	c.AllowIf = append(c.AllowIf, args[0])
	return nil
}
