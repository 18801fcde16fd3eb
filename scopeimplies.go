package mcptoken

import (
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// scopeHierarchy builds scope_implies; nil when there is none. A cycle
// names the scopes that form it.
func (cfg *Config) scopeHierarchy() (*verifiers.ScopeHierarchy, error) {
	if len(cfg.ScopeImplies) == 0 {
		return nil, nil
	}
	h := new(verifiers.ScopeHierarchy)
	for _, broad := range slices.Sorted(maps.Keys(cfg.ScopeImplies)) {
		if err := h.Add(broad, cfg.ScopeImplies[broad]...); err != nil {
			return nil, fmt.Errorf("scope_implies: %w", err)
		}
	}
	return h, nil
}

// parseScopeImplies reads `scope_implies <broad> <narrow> [<narrow>...]`.
// Lines add up; the line that would close a cycle is the one reported.
func (c *Config) parseScopeImplies(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) < 2 {
		return d.Errf("scope_implies: want <broad> <narrow> [<narrow>...] (for example scope_implies mcp:admin mcp:write mcp:read)")
	}
	h, err := c.scopeHierarchy() // the lines so far, which have no cycle
	if err != nil {
		return d.Err(err.Error())
	}
	if h == nil {
		h = new(verifiers.ScopeHierarchy)
	}
	if err := h.Add(args[0], args[1:]...); err != nil {
		var ce *verifiers.CycleError
		if errors.As(err, &ce) {
			return d.Errf("scope_implies: this line closes a cycle (%s); a broader scope implies narrower ones, never the reverse", strings.Join(ce.Path, " → "))
		}
		return d.Errf("scope_implies: %v", err)
	}
	if c.ScopeImplies == nil {
		c.ScopeImplies = map[string][]string{}
	}
	for _, n := range args[1:] {
		if !slices.Contains(c.ScopeImplies[args[0]], n) {
			c.ScopeImplies[args[0]] = append(c.ScopeImplies[args[0]], n)
		}
	}
	return nil
}

// widenScopeError: a token refused by the verifiers for a scope the
// configuration requires (global, issuer, introspection) gets a challenge
// that also names what this request needs (method, tool, prompt, resource
// scopes), so that one step-up is enough. MCP 2026-07-28 basic/
// authorization, "Runtime Insufficient Scope Errors" (SEP-2350, aligned
// with RFC 6750 §3.1): the scope parameter names the scopes the current
// operation needs, all of them. When the body cannot be read, the challenge stays.
func (c *core) widenScopeError(w http.ResponseWriter, r *http.Request, out *outcome) {
	var se *verifiers.ScopeError
	if out.tok == nil || c.rules.empty() || !errors.As(out.err, &se) {
		return
	}
	needed, _, err := c.inspect(w, r)
	if err != nil {
		return
	}
	all := slices.Clone(se.Required)
	for _, s := range needed {
		if !slices.Contains(all, s) {
			all = append(all, s)
		}
	}
	if len(all) > len(se.Required) {
		out.err = verifiers.RequireScopes(out.tok, all)
	}
}
