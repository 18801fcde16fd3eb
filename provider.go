package mcptoken

import (
	"errors"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"github.com/mcptoken/caddy-mcp-token/internal/streak"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
	"go.uber.org/zap"
)

func init() {
	caddy.RegisterModule(Authenticator{})
}

// Authenticator is the `mcp_token` authentication provider for Caddy's
// `authentication` handler. Caddy's handler can only answer 401, so a
// missing scope is a 401 with error="insufficient_scope", and a technical
// failure (key source down) is a 401 too, with the same challenge (so MCP
// clients can still discover the authorization server) and one WARN line
// per failure streak; use the `mcp_token` handler for 403 and 503 answers.
// Unlike Caddy's contract, technical failures are not returned as errors:
// Caddy logs each returned error at ERROR, one line per request for the
// length of an outage.
type Authenticator struct {
	module
	outage *streak.Logger
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
	a.core.setPlaceholders(r, &out) // claims, {http.auth.result}
	a.core.auditDecision(r, &out)
	if out.err == nil {
		if out.took > 0 { // a verifier ran (not a cache hit)
			a.outage.Success()
		}
		a.core.renewNonce(w.Header(), r) // dpop.go
		return caddyauth.User{ID: out.accepted.Token.ClientID, Metadata: out.accepted.Extra.(*userVars).meta()}, true, nil
	}
	if verifiers.Classify(out.err).Status == http.StatusServiceUnavailable {
		// Technical failure: logged once per streak here, not returned —
		// Caddy would log every returned error at ERROR, one line per
		// request for the length of an outage.
		a.outage.Failure(out.err, zap.String("answer", "401 (the caddyauth provider cannot answer 503; the mcp_token handler does)"))
	}
	a.core.setChallenges(w.Header(), r, out.err)
	return caddyauth.User{}, false, nil
}

// Provision builds the verifiers and the outage logger.
func (a *Authenticator) Provision(ctx caddy.Context) error {
	if len(a.AllowIf) > 0 {
		// Fail closed: the provider judges tokens only, so a rule would
		// silently not apply.
		return errors.New("allow_if needs the mcp_token handler: the authentication provider cannot apply rules (it can only answer 401)")
	}
	a.outage = streak.New(ctx.Logger(), "token verification", nil)
	return a.module.Provision(ctx)
}

// Interface guards
var (
	_ caddy.Provisioner       = (*Authenticator)(nil)
	_ caddy.CleanerUpper      = (*Authenticator)(nil)
	_ caddyauth.Authenticator = (*Authenticator)(nil)
)
