package mcptoken

import (
	"net/http"
	"net/url"
	"strings"
)

// hasQueryToken reports an access_token query parameter (RFC 6750 §2.3
// is refused: URLs end up in logs and histories). The check is on the
// keys as a backend decodes them, never on the raw text, so that no
// spelling reaches a backend that reads it as access_token:
//   - percent-encoded (access%5Ftoken, %61ccess_token) and
//     plus-for-space forms are decoded; a key whose escapes do not decode
//     is compared as written (Express's qs does the same);
//   - pairs are split on ';' as well as '&' (Go's url.ParseQuery drops
//     pairs with a ';', some frameworks split on it);
//   - a bracket suffix (access_token[], access_token[0]) is ignored, as
//     qs and PHP turn it into the access_token key;
//   - case is ignored, as some frameworks do.
func hasQueryToken(r *http.Request) bool {
	q := r.URL.RawQuery
	for q != "" {
		var pair string
		if i := strings.IndexAny(q, "&;"); i >= 0 {
			pair, q = q[:i], q[i+1:]
		} else {
			pair, q = q, ""
		}
		key, _, _ := strings.Cut(pair, "=")
		if isTokenKey(key) {
			return true
		}
	}
	return false
}

// isTokenKey reports a query key that decodes to access_token.
func isTokenKey(key string) bool {
	if strings.ContainsAny(key, "%+") {
		if dec, err := url.QueryUnescape(key); err == nil {
			key = dec
		}
	}
	if i := strings.IndexByte(key, '['); i >= 0 {
		key = key[:i]
	}
	return strings.EqualFold(strings.TrimSpace(key), "access_token")
}
