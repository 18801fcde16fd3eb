package mcptoken

import (
	"cmp"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// Finding every mcp_token of a config, named by site and path in Caddyfile order.

// mcpTokenConfig is one mcp_token handler or provider found in a config,
// with where it sits.
type mcpTokenConfig struct {
	raw      json.RawMessage
	provider bool
	server   string
	listen   []string
	hosts    []string
	paths    []string // path matchers from the outermost route in
	site     string   // the Caddyfile site address, when known
}

// path is the innermost path matcher, or "*".
func (m *mcpTokenConfig) path() string {
	if len(m.paths) == 0 {
		return "*"
	}
	return m.paths[len(m.paths)-1]
}

// siteLabel is the Caddyfile site address, else the hosts and listener.
func (m *mcpTokenConfig) siteLabel() string {
	if m.site != "" {
		return m.site
	}
	where := strings.Join(m.listen, " ")
	if len(m.hosts) > 0 {
		return strings.Join(m.hosts, ", ") + " (" + where + ")"
	}
	return m.server + " (" + where + ")"
}

// findMCPTokenConfigs returns every mcp_token handler and provider in the
// HTTP servers of a Caddy JSON document, in route order, servers by name.
func findMCPTokenConfigs(doc any) []*mcpTokenConfig {
	servers, _ := dig(doc, "apps", "http", "servers").(map[string]any)
	names := slices.SortedFunc(maps.Keys(servers), naturalLess)
	var out []*mcpTokenConfig
	for _, name := range names {
		srv, _ := servers[name].(map[string]any)
		var listen []string
		for _, l := range asSlice(srv["listen"]) {
			if s, ok := l.(string); ok {
				listen = append(listen, s)
			}
		}
		base := mcpTokenConfig{server: name, listen: listen}
		walkRoutes(asSlice(srv["routes"]), base, &out)
		walkRoutes(asSlice(dig(srv, "errors", "routes")), base, &out)
	}
	return out
}

func walkRoutes(routes []any, at mcpTokenConfig, out *[]*mcpTokenConfig) {
	for _, r := range routes {
		route, _ := r.(map[string]any)
		here := at
		for _, set := range asSlice(route["match"]) {
			m, _ := set.(map[string]any)
			if hosts := strings.Fields(joinStrings(m["host"])); len(hosts) > 0 {
				here.hosts = hosts
			}
			if p := joinStrings(m["path"]); p != "" {
				here.paths = append(slices.Clip(here.paths), p)
			}
		}
		for _, h := range asSlice(route["handle"]) {
			handler, _ := h.(map[string]any)
			switch handler["handler"] {
			case "mcp_token":
				found := here
				found.raw, _ = json.Marshal(handler)
				*out = append(*out, &found)
			case "authentication":
				if p, ok := dig(handler, "providers", "mcp_token").(map[string]any); ok {
					found := here
					found.provider = true
					found.raw, _ = json.Marshal(p)
					*out = append(*out, &found)
				}
			case "subroute":
				walkRoutes(asSlice(handler["routes"]), here, out)
			}
		}
	}
}

func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

func joinStrings(v any) string {
	var s []string
	for _, e := range asSlice(v) {
		if str, ok := e.(string); ok {
			s = append(s, str)
		}
	}
	return strings.Join(s, " ")
}

// naturalLess orders srv2 before srv10.
func naturalLess(a, b string) int {
	ta, tb := strings.TrimRight(a, "0123456789"), strings.TrimRight(b, "0123456789")
	if ta == tb {
		na, _ := strconv.Atoi(a[len(ta):])
		nb, _ := strconv.Atoi(b[len(tb):])
		if na != nb {
			return cmp.Compare(na, nb)
		}
	}
	return strings.Compare(a, b)
}

// caddyfileSite is one site block of a Caddyfile: its addresses and the
// path each of its mcp_token directives applies to, in order.
type caddyfileSite struct {
	label string
	addrs []httpcaddyfile.Address
	paths []string // per mcp_token directive: its path matcher or an enclosing block's; "" unknown
}

// caddyfileSites lists a Caddyfile's site blocks in order.
func caddyfileSites(filename string, body []byte) ([]caddyfileSite, error) {
	blocks, err := caddyfile.Parse(filename, body)
	if err != nil {
		return nil, err
	}
	var sites []caddyfileSite
	for _, b := range blocks {
		if len(b.Keys) == 0 || b.IsNamedRoute || strings.HasPrefix(b.Keys[0].Text, "(") {
			continue // global options, snippets, named routes
		}
		site := caddyfileSite{label: strings.Join(b.GetKeysText(), ", ")}
		for _, k := range b.Keys {
			if a, err := httpcaddyfile.ParseAddress(k.Text); err == nil {
				site.addrs = append(site.addrs, a)
			}
		}
		for _, seg := range b.Segments {
			site.paths = append(site.paths, directivePaths(seg)...)
		}
		sites = append(sites, site)
	}
	return sites, nil
}

// directivePaths finds the mcp_token directives in a segment (also nested
// in route, handle and similar blocks) and the path matcher of each: its
// own argument, else the path of the innermost enclosing block.
func directivePaths(seg caddyfile.Segment) []string {
	var out []string
	var enclosing []string
	lineStart := 0
	for i, tok := range seg {
		if i == 0 || tok.Line != seg[i-1].Line || tok.File != seg[i-1].File {
			lineStart = i
		}
		switch tok.Text {
		case "{":
			p := ""
			if lineStart+1 < i && strings.HasPrefix(seg[lineStart+1].Text, "/") {
				p = seg[lineStart+1].Text
			}
			enclosing = append(enclosing, p)
		case "}":
			if len(enclosing) > 0 {
				enclosing = enclosing[:len(enclosing)-1]
			}
		case "mcp_token":
			if i != lineStart {
				continue
			}
			p := ""
			if i+1 < len(seg) && seg[i+1].Line == tok.Line && seg[i+1].Text != "{" {
				p = seg[i+1].Text
			} else {
				for j := len(enclosing) - 1; j >= 0 && p == ""; j-- {
					p = enclosing[j]
				}
			}
			out = append(out, p)
		}
	}
	return out
}

// orderByCaddyfile names each config by its site block and sorts them in
// Caddyfile order: by site block, then by directive where the path tells
// which one it is (the adapter sorts sites and routes by specificity).
func orderByCaddyfile(found []*mcpTokenConfig, sites []caddyfileSite) {
	type rank struct{ site, directive, seq int }
	ranks := map[*mcpTokenConfig]rank{}
	used := map[[2]int]bool{}
	for seq, f := range found {
		r := rank{len(sites), 1 << 30, seq}
		for si, s := range sites {
			if !s.matches(f) {
				continue
			}
			f.site, r.site = s.label, si
			for di, p := range s.paths {
				if p != "" && p == f.path() && !used[[2]int{si, di}] {
					used[[2]int{si, di}] = true
					r.directive = di
					break
				}
			}
			break
		}
		ranks[f] = r
	}
	slices.SortStableFunc(found, func(a, b *mcpTokenConfig) int {
		ra, rb := ranks[a], ranks[b]
		return cmp.Or(cmp.Compare(ra.site, rb.site), cmp.Compare(ra.directive, rb.directive), cmp.Compare(ra.seq, rb.seq))
	})
}

// matches reports whether a config sits in this site: a host of the site
// among the route's hosts (or neither has one), on the site's port if it
// names one.
func (s caddyfileSite) matches(f *mcpTokenConfig) bool {
	for _, a := range s.addrs {
		host := strings.ToLower(a.Host)
		if !(host == "" && len(f.hosts) == 0) && !slices.ContainsFunc(f.hosts, func(h string) bool { return strings.EqualFold(h, host) }) {
			continue
		}
		if a.Port != "" && !slices.ContainsFunc(f.listen, func(l string) bool { return strings.HasSuffix(l, ":"+a.Port) }) {
			continue
		}
		return true
	}
	return false
}

// verifyWithConfigs provisions each config and verifies the token with
// it, as a request would.
func verifyWithConfigs(ctx caddy.Context, configs []*mcpTokenConfig, token string, timeout time.Duration) []verifyResult {
	var results []verifyResult
	for _, f := range configs {
		r := verifyResult{Site: f.siteLabel(), Path: f.path(), Provider: f.provider}
		var cfg Config
		if err := json.Unmarshal(f.raw, &cfg); err != nil {
			r.ConfigError = err.Error()
			results = append(results, r)
			continue
		}
		c := &core{localOnly: true} // no global app here: nothing shared
		if err := cfg.provision(ctx, c); err != nil {
			r.ConfigError = err.Error()
			_ = c.release()
			results = append(results, r)
			continue
		}
		deadline := time.Now().Add(timeout)
		var tok *verifiers.AccessToken
		var err error
		for {
			tok, r.Verifier, err = c.verify(nil, token)
			if !errors.Is(err, verifiers.ErrUnavailable) || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond) // remote keys still loading
		}
		_ = c.release()
		if err != nil {
			out := verifiers.Classify(err)
			r.Status, r.Reason, r.Description, r.Detail = out.Status, out.Reason, out.Description, err.Error()
		} else {
			r.Accepted = true
			r.Identity = &verifyIdentity{ClientID: tok.ClientID, Subject: tok.Subject, Issuer: tok.Issuer,
				Audience: append([]string{}, tok.Audience...), Scopes: append([]string{}, tok.Scopes...), KeyID: tok.KeyID}
			if !tok.ExpiresAt.IsZero() {
				r.Identity.Expires = tok.ExpiresAt.UTC().Format(time.RFC3339)
			}
		}
		results = append(results, r)
	}
	return results
}
