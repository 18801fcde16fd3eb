package mcptoken

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mcptoken/caddy-mcp-token/devtools"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// BenchmarkHandler compares the whole handler (bearer parsing, rate
// limiter, verification, per-tool scope check on the JSON-RPC body,
// metrics, placeholders) with the verifier chain alone, same token.
func BenchmarkHandler(b *testing.B) {
	kp := devtools.MustGenerateKey("ES256")
	tok := kp.MustToken(devtools.TokenOptions{Audience: []string{"bench"}, Scopes: []string{"mcp:read"}})
	pemText, _ := kp.PublicPEM()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	h := &Handler{module{Config: Config{KeyConfig: KeyConfig{PublicKey: pemText}, Audiences: []string{"bench"},
		RequiredScopes: []string{"mcp:read"}, ToolScopes: map[string][]string{"deploy": {"deploy:write"}}}}}
	if err := h.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	defer h.Cleanup()
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}`
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return nil })
	request := func() (*httptest.ResponseRecorder, *http.Request) {
		r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(body))
		r.Header.Set("Authorization", "Bearer "+tok)
		return httptest.NewRecorder(), r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	}

	b.Run("chain", func(b *testing.B) {
		chain := h.core.verifier.(*verifiers.Chain)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := chain.Verify(context.Background(), tok); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("harness-only", func(b *testing.B) { // building the request and recorder, for reference
		b.ReportAllocs()
		for b.Loop() {
			_ = next.ServeHTTP(request())
		}
	})
	b.Run("handler", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			w, r := request()
			if err := h.ServeHTTP(w, r, next); err != nil || w.Code != 200 {
				b.Fatalf("%v %d", err, w.Code)
			}
		}
	})
}
