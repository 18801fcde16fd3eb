package mcptoken

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// TestDPoPNonceRenewal: an accepted proof whose server nonce is past half
// its lifetime gets a fresh DPoP-Nonce on the answer (RFC 9449 §8.2), from
// the handler and from the authentication provider, exposed to browsers
// when the request has an Origin; a young nonce and a bearer token get
// none.
func TestDPoPNonceRenewal(t *testing.T) {
	const key = "a nonce key renewed in unit test"
	t.Setenv("MCP_DPOP_RENEW_KEY", key)
	c := newDPoPCoreWith(t, &DPoPConfig{Algorithms: []string{"ES256"}, NonceKey: "{env.MCP_DPOP_RENEW_KEY}"})
	client := newDPoPClient(t)
	token := dpopToken(t, client.jkt)
	past, _ := verifiers.NewHMACNonces([]byte(key), 0, func() time.Time { return time.Now().Add(-3 * time.Minute) })
	young, _ := verifiers.NewHMACNonces([]byte(key), 0, nil)
	request := func(nonce, origin string) *http.Request {
		r := newRequest("DPoP " + token)
		r.Host = "example.com"
		r.Header.Set("DPoP", client.proof(t, "POST", "http://example.com/mcp", token, nonce))
		if origin != "" {
			r.Header.Set("Origin", origin)
		}
		// Caddy's request vars, where the gate marks an accepted proof.
		return r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, map[string]any{}))
	}
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { w.WriteHeader(200); return nil })
	for _, tc := range []struct {
		name, nonce, origin string
		renew               bool
	}{
		{"young nonce", young.Nonce(), "", false},
		{"nonce past half its lifetime", past.Nonce(), "", true},
		{"from a browser", past.Nonce(), "https://app.example", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			if err := (&Handler{module{core: c}}).ServeHTTP(w, request(tc.nonce, tc.origin), next); err != nil {
				t.Fatal(err)
			}
			got := w.Header().Get("DPoP-Nonce")
			if w.Code != 200 || (got != "") != tc.renew || (got != "" && (!young.Valid(got) || young.Renew(got))) {
				t.Fatalf("handler: %d, DPoP-Nonce %q, want renewed %v", w.Code, got, tc.renew)
			}
			if exposed := w.Header().Get("Access-Control-Expose-Headers") == "DPoP-Nonce"; exposed != (tc.origin != "") {
				t.Fatalf("Access-Control-Expose-Headers %q", w.Header().Get("Access-Control-Expose-Headers"))
			}
			w = httptest.NewRecorder()
			a := &Authenticator{module: module{core: c}}
			if _, ok, err := a.Authenticate(w, request(tc.nonce, tc.origin)); !ok || err != nil || (w.Header().Get("DPoP-Nonce") != "") != tc.renew {
				t.Fatalf("provider: ok %v, err %v, DPoP-Nonce %q", ok, err, w.Header().Get("DPoP-Nonce"))
			}
		})
	}
	t.Run("bearer", func(t *testing.T) {
		r := newRequest("Bearer " + dpopToken(t, ""))
		w := httptest.NewRecorder()
		if err := (&Handler{module{core: c}}).ServeHTTP(w, r, next); err != nil || w.Code != 200 || w.Header().Get("DPoP-Nonce") != "" {
			t.Fatalf("%v %d %q", err, w.Code, w.Header().Get("DPoP-Nonce"))
		}
	})
}
