package mcptoken

import (
	"cmp"
	"fmt"
	"net/http"
	"time"

	"github.com/mcptoken/caddy-mcp-token/internal/remote"
	"github.com/mcptoken/caddy-mcp-token/jwks"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// guards are the production rules, all in this one place. They apply when
// ENVIRONMENT=production or the `production` option is set:
//   - static (development) tokens are refused;
//   - JWKS, discovery and introspection URLs must be https and not loopback
//     (verifiers.LocalHost: every spelling of a loopback or unspecified
//     address); a jwks_uri found by discovery is held to the same rule, by
//     the HTTP client the JWKS cache is given (jwksClient);
//   - resource must be set: nothing served is derived from the request's
//     Host header;
//   - introspection results must carry an accepted aud (require_audience
//     cannot be turned off);
//   - every JWT policy and introspection must name an audience (or a
//     resource, which is then the audience): without one, a token minted
//     for any other service of the same issuer would be accepted.
//
// The rules that hold in every environment are enforced by the verifiers
// themselves: HMAC secret lengths, the 120 s clock-skew cap, no algorithm
// confusion, no "none".
type guards struct{ production bool }

// guardsFor returns the guards for cfg: production when the option or
// ENVIRONMENT=production says so.
func guardsFor(cfg *Config) guards {
	return guards{production: cfg.Production || verifiers.IsProduction()}
}

// endpoint checks a remote endpoint's URL.
func (g guards) endpoint(what, u string) error {
	if err := verifiers.CheckURL(u, g.production); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// audience refuses a policy without an audience in production.
func (g guards) audience(what string, audiences []string) error {
	if g.production && len(audiences) == 0 {
		return fmt.Errorf("%s: an audience is required in production (set audience, or resource); otherwise tokens issued for any service are accepted", what)
	}
	return nil
}

// requireAudience decides whether introspection results must carry aud:
// as set, else whenever audiences are configured; in production always
// (turning it off there is an error).
func (g guards) requireAudience(set *bool, audiences []string) (bool, error) {
	if set == nil {
		return len(audiences) > 0 || g.production, nil
	}
	if g.production && !*set {
		return false, fmt.Errorf("require_audience cannot be off in production: a result without aud may be a token issued for any service")
	}
	return *set, nil
}

// resource refuses a resource that is not an absolute http(s) URI (a JSON
// config does not pass through the Caddyfile's check), and, in production,
// a configuration without resource: the resource and the metadata URL
// would otherwise be derived from the request's Host header, which the
// client writes.
func (g guards) resource(resource string) error {
	if resource != "" {
		return checkResource(resource)
	}
	if g.production {
		return fmt.Errorf("resource is required in production (for example resource https://mcp.example.com/mcp): without it the resource and its metadata URL are derived from the request's Host header")
	}
	return nil
}

// static refuses development tokens in production.
func (g guards) static() error {
	if g.production {
		return verifiers.ErrStaticInProduction
	}
	return nil
}

// jwksClient is the HTTP client of a JWKS cache: nil (the cache's own)
// outside production; in production one that refuses, before any
// connection, a URL the endpoint rule refuses, so a jwks_uri that
// discovery finds in the issuer's metadata is checked like a configured one.
func (g guards) jwksClient(timeout time.Duration) *http.Client {
	if !g.production {
		return nil
	}
	cl := remote.NewClient(cmp.Or(timeout, jwks.DefaultTimeout), jwks.MaxConns)
	cl.Transport = guardedTransport{next: guardedNext(cl.Transport)}
	return cl
}

// guardedNext is the transport a guarded client sends through (tests
// replace it).
var guardedNext = func(t http.RoundTripper) http.RoundTripper { return t }

// guardedTransport refuses requests to URLs that the production endpoint
// rule refuses.
type guardedTransport struct{ next http.RoundTripper }

// CloseIdleConnections lets the JWKS cache release the connections.
func (t guardedTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

func (t guardedTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := verifiers.CheckURL(r.URL.String(), true); err != nil {
		if r.Body != nil {
			_ = r.Body.Close()
		}
		return nil, err
	}
	return t.next.RoundTrip(r)
}
