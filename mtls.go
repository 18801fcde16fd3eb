package mcptoken

import (
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// Certificate-bound tokens (RFC 8705 §3): a token whose cnf carries
// x5t#S256 is accepted only over a TLS connection presenting that client
// certificate (Caddy's `tls { client_auth ... }`). Part of step 5, the
// sender constraint (see senderConstraint).

// mtlsMode is the configured mtls_bound mode, with its default.
func (cfg *Config) mtlsMode() string {
	if cfg.MTLSBound == "" {
		return DPoPAllowed
	}
	return cfg.MTLSBound
}

// checkMTLSMode checks mtls_bound.
func checkMTLSMode(mode string) error {
	switch mode {
	case "", DPoPOff, DPoPAllowed, DPoPRequired:
		return nil
	}
	return fmt.Errorf("mtls_bound: %q, want off, allowed or required", mode)
}

// certConstraint checks a token's certificate binding: off refuses every
// bound token (the binding cannot be honoured), allowed checks bound
// tokens, required also refuses tokens that are not bound.
func (c *core) certConstraint(r *http.Request, x5t string) error {
	switch {
	case x5t == "" && !c.mtlsRequired:
		return nil
	case c.mtlsOff:
		return fmt.Errorf("%w: mtls_bound is off", verifiers.ErrCertMismatch)
	case r.TLS == nil:
		return fmt.Errorf("%w: not a TLS connection", verifiers.ErrCertMismatch)
	}
	return verifiers.CheckCertBinding(x5t, r.TLS.PeerCertificates)
}

// parseMTLSBound reads `mtls_bound off|allowed|required`.
func (cfg *Config) parseMTLSBound(d *caddyfile.Dispenser) error {
	v, err := singleArg(d)
	if err != nil {
		return err
	}
	if err := checkMTLSMode(v); err != nil {
		return d.Err(err.Error())
	}
	cfg.MTLSBound = v
	return nil
}
