package mcptoken

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/golang-jwt/jwt/v5"

	"github.com/mcptoken/caddy-mcp-token/devtools"
)

// benchToolsCall is a tools/call request of about size bytes.
func benchToolsCall(size int) string {
	head := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"`
	tail := `"}}}`
	return head + strings.Repeat("x", max(0, size-len(head)-len(tail))) + tail
}

// BenchmarkHandler measures the whole handler against its floor, per
// algorithm, in one run:
//
//	floor       a pass-through handler on the same request (the harness:
//	            request, recorder, replacer; what any handler costs)
//	hit         mcp_token, token in the verified-token cache (static key)
//	hit-jwks    the same, the key from a JWKS endpoint (each hit checks that
//	            the key set still holds the key that verified the token)
//	miss        mcp_token with token_cache off (a full verification)
//	jwt.Parse   bare golang-jwt parse of the same token (the miss baseline)
//	rules/*     the same with per-tool rules and a 1 KiB tools/call body;
//	            hit-cel: one allow_if rule instead, hit-cel-args: one that
//	            reads mcp.arguments
func BenchmarkHandler(b *testing.B) {
	for _, alg := range []string{"ES256", "RS256"} {
		kp := devtools.MustGenerateKey(alg)
		tok := kp.MustToken(devtools.TokenOptions{Audience: []string{"bench"}, Scopes: []string{"mcp:read"}, ExpiresIn: time.Hour})
		pemText, _ := kp.PublicPEM()
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		defer cancel()
		jwksServer := devtools.NewJWKSServer(kp)
		defer jwksServer.Close()
		keys := KeyConfig{PublicKey: pemText}
		handler := func(rules bool, cache bool, allowIf ...string) *Handler {
			cfg := Config{KeyConfig: keys, Algorithms: []string{alg}, Audiences: []string{"bench"}, RequiredScopes: []string{"mcp:read"}, AllowIf: allowIf}
			if rules {
				cfg.MethodScopes = map[string][]string{"tools/call": {"mcp:read"}}
				cfg.ToolScopes = map[string][]string{"deploy": {"deploy:write"}}
			}
			if !cache {
				cfg.TokenCache = &TokenCacheConfig{Disabled: true}
			}
			h := &Handler{module{Config: cfg}}
			if err := h.Provision(ctx); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _ = h.Cleanup() })
			return h
		}
		next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return nil })
		passThrough := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return next.ServeHTTP(w, r) })
		request := func(body string) (*httptest.ResponseRecorder, *http.Request) {
			r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(body))
			r.Header.Set("Authorization", "Bearer "+tok)
			r.Header.Set("Content-Type", "application/json")
			return httptest.NewRecorder(), r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
		}
		serve := func(b *testing.B, h *Handler, body string) {
			b.ReportAllocs()
			for b.Loop() {
				w, r := request(body)
				if err := h.ServeHTTP(w, r, next); err != nil || w.Code != 200 {
					b.Fatalf("%v %d", err, w.Code)
				}
			}
		}
		small := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
		call := benchToolsCall(1024)

		b.Run(alg+"/floor", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = passThrough.ServeHTTP(request(small))
			}
		})
		b.Run(alg+"/hit", func(b *testing.B) { serve(b, handler(false, true), small) })
		b.Run(alg+"/hit-jwks", func(b *testing.B) {
			keys = KeyConfig{JWKSURI: jwksServer.JWKSURL()}
			defer func() { keys = KeyConfig{PublicKey: pemText} }()
			h := handler(false, true)
			if w, r := request(small); h.ServeHTTP(w, r, next) != nil || w.Code != 200 {
				b.Fatalf("warm-up: %d %s", w.Code, w.Body)
			}
			serve(b, h, small)
		})
		b.Run(alg+"/miss", func(b *testing.B) { serve(b, handler(false, false), small) })
		b.Run(alg+"/jwt.Parse", func(b *testing.B) {
			keyFunc := func(*jwt.Token) (any, error) { return kp.Public, nil }
			b.ReportAllocs()
			for b.Loop() {
				if _, err := jwt.Parse(tok, keyFunc, jwt.WithValidMethods([]string{alg})); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(alg+"/rules/floor", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = passThrough.ServeHTTP(request(call))
			}
		})
		b.Run(alg+"/rules/hit-no-rules", func(b *testing.B) { serve(b, handler(false, true), call) })
		b.Run(alg+"/rules/hit", func(b *testing.B) { serve(b, handler(true, true), call) })
		// One allow_if rule (the body is read for it), without and with
		// mcp.arguments (only the second decodes the arguments).
		b.Run(alg+"/rules/hit-cel", func(b *testing.B) {
			serve(b, handler(false, true, `mcp.method == "tools/call" && client_id != ""`), call)
		})
		b.Run(alg+"/rules/hit-cel-args", func(b *testing.B) {
			serve(b, handler(false, true, `mcp.method == "tools/call" && mcp.arguments.text != "prod"`), call)
		})
	}
}
