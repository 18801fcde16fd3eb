package mcptoken

import (
	"net/http"
	"slices"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mcptoken/caddy-mcp-token/internal/mcprpc"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// auditDecision writes the audit line of one decision (the `audit`
// option): one INFO line per request the handler judged, accepted or
// refused, on the logger http.handlers.mcp_token.audit. It never holds
// the token (a short hash) nor argument values (their names at most).
func (c *core) auditDecision(r *http.Request, out *outcome) {
	if c.audit == nil {
		return
	}
	ce := c.audit.Check(zapcore.InfoLevel, "decision")
	if ce == nil {
		return
	}
	o := verifiers.Classify(out.err)
	decision := "refused"
	if out.err == nil {
		decision = "accepted"
	}
	fields := make([]zap.Field, 0, 16)
	fields = append(fields,
		zap.String("decision", decision),
		zap.String("reason", o.Reason),
		zap.Int("status", o.Status),
		zap.String("verifier", out.kind),
	)
	tok := out.tok
	if out.accepted != nil {
		tok = out.accepted.Token
	}
	if tok != nil {
		fields = append(fields,
			zap.String("client_id", tok.ClientID),
			zap.String("sub", tok.Subject),
			zap.String("iss", tok.Issuer),
			zap.String("kid", tok.KeyID),
		)
	}
	if out.token != "" {
		fields = append(fields, zap.String("token_hash", TokenHash(out.token)))
	}
	if out.calls != nil {
		vars := requestVars{calls: out.calls}
		fields = append(fields,
			zap.String("mcp_method", vars.join(func(c mcprpc.Call) string { return c.Method })),
			zap.String("mcp_name", vars.join(func(c mcprpc.Call) string { return c.Name })),
		)
		if names := argumentNames(out.calls); names != nil {
			fields = append(fields, zap.Strings("mcp_argument_names", names))
		}
	}
	fields = append(fields,
		zap.String("remote_addr", r.RemoteAddr),
		zap.String("client_ip", clientAddress(r)),
		zap.String("host", r.Host),
		zap.String("path", r.URL.Path),
	)
	ce.Write(fields...)
}

// maxAuditArgNames bounds the argument names of one audit line.
const maxAuditArgNames = 32

// argumentNames are the names of the calls' decoded arguments (never
// their values), sorted; nil when none were decoded.
func argumentNames(calls []mcprpc.Call) []string {
	var names []string
	for _, c := range calls {
		if m, ok := c.Arguments.(map[string]any); ok {
			for k := range m {
				if len(names) < maxAuditArgNames && !slices.Contains(names, k) {
					names = append(names, k)
				}
			}
		}
	}
	slices.Sort(names)
	return names
}
