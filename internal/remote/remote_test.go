package remote

import (
	"net/http"
	"testing"
	"time"
)

func TestRedact(t *testing.T) {
	cases := []struct{ name, in, want string }{
		{"plain", "https://idp.example/jwks", "https://idp.example/jwks"},
		{"userinfo", "https://user:pw@idp.example/introspect", "https://idp.example/introspect"},
		{"query values", "https://idp.example/jwks?tenant=a&key=s3cret", "https://idp.example/jwks?key=REDACTED&tenant=REDACTED"},
		{"fragment", "https://idp.example/jwks#x", "https://idp.example/jwks"},
		{"unparsable", "http://[::1", "(unparsable URL)"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := Redact(tc.in); got != tc.want {
				t.Fatalf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

func TestNewClientHasItsOwnBoundedTransport(t *testing.T) {
	a, b := NewClient(time.Second, 8), NewClient(time.Second, 0)
	ta, ok := a.Transport.(*http.Transport)
	if !ok || ta == http.DefaultTransport {
		t.Fatalf("transport %T is not a transport of its own", a.Transport)
	}
	if ta.MaxConnsPerHost != 8 || ta.MaxIdleConnsPerHost != 8 || ta.IdleConnTimeout != IdleConnTimeout {
		t.Fatalf("limits: conns %d, idle %d, idle timeout %s", ta.MaxConnsPerHost, ta.MaxIdleConnsPerHost, ta.IdleConnTimeout)
	}
	if tb := b.Transport.(*http.Transport); tb == ta || tb.MaxConnsPerHost != 1 {
		t.Fatalf("second client: shared transport or bound %d", tb.MaxConnsPerHost)
	}
	if a.Timeout != time.Second || a.CheckRedirect(nil, nil) != http.ErrUseLastResponse {
		t.Fatal("timeout or redirect policy lost")
	}
}
