package mcptoken

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/mcptoken/caddy-mcp-token/internal/limiter"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// TestSpoofableClientIPWarning (issue 10 item 3): trusted_proxies without
// trusted_proxies_strict is reported at provision time.
func TestSpoofableClientIPWarning(t *testing.T) {
	proxies := json.RawMessage(`{"source":"static","ranges":["10.0.0.0/8"]}`)
	cases := []struct {
		name string
		srv  *caddyhttp.Server
		warn bool
	}{
		{"trusted_proxies without strict", &caddyhttp.Server{TrustedProxiesRaw: proxies}, true},
		{"trusted_proxies_strict", &caddyhttp.Server{TrustedProxiesRaw: proxies, TrustedProxiesStrict: 1}, false},
		{"no trusted_proxies", &caddyhttp.Server{}, false},
		{"no server in the context", nil, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			base := context.Background()
			if tc.srv != nil {
				base = context.WithValue(base, caddyhttp.ServerCtxKey, tc.srv)
			}
			msg := spoofableClientIP(caddy.Context{Context: base})
			if (msg != "") != tc.warn || (tc.warn && !strings.Contains(msg, "trusted_proxies_strict")) {
				t.Fatalf("warning %q, want one: %v", msg, tc.warn)
			}
		})
	}
}

// TestRateLimitIPv6Prefix (issue 10 item 3): IPv6 clients are limited by
// their /64, so rotating through the addresses of one block does not
// escape the limit; another /64 is not affected.
func TestRateLimitIPv6Prefix(t *testing.T) {
	c := &core{verifier: fakeVerifier{err: verifiers.ErrBadSignature}, logger: zap.NewNop(),
		maxBody: DefaultMaxBody, limiter: limiter.New(3, 0, 0)}
	h := &Handler{module{core: c}}
	serve := func(remote string) int {
		r := newRequest("Bearer abc")
		r.RemoteAddr = remote
		w := httptest.NewRecorder()
		_ = h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
		return w.Code
	}
	for i := 1; i <= 3; i++ {
		if code := serve("[2001:db8:1:2::" + string(rune('0'+i)) + "]:4000"); code != 401 {
			t.Fatalf("failure %d: %d", i, code)
		}
	}
	if code := serve("[2001:db8:1:2:ffff::99]:4000"); code != http.StatusTooManyRequests {
		t.Fatalf("another address of the same /64: %d, want 429", code)
	}
	if code := serve("[2001:db8:1:3::1]:4000"); code != 401 {
		t.Fatalf("another /64: %d, want 401", code)
	}
}
