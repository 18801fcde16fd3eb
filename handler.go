package mcptoken

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler is the `mcp_token` HTTP handler: it verifies the request's
// bearer token and either passes the request on, with the token's identity
// in {http.auth.user.*} placeholders, or answers itself: 401 with an RFC
// 6750 challenge for a missing or bad token, 403 insufficient_scope for a
// valid token without the required scopes, 400 invalid_request for a
// malformed Authorization header, and 503 when the token cannot be checked
// (never a pass, never a 401).
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

// ServeHTTP implements caddyhttp.MiddlewareHandler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	c := h.core
	if c.corsPreflight && isPreflight(r) {
		return next.ServeHTTP(w, r)
	}
	tok, kind, took, err := c.check(r)
	c.metrics.observe(kind, err, took > 0, took)
	if err != nil {
		c.refuse(w, r, err)
		return nil
	}
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	repl.Set("http.auth.user.id", tok.ClientID)
	for k, v := range userMetadata(tok) {
		repl.Set("http.auth.user."+k, v)
	}
	return next.ServeHTTP(w, r)
}

// check runs every rule on the request: no token in the query, a valid
// bearer token, then the scopes this request needs (global, per method,
// per tool) with the MCP headers agreeing with the body.
func (c *core) check(r *http.Request) (*verifiers.AccessToken, string, time.Duration, error) {
	if strings.Contains(r.URL.RawQuery, "access_token") && r.URL.Query().Has("access_token") {
		return nil, verifiers.KindNone, 0, fmt.Errorf("%w", verifiers.ErrTokenInQuery)
	}
	var addr string
	if c.limiter != nil {
		addr = clientAddress(r)
		if limited, retry := c.limiter.Limited(addr); limited {
			return nil, verifiers.KindNone, 0, &rateLimitError{retry: retry}
		}
	}
	tok, kind, took, err := c.authenticate(r)
	if err != nil {
		if c.limiter != nil && countsAsFailure(err) {
			c.limiter.Fail(addr)
		}
		return tok, kind, took, err
	}
	needed, err := c.inspect(r)
	if err == nil && len(needed) > len(c.requiredScopes) {
		err = verifiers.RequireScopes(tok, needed)
	}
	return tok, kind, took, err
}

// countsAsFailure: a presented token refused as invalid. A missing token
// (MCP discovery starts that way), a missing scope and a technical failure
// do not count.
func countsAsFailure(err error) bool {
	out := verifiers.Classify(err)
	return out.Status == http.StatusUnauthorized && out.Code == "invalid_token"
}

// rateLimitError is ErrRateLimited with the time to wait.
type rateLimitError struct{ retry time.Duration }

func (e *rateLimitError) Error() string        { return fmt.Sprintf("rate limited for %s", e.retry) }
func (e *rateLimitError) Is(target error) bool { return target == verifiers.ErrRateLimited }

// clientAddress is Caddy's client IP (which honours trusted_proxies), else
// the connection's remote address.
func clientAddress(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// isPreflight reports a CORS preflight request.
func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" &&
		r.Header.Get("Access-Control-Request-Method") != ""
}

// errorBody is the JSON body of a refusal.
type errorBody struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description,omitempty"`
}

// refuse writes the answer to a refused request: the one place where a
// verification outcome becomes an HTTP response.
func (c *core) refuse(w http.ResponseWriter, r *http.Request, err error) {
	out := verifiers.Classify(err)
	hdr := w.Header()
	switch {
	case out.Status == http.StatusUnauthorized || out.Status == http.StatusForbidden || out.Code == "invalid_request":
		hdr.Set("WWW-Authenticate", c.challenge(r, err))
	case out.Status == http.StatusServiceUnavailable:
		hdr.Set("Retry-After", strconv.Itoa(5))
	case out.Status == http.StatusTooManyRequests:
		var rl *rateLimitError
		if errors.As(err, &rl) {
			hdr.Set("Retry-After", strconv.Itoa(int(math.Ceil(rl.retry.Seconds()))))
		}
	}
	if r.Header.Get("Origin") != "" {
		// Browser clients must be able to read the challenge.
		hdr.Set("Access-Control-Allow-Origin", "*")
		hdr.Set("Access-Control-Expose-Headers", "WWW-Authenticate")
	}
	code := out.Code
	if code == "" {
		code = out.Reason
	}
	body, _ := json.Marshal(errorBody{Error: code, ErrorDescription: out.Description})
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(out.Status)
	_, _ = w.Write(body)
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
