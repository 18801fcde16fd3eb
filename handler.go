package mcptoken

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler is the `mcp_token` HTTP handler: it verifies the request's
// bearer token and either passes the request on, with the token's identity
// in {http.auth.user.*} placeholders, or answers itself: 401 with an RFC
// 6750 challenge for a missing or bad token, 403 insufficient_scope for a
// valid token without the required scopes, 400 invalid_request for a
// malformed Authorization header, 404 for an MCP session bound to another
// principal, and 503 when the token cannot be checked (never a pass, never
// a 401).
type Handler struct {
	module
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mcp_token",
		New: func() caddy.Module { return new(Handler) },
	}
}

// ServeHTTP implements caddyhttp.MiddlewareHandler: the request goes
// through the gate (gate.go), then on with the token's identity in
// {http.auth.user.*}, or is answered here.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	c := h.core
	if c.corsPreflight && isPreflight(r) {
		answerPreflight(w, r)
		return nil
	}
	out := c.check(w, r)
	c.setPlaceholders(r, &out)
	c.auditDecision(r, &out)
	if out.err != nil {
		c.refuse(w, r, out.err)
		return nil
	}
	vars := out.accepted.Extra.(*userVars)
	w = c.watchSession(w, r, out.session, vars.principal)
	if lw := c.filterList(w, r, out); lw != nil {
		return lw.finish(next.ServeHTTP(lw, r))
	}
	return next.ServeHTTP(w, r)
}

// UnmarshalCaddyfile sets up the handler from Caddyfile tokens; see
// parseConfig for the grammar.
func (h *Handler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	return h.Config.UnmarshalCaddyfile(d)
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
	_ caddyfile.Unmarshaler       = (*Handler)(nil)
)
