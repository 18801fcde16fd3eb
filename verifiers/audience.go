package verifiers

import (
	"net/url"
	"strings"
)

// MatchAudience reports whether any of the token's audiences is one of
// the accepted ones (see AudienceEqual).
func MatchAudience(have, accepted []string) bool {
	for _, h := range have {
		for _, a := range accepted {
			if AudienceEqual(h, a) {
				return true
			}
		}
	}
	return false
}

// AudienceEqual compares two audience values. Plain strings must be
// equal; absolute http(s) URIs are compared as MCP canonical server URIs:
// scheme and host case-insensitively, and the paths ignoring one trailing
// slash (https://MCP.example.com/mcp/ equals https://mcp.example.com/mcp).
func AudienceEqual(a, b string) bool {
	if a == b {
		return true
	}
	ua, ok := canonicalURI(a)
	if !ok {
		return false
	}
	ub, ok := canonicalURI(b)
	if !ok {
		return false
	}
	return ua == ub
}

func canonicalURI(s string) (string, bool) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" || u.User != nil {
		return "", false
	}
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	return strings.ToLower(u.Scheme) + "://" + strings.ToLower(u.Host) + path + "?" + u.RawQuery, true
}
