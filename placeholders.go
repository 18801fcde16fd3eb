package mcptoken

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/caddyserver/caddy/v2"

	"github.com/mcptoken/caddy-mcp-token/internal/mcprpc"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// Placeholders the module serves, all lazily (a Replacer map function, so
// a request that uses none pays nothing), all set (empty when absent:
// Caddy would forward an unset placeholder's literal text):
//
//	{http.auth.user.id, client_id, sub, iss, aud, scopes, exp, kid}
//	{http.auth.user.claim.<name>}  any claim, or a dotted path into objects
//	{http.auth.result}             accepted, or the refusal reason (metrics' label)
//	{http.auth.mcp.method, name, protocol_version}  when the body was inspected
//
// The identity placeholders are set on a refused request too when its
// token verified (a later rule refused it), so access logs can say who was
// refused and why.

const (
	userPrefix  = "http.auth.user."
	claimPrefix = "http.auth.user.claim."
	mcpPrefix   = "http.auth.mcp."
	resultKey   = "http.auth.result"
)

// get answers the {http.auth.user.*} placeholders of the token, the
// result of a request that passed, and empty MCP placeholders (a request
// whose body was inspected has its own, served first: requestVars).
func (v *userVars) get(key string) (any, bool) {
	if !strings.HasPrefix(key, "http.auth.") {
		return nil, false
	}
	if strings.HasPrefix(key, claimPrefix) {
		return claimPlaceholder(v.tok.Claims, key[len(claimPrefix):]), true
	}
	for i, name := range userVarNames {
		if key == name {
			return v.values[i], true
		}
	}
	switch {
	case key == resultKey:
		return verifiers.Accepted.Reason, true
	case strings.HasPrefix(key, mcpPrefix):
		return "", true
	}
	return nil, false
}

// claimPlaceholder is the text of a claim for a placeholder: the top-level
// claim named path, else the dotted path into objects; strings as they
// are, numbers and booleans in their JSON text, arrays of strings joined
// by a comma, anything else as compact JSON, absent (or null) as "".
// Control characters become spaces, so no claim can inject a header line.
func claimPlaceholder(claims map[string]any, path string) string {
	v, ok := claims[path]
	if !ok {
		v, ok = claimPath(claims, path)
	}
	if !ok {
		return ""
	}
	return headerSafe(claimText(v))
}

// claimPath follows a dotted path through nested objects.
func claimPath(claims map[string]any, path string) (any, bool) {
	var cur any = claims
	for part := range strings.SplitSeq(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	return cur, true
}

func claimText(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case []string:
		return strings.Join(v, ",")
	case []any:
		parts := make([]string, 0, len(v))
		for _, e := range v {
			s, ok := e.(string)
			if !ok {
				return jsonText(v)
			}
			parts = append(parts, s)
		}
		return strings.Join(parts, ",")
	}
	return jsonText(v)
}

func jsonText(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

// headerSafe replaces control characters (C0, DEL, C1) by spaces: header
// values must not carry CR or LF, and a backend should not see the others.
func headerSafe(s string) string {
	clean := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f || c == 0xc2 { // 0xc2: first byte of U+0080..U+00BF
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r <= 0x9f) {
			return ' '
		}
		return r
	}, s)
}

// requestVars are the placeholders of one request that are not the
// token's: the result and what the body said. Served before the token's.
type requestVars struct {
	result string
	user   *userVars     // nil when no token verified
	calls  []mcprpc.Call // nil when the body was not inspected
	header http.Header
}

func (v *requestVars) get(key string) (any, bool) {
	switch key {
	case resultKey:
		return v.result, true
	case mcpPrefix + "method":
		return headerSafe(v.join(func(c mcprpc.Call) string { return c.Method })), true
	case mcpPrefix + "name":
		return headerSafe(v.join(func(c mcprpc.Call) string { return c.Name })), true
	case mcpPrefix + "protocol_version":
		if v.calls == nil {
			return "", true
		}
		return headerSafe(v.header.Get("Mcp-Protocol-Version")), true
	}
	if v.user != nil {
		return v.user.get(key)
	}
	if strings.HasPrefix(key, userPrefix) || strings.HasPrefix(key, mcpPrefix) {
		return "", true
	}
	return nil, false
}

// join is the calls' values, comma-separated (a batch has several).
func (v *requestVars) join(f func(mcprpc.Call) string) string {
	switch len(v.calls) {
	case 0:
		return ""
	case 1:
		return f(v.calls[0])
	}
	parts := make([]string, len(v.calls))
	for i, c := range v.calls {
		parts[i] = f(c)
	}
	return strings.Join(parts, ",")
}

// setPlaceholders serves the placeholders of a request the handler
// judged, accepted or refused: the one place they are set. An accepted
// request whose body was not inspected costs one map function and no
// allocation.
func (c *core) setPlaceholders(r *http.Request, out *outcome) {
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return
	}
	user := out.user()
	if out.err == nil && out.calls == nil {
		user.set(repl)
		return
	}
	v := &requestVars{result: verifiers.Classify(out.err).Reason, user: user, calls: out.calls, header: r.Header}
	repl.Map(v.get)
}

// user is the placeholder values of the token that verified, accepted or
// refused by a later rule; nil when none did.
func (o *outcome) user() *userVars {
	switch {
	case o.accepted != nil:
		return o.accepted.Extra.(*userVars)
	case o.tok != nil:
		return newUserVars(o.tok, o.token)
	}
	return nil
}

// userVarNames are the {http.auth.user.*} placeholders of an accepted
// token, in the order of userVars.values.
var userVarNames = [...]string{
	"http.auth.user.id", "http.auth.user.client_id", "http.auth.user.sub", "http.auth.user.iss",
	"http.auth.user.aud", "http.auth.user.scopes", "http.auth.user.exp", "http.auth.user.kid",
}

// userVars are a token's placeholder values, computed once per token and
// kept with it in the token cache, so a hit builds nothing.
type userVars struct {
	values    [len(userVarNames)]any
	principal [32]byte // who the token speaks for (session binding)
	tok       *verifiers.AccessToken
	lookup    caddy.ReplacerFunc // v.get, made once so that serving it allocates nothing
	meta      func() map[string]string
}

func newUserVars(tok *verifiers.AccessToken, token string) *userVars {
	v := &userVars{principal: principalOf(tok, token), tok: tok}
	exp := ""
	if !tok.ExpiresAt.IsZero() {
		exp = strconv.FormatInt(tok.ExpiresAt.Unix(), 10)
	}
	v.values = [len(userVarNames)]any{tok.ClientID, tok.ClientID, tok.Subject, tok.Issuer,
		strings.Join(tok.Audience, " "), strings.Join(tok.Scopes, " "), exp, tok.KeyID}
	v.lookup = v.get
	v.meta = sync.OnceValue(v.userMetadata)
	return v
}

// set serves the values, and every claim, from the request's replacer
// (placeholders.go): lazily, so a request that uses none pays nothing.
func (v *userVars) set(repl *caddy.Replacer) {
	repl.Map(v.lookup)
}

// userMetadata is the identity the provider hands Caddy as
// caddyauth.User.Metadata, exposed as {http.auth.user.*}: made once per
// token when the provider first asks (the handler serves v.values). Every
// key is always set (empty when absent): Caddy would otherwise forward an
// unset placeholder's literal text. Read-only once made.
func (v *userVars) userMetadata() map[string]string {
	meta := make(map[string]string, len(userVarNames)-1)
	for i, name := range userVarNames[1:] {
		meta[strings.TrimPrefix(name, "http.auth.user.")] = v.values[i+1].(string)
	}
	return meta
}
