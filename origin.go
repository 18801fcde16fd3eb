package mcptoken

import (
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// The origin (scheme://host) of the protected resource as the client sees
// it: one derivation serves the metadata document, the resource_metadata
// URL of challenges and the DPoP htu check, so that what the gateway
// publishes and what it accepts cannot disagree.
//
// In order: (1) the configured resource; (2) X-Forwarded-Proto and
// X-Forwarded-Host, only on a connection Caddy marked as coming from a
// trusted_proxies address, each taken alone and only when well formed (the
// last element of a list: the one the nearest proxy wrote); (3) the
// connection (TLS or not, and the Host header). The path is never mapped:
// a proxy in front must pass the path through unchanged (no prefix
// stripped), or proofs for the public URL are refused.

// origin is scheme://host of the configured resource, else of the request
// (see above).
func (p *ProtectedResource) origin(r *http.Request) string {
	if p.Resource != "" {
		if u, err := url.Parse(p.Resource); err == nil && u.Host != "" {
			return u.Scheme + "://" + u.Host
		}
	}
	scheme, host := "http", r.Host
	if r.TLS != nil {
		scheme = "https"
	}
	if fromTrustedProxy(r) {
		if proto := lastForwarded(r.Header, "X-Forwarded-Proto"); proto == "http" || proto == "https" {
			scheme = proto
		}
		if fh := lastForwarded(r.Header, "X-Forwarded-Host"); plainHostPort(fh) {
			host = fh
		}
	}
	return scheme + "://" + host
}

// fromTrustedProxy reports a request Caddy marked as coming from a
// trusted_proxies address.
func fromTrustedProxy(r *http.Request) bool {
	trusted, _ := caddyhttp.GetVar(r.Context(), caddyhttp.TrustedProxyVarKey).(bool)
	return trusted
}

// lastForwarded is the last element of the last field of an
// X-Forwarded-* header: the value the nearest proxy set.
func lastForwarded(h http.Header, name string) string {
	values := h.Values(name)
	if len(values) == 0 {
		return ""
	}
	v := values[len(values)-1]
	if i := strings.LastIndexByte(v, ','); i >= 0 {
		v = v[i+1:]
	}
	return strings.TrimSpace(v)
}

// plainHostPort accepts host[:port] with a DNS-style name, an IPv4 address
// or a bracketed IPv6 address, and a decimal port: no user information,
// path, percent-encoding or other URI syntax.
func plainHostPort(s string) bool {
	if s == "" || len(s) > 261 {
		return false
	}
	host, port := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return false
		}
		if addr, err := netip.ParseAddr(s[1:end]); err != nil || !addr.Is6() || addr.Zone() != "" {
			return false
		}
		host, port = "", s[end+1:]
		if port != "" {
			if port[0] != ':' {
				return false
			}
			port = port[1:]
			if port == "" {
				return false
			}
		}
	} else if i := strings.IndexByte(s, ':'); i >= 0 {
		host, port = s[:i], s[i+1:]
		if port == "" {
			return false
		}
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '+' || port[0] == '-' {
			return false
		}
	}
	if host == "" {
		return strings.HasPrefix(s, "[")
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_') {
			return false
		}
	}
	return true
}
