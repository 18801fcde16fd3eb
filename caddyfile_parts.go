package mcptoken

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/mcptoken/caddy-mcp-token/introspection"
	"github.com/mcptoken/caddy-mcp-token/jwks"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// The parts of the mcp_token grammar below the top level (issuer and
// introspection blocks), the whole-block checks run after parsing, and the
// small argument readers. The grammar itself is on Config.UnmarshalCaddyfile.

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
		case "max_in_flight":
			var v string
			if v, err = singleArg(d); err == nil {
				n, convErr := strconv.Atoi(v)
				if convErr != nil || n < 1 || n > 10000 {
					return d.Errf("max_in_flight: %q is not a number of calls between 1 and 10000", v)
				}
				ic.MaxInFlight = n
			}
		case "issuer":
			ic.Issuers, err = appendArgs(d, ic.Issuers)
		case "audience":
			ic.Audiences, err = appendArgs(d, ic.Audiences)
		case "required_scopes":
			ic.RequiredScopes, err = appendScopes(d, ic.RequiredScopes)
		case "require_issuer":
			if d.NextArg() {
				return d.ArgErr()
			}
			ic.RequireIssuer = true
		case "share_introspection":
			if d.NextArg() {
				return d.ArgErr()
			}
			ic.ShareIntrospection = true
		case "require_audience":
			on := true
			if d.NextArg() {
				if v := d.Val(); v == "off" || v == "on" {
					on = v == "on"
				} else {
					return d.Errf("require_audience: %q, want on or off", v)
				}
				if d.NextArg() {
					return d.ArgErr()
				}
			}
			ic.RequireAudience = &on
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
			return d.Errf("issuer block: unrecognized subdirective '%s' (allowed: public_key, hmac_secret, jwks_uri, jwks_file, discover, audience, algorithms, required_scopes)", sub)
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
		*scopes, err = appendScopes(d, *scopes)
	case "algorithms":
		if *algorithms, err = appendArgs(d, *algorithms); err == nil {
			err = checkAlgorithms(d, *algorithms)
		}
	case "public_key", "hmac_secret", "jwks_uri", "jwks_file", "discover":
		if *keyTok != nil {
			return true, d.Errf("%s: one key source per policy (public_key, hmac_secret, jwks_uri, jwks_file or discover); one is already set at line %d", sub, (*keyTok).Line)
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
		case "jwks_file":
			keys.JWKSFile = v
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
		if hasPlaceholder(probeIC.ClientID) {
			probeIC.ClientID = "placeholder-client"
		}
		if hasPlaceholder(probeIC.ClientSecret) {
			probeIC.ClientSecret = "placeholder-secret" // its value is checked at start
		}
		probeIC.ShareIntrospection = false // the global store is checked at start
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
	if hasPlaceholder(k.JWKSFile) {
		k.JWKSFile = probeKeyFile
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

// appendScopes reads one or more scopes onto list, refusing a comma (see
// checkScope).
func appendScopes(d *caddyfile.Dispenser, list []string) ([]string, error) {
	sub := d.Val()
	args := d.RemainingArgs()
	if len(args) == 0 {
		return nil, d.ArgErr()
	}
	for _, a := range args {
		if err := checkScope(a); err != nil {
			return nil, d.Errf("%s: %v", sub, err)
		}
	}
	return append(list, args...), nil
}

// checkScope refuses a scope with a comma. RFC 6749 §3.3 separates scopes
// with spaces and allows a comma inside one, but "mcp:read,mcp:write" is
// a list written the FastMCP-environment way, not a scope any
// authorization server issues: taken literally it would never match.
func checkScope(s string) error {
	if strings.Contains(s, ",") {
		return fmt.Errorf("scope %q contains a comma: scopes are space-separated (write %s)", s, strings.Join(strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' }), " "))
	}
	if s == "" || strings.ContainsFunc(s, func(r rune) bool { return r <= ' ' || r == '"' || r == '\\' || r >= 0x7f }) {
		return fmt.Errorf("scope %q is not a scope token (RFC 6749 §3.3: printable ASCII without space, quote or backslash)", s)
	}
	return nil
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
