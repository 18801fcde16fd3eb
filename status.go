package mcptoken

import (
	"cmp"
	"encoding/json"
	"errors"
	"net/http"
	"slices"

	"github.com/caddyserver/caddy/v2"
	"github.com/mcptoken/caddy-mcp-token/internal/limiter"
	"github.com/mcptoken/caddy-mcp-token/introspection"
	"github.com/mcptoken/caddy-mcp-token/jwks"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

func init() {
	caddy.RegisterModule(AdminStatus{})
}

// StatusPath is the admin API route of the status view.
const StatusPath = "/mcp_token/status"

// AdminStatus is the `admin.api.mcp_token` admin module: it serves
// GET /mcp_token/status on Caddy's admin endpoint, a JSON view for
// operators of the shared state every mcp_token in the running config
// uses: key sources (kids loaded, last successful fetch, last error,
// failure streak), introspection endpoints, verified-token caches and
// failed-attempt limiters. It never shows a token, a secret, a client
// address or a URL's userinfo or query values. Caddy registers every
// admin.api module on its own: nothing to configure.
type AdminStatus struct{}

// CaddyModule returns the Caddy module information.
func (AdminStatus) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "admin.api.mcp_token",
		New: func() caddy.Module { return new(AdminStatus) },
	}
}

// Routes returns the status route.
func (AdminStatus) Routes() []caddy.AdminRoute {
	return []caddy.AdminRoute{{Pattern: StatusPath, Handler: caddy.AdminHandlerFunc(serveStatus)}}
}

// Status is the document served at StatusPath. Every list is sorted and
// present (empty rather than null).
type Status struct {
	// JWKS key sources (jwks_uri and discover), shared across routes and
	// reloads.
	JWKS []jwks.Status `json:"jwks"`
	// Local key sets (jwks_file).
	JWKSFiles []KeyFileStatus `json:"jwks_files"`
	// Introspection endpoints.
	Introspection []introspection.Status `json:"introspection"`
	// Verified-token caches, one per mcp_token with JWT verification.
	TokenCaches []TokenCacheStatus `json:"token_caches"`
	// Failed-attempt limiters, one per distinct mcp_token configuration.
	RateLimiters []limiter.Status `json:"rate_limiters"`
}

// TokenCacheStatus is one verified-token cache's size and counters.
type TokenCacheStatus struct {
	Entries int   `json:"entries"`
	Hits    int64 `json:"hits"`
	Misses  int64 `json:"misses"`
}

// CurrentStatus collects the status of everything mcp_token holds now.
func CurrentStatus() Status {
	st := Status{JWKS: []jwks.Status{}, JWKSFiles: keyFileStatuses(), Introspection: []introspection.Status{},
		TokenCaches: []TokenCacheStatus{}, RateLimiters: []limiter.Status{}}
	rangePool(jwksPool, func(c *jwks.Cache) { st.JWKS = append(st.JWKS, c.Status()) })
	slices.SortFunc(st.JWKS, func(a, b jwks.Status) int { return cmp.Compare(a.Source, b.Source) })
	rangePool(introspectionPool, func(c *introspection.Client) { st.Introspection = append(st.Introspection, c.Status()) })
	slices.SortFunc(st.Introspection, func(a, b introspection.Status) int { return cmp.Compare(a.URL, b.URL) })
	liveTokenCaches.m.Range(func(k, _ any) bool {
		s := k.(*verifiers.TokenCache).Stats()
		st.TokenCaches = append(st.TokenCaches, TokenCacheStatus{Entries: s.Len, Hits: s.Hits, Misses: s.Misses})
		return true
	})
	slices.SortFunc(st.TokenCaches, func(a, b TokenCacheStatus) int {
		return cmp.Or(cmp.Compare(b.Entries, a.Entries), cmp.Compare(b.Hits, a.Hits), cmp.Compare(b.Misses, a.Misses))
	})
	rangePool(limiterPool, func(l limiter.Counter) { st.RateLimiters = append(st.RateLimiters, l.Status()) })
	slices.SortFunc(st.RateLimiters, func(a, b limiter.Status) int {
		return cmp.Or(cmp.Compare(b.Tracked, a.Tracked), cmp.Compare(b.Limited, a.Limited))
	})
	return st
}

// serveStatus answers GET with CurrentStatus as JSON.
func serveStatus(w http.ResponseWriter, r *http.Request) error {
	if r.Method != http.MethodGet {
		return caddy.APIError{HTTPStatus: http.StatusMethodNotAllowed, Err: errors.New("method not allowed: use GET")}
	}
	body, err := json.MarshalIndent(CurrentStatus(), "", "  ")
	if err != nil {
		return caddy.APIError{HTTPStatus: http.StatusInternalServerError, Err: err}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, err = w.Write(append(body, '\n'))
	return err
}

// Interface guards
var _ caddy.AdminRouter = (*AdminStatus)(nil)
