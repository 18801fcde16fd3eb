package mcptoken

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// Two mistakes a new user makes with discovery, caught when the Caddyfile
// is adapted, with the line and the fix.

// checkAuthorizationServers: RFC 9728 §2 and MCP authorization ("Protected
// Resource Metadata Discovery Requirements": the document MUST include
// authorization_servers with at least one server) make a metadata document
// without an authorization server useless to a client, which then has
// nowhere to get a token. publish is false for a configuration of static
// development tokens only: it has no authorization server by nature, so
// the directive publishes no metadata for it instead.
func checkAuthorizationServers(cfg *Config, at caddyfile.Token) (publish bool, err error) {
	if cfg.FromEnv || len(cfg.AuthorizationServers) > 0 || len(cfg.Issuers) > 0 || len(cfg.IssuerConfigs) > 0 ||
		(cfg.Introspection != nil && len(cfg.Introspection.Issuers) > 0) {
		return true, nil // issuers behind placeholders count: they are resolved at start
	}
	if cfg.KeyConfig.count() == 0 && cfg.Introspection == nil {
		return false, nil // static tokens only
	}
	return false, fmt.Errorf("%s: the protected-resource metadata it publishes must name the authorization server clients get tokens from (RFC 9728, MCP authorization): "+
		"add `issuer <url>` (the iss of your tokens, also checked on every token) or `authorization_servers <url>`, at %s:%d", at.Text, at.File, at.Line)
}

// stateKey is where the mcp_token blocks already seen are kept in the
// Caddyfile adapter's block state.
const stateKey = "mcp_token.routes"

// checkSecondDirective refuses a second mcp_token whose requests overlap
// an earlier one's in the same site (the same matcher, or, in the same
// block, either without one; under an enclosing block's mcp_token without
// matcher, any). The first removes Authorization from the requests it
// accepts, so the second would see no token and answer 401 to everyone:
// several issuers go in `issuer <iss> { ... }` blocks of one mcp_token.
// Blocks nested in handle/route see the mcp_token of the blocks around
// them (Caddy's BlockState propagates down), not their siblings'; a
// nested block written before the enclosing mcp_token is not seen.
func checkSecondDirective(h httpcaddyfile.Helper, matcher caddy.ModuleMap, at caddyfile.Token) error {
	site, ok := siteKey(h)
	if !ok {
		return nil // cannot tell sites apart: do not guess
	}
	key := "all"
	if len(matcher) > 0 {
		raw, _ := json.Marshal(matcher)
		key = string(raw)
	}
	block := reflect.ValueOf(h.BlockState).Pointer() // each handle/route block has its own map
	seen, _ := h.BlockState[stateKey].(map[string]seenDirective)
	for k, prev := range seen {
		s, m, _ := cutKey(k)
		if s != site {
			continue
		}
		sameBlock := prev.block == block
		if m == key || m == "all" || (sameBlock && key == "all") {
			return fmt.Errorf("%s: a second mcp_token for the requests of the one at %s:%d: the first removes the token from the request, so this one would answer 401 to every request. "+
				"To accept tokens from several issuers, use one mcp_token with an `issuer <iss> { ... }` block per issuer, at %s:%d",
				at.Text, prev.at.File, prev.at.Line, at.File, at.Line)
		}
	}
	next := make(map[string]seenDirective, len(seen)+1)
	for k, v := range seen {
		next[k] = v // a copy: enclosing blocks share the map seen
	}
	next[site+"\x00"+key] = seenDirective{at: at, block: block}
	h.BlockState[stateKey] = next
	return nil
}

// seenDirective is an mcp_token already adapted: where, and in which block.
type seenDirective struct {
	at    caddyfile.Token
	block uintptr
}

func cutKey(k string) (site, matcher string, ok bool) {
	for i := 0; i < len(k); i++ {
		if k[i] == 0 {
			return k[:i], k[i+1:], true
		}
	}
	return k, "", false
}

// siteKey names the server block being adapted: the position of its first
// address. The adapter's top-level BlockState is shared by every site of
// the Caddyfile, and the Helper does not export its block, so it is read
// by reflection (read-only); ok is false if Caddy's Helper ever changes.
func siteKey(h httpcaddyfile.Helper) (key string, ok bool) {
	pb := reflect.ValueOf(h).FieldByName("parentBlock")
	if !pb.IsValid() || pb.Kind() != reflect.Struct {
		return "", false
	}
	keys := pb.FieldByName("Keys")
	if !keys.IsValid() || keys.Kind() != reflect.Slice || keys.Len() == 0 {
		return "", false
	}
	k := keys.Index(0)
	file, line := k.FieldByName("File"), k.FieldByName("Line")
	if file.Kind() != reflect.String || line.Kind() != reflect.Int {
		return "", false
	}
	return fmt.Sprintf("%s:%d:%s", file.String(), line.Int(), k.FieldByName("Text").String()), true
}

// Provision warns when the metadata names no authorization server: the
// Caddyfile directive refuses that configuration, but a JSON route to
// mcp_token_metadata (or issuers that only from_env supplies) can still
// publish such a document, which no client can use.
//
// Under ENVIRONMENT=production it refuses metadata without resource: it
// would be derived from the request's Host header.
func (m *MetadataHandler) Provision(ctx caddy.Context) error {
	if err := (guards{production: verifiers.IsProduction()}).resource(m.Resource); err != nil {
		return err
	}
	if len(m.AuthorizationServers) == 0 {
		ctx.Logger().Warn("protected-resource metadata names no authorization server: MCP clients cannot discover where to get a token; set authorization_servers")
	}
	if m.Paths != nil {
		m.match = slices.Clone(caddyhttp.MatchPath(m.Paths))
		if err := m.match.Provision(ctx); err != nil {
			return err
		}
	}
	m.register() // see metadataserved.go
	return nil
}

// Interface guard
var _ caddy.Provisioner = (*MetadataHandler)(nil)
