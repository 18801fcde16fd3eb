package mcptoken

import (
	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// spoofableClientIP returns a warning when the server this handler runs
// in takes the client address from X-Forwarded-For (trusted_proxies)
// without trusted_proxies_strict: Caddy then uses the leftmost entry,
// which the client writes, so a client can spread its failures over
// made-up addresses or name another client's address to get it limited.
// "" otherwise, or when the server is not known (the caddyauth provider
// in a JSON config is provisioned the same way; tests may have none).
func spoofableClientIP(ctx caddy.Context) string {
	srv, ok := ctx.Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	if !ok || srv == nil || srv.TrustedProxiesRaw == nil || srv.TrustedProxiesStrict > 0 {
		return ""
	}
	return "rate_limit: trusted_proxies is set without trusted_proxies_strict: the client address is the leftmost X-Forwarded-For entry, which clients write, " +
		"so a client can dodge the failed-attempt limit or get another address limited; set trusted_proxies_strict in the server options"
}
