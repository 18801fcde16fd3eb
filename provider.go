package mcptoken

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

func init() {
	caddy.RegisterModule(Authenticator{})
}

// Authenticator is the `mcp_token` authentication provider for Caddy's
// `authentication` handler. Caddy's handler can only answer 401, so a
// missing scope is a 401 with error="insufficient_scope", and a technical
// failure (key source down) is a 401 too, logged by Caddy at error level;
// use the `mcp_token` handler for 403 and 503 answers.
type Authenticator struct {
	module
}

// CaddyModule returns the Caddy module information.
func (Authenticator) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.authentication.providers.mcp_token",
		New: func() caddy.Module { return new(Authenticator) },
	}
}

// Authenticate implements caddyauth.Authenticator. A bad or missing token
// is (User{}, false, nil) with a WWW-Authenticate challenge; an error is
// returned only for a technical failure.
func (a *Authenticator) Authenticate(w http.ResponseWriter, r *http.Request) (caddyauth.User, bool, error) {
	out := a.core.authenticate(r, false)
	a.core.metrics.observe(out)
	err := out.err
	if err == nil {
		return caddyauth.User{ID: out.accepted.Token.ClientID, Metadata: out.accepted.Extra.(*userVars).meta}, true, nil
	}
	if errors.Is(err, verifiers.ErrUnavailable) || verifiers.Classify(err).Status == http.StatusServiceUnavailable {
		return caddyauth.User{}, false, fmt.Errorf("mcp_token: %w", err)
	}
	w.Header().Set("WWW-Authenticate", a.core.challenge(r, err))
	return caddyauth.User{}, false, nil
}

// Interface guards
var (
	_ caddy.Provisioner       = (*Authenticator)(nil)
	_ caddy.CleanerUpper      = (*Authenticator)(nil)
	_ caddyauth.Authenticator = (*Authenticator)(nil)
)
