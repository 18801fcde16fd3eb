package verifiers

import (
	"fmt"
	"net/url"
	"strings"
)

// CheckURL refuses a URL that is not absolute http(s); with production set,
// it must be https and not a loopback host.
func CheckURL(raw string, production bool) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", raw)
	}
	if production {
		host := strings.ToLower(u.Hostname())
		if host == "localhost" || strings.HasSuffix(host, ".localhost") || host == "::1" || strings.HasPrefix(host, "127.") {
			return fmt.Errorf("cannot use localhost URL %q in production (ENVIRONMENT=production)", raw)
		}
		if u.Scheme != "https" {
			return fmt.Errorf("cannot use plain http URL %q in production (ENVIRONMENT=production): use https", raw)
		}
	}
	return nil
}
