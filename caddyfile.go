package mcptoken

import (
	"fmt"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("mcp_token", parseCaddyfile)
	httpcaddyfile.RegisterDirectiveOrder("mcp_token", httpcaddyfile.Before, "basic_auth")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	m := new(Handler)
	err := m.UnmarshalCaddyfile(h.Dispenser)
	return m, err
}

// UnmarshalCaddyfile parses the mcp_token directive:
//
//	mcp_token [<matcher>] {
//	    issuer          <iss> [<iss>...]
//	    audience        <aud> [<aud>...]
//	    algorithms      <alg> [<alg>...]
//	    public_key      <pem-or-file>
//	    hmac_secret     <secret>
//	    required_scopes <scope> [<scope>...]
//	    clock_skew      <duration>
//	    token_type      at+jwt
//	    forward_token
//	    static_token    <token> <client_id> [<scope>...]
//	}
//
// public_key takes inline PEM (a heredoc works: public_key <<PEM ... PEM)
// or a file path. Secrets should come from {env.*}, {$VAR} or {file.*}
// placeholders. Values are checked here where they can be, so that
// `caddy adapt` and `caddy validate` name the Caddyfile line.
func (c *Config) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the directive name
	start := d.Token()
	if d.NextArg() {
		return d.ArgErr()
	}
	var keyTok, staticTok *caddyfile.Token
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		sub := d.Val()
		tok := d.Token()
		var err error
		switch sub {
		case "issuer":
			c.Issuers, err = appendArgs(d, c.Issuers)
		case "audience":
			c.Audiences, err = appendArgs(d, c.Audiences)
		case "required_scopes":
			c.RequiredScopes, err = appendArgs(d, c.RequiredScopes)
		case "algorithms":
			if c.Algorithms, err = appendArgs(d, c.Algorithms); err == nil {
				err = checkAlgorithms(d, c.Algorithms)
			}
		case "public_key", "hmac_secret":
			if keyTok != nil {
				return d.Errf("%s: only one of public_key or hmac_secret, once (the key is already set at line %d)", sub, keyTok.Line)
			}
			keyTok = &tok
			var v string
			if v, err = singleArg(d); err == nil {
				if sub == "public_key" {
					c.PublicKey = v
					err = checkPublicKey(d, v)
				} else {
					c.HMACSecret = v
				}
			}
		case "clock_skew":
			err = c.parseClockSkew(d)
		case "token_type":
			var v string
			if v, err = singleArg(d); err == nil {
				if !strings.EqualFold(v, "at+jwt") {
					return d.Errf("token_type: %q not supported; the only value is at+jwt (RFC 9068)", v)
				}
				c.TokenType = "at+jwt"
			}
		case "forward_token":
			if d.NextArg() {
				return d.ArgErr()
			}
			c.ForwardToken = true
		case "static_token":
			if staticTok == nil {
				staticTok = &tok
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
	return c.checkParsed(start, keyTok, staticTok)
}

// checkParsed builds the verifiers once with the literal values, so that
// a bad combination (algorithm confusion, a short secret, a key that does
// not fit the algorithms) fails `caddy adapt` at the line that caused it.
// Values behind runtime placeholders are checked at start instead.
func (c *Config) checkParsed(start caddyfile.Token, keyTok, staticTok *caddyfile.Token) error {
	at := func(tok *caddyfile.Token, err error) error {
		if tok == nil {
			tok = &start
		}
		return fmt.Errorf("%s: %w, at %s:%d", start.Text, err, tok.File, tok.Line)
	}
	probe := *c
	if hasPlaceholder(probe.HMACSecret) {
		probe.HMACSecret = strings.Repeat("x", 64) // length is checked at start
	}
	repl := caddy.NewReplacer()
	if !hasPlaceholder(probe.PublicKey) && (probe.PublicKey != "" || probe.HMACSecret != "") {
		if _, err := probe.buildJWT(repl); err != nil {
			return at(keyTok, err)
		}
	}
	for i, st := range probe.StaticTokens {
		if hasPlaceholder(st.Token) {
			probe.StaticTokens[i].Token = fmt.Sprintf("placeholder-%d", i)
		}
	}
	if _, err := probe.buildStatic(repl, false); len(probe.StaticTokens) > 0 && err != nil {
		return at(staticTok, err)
	}
	if hasPlaceholder(probe.PublicKey) {
		return nil
	}
	if _, err := probe.buildChain(repl, false); err != nil {
		return at(nil, err) // what is left: the block as a whole
	}
	return nil
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

func (c *Config) parseClockSkew(d *caddyfile.Dispenser) error {
	v, err := singleArg(d)
	if err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(v)
	if err != nil {
		return d.Errf("clock_skew: %q is not a duration (for example 60s): %v", v, err)
	}
	if dur < 0 || dur > verifiers.MaxClockSkew {
		return d.Errf("clock_skew: %s out of range (0s to %s)", dur, verifiers.MaxClockSkew)
	}
	cd := caddy.Duration(dur)
	c.ClockSkew = &cd
	return nil
}
