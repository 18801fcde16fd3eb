package mcptoken

import (
	"errors"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// FuzzBearerToken: any Authorization header either yields a token of
// RFC 6750 b64token characters, or is refused as missing or malformed —
// never a panic, never a token with a space, comma or control character
// that a backend could split differently.
func FuzzBearerToken(f *testing.F) {
	for _, s := range []string{"Bearer abc", "bearer  abc.def.ghi", "Bearer ", "Basic dXNlcg==", "Bearer a,b",
		"Bearer a b", "Bearer\tabc", "BEARER abc==", "Bearer abc\x00", "DPoP abc", " Bearer abc "} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		r := httptest.NewRequest("POST", "/mcp", nil)
		r.Header["Authorization"] = []string{header}
		tok, err := bearerToken(r)
		if err != nil {
			if !errors.Is(err, verifiers.ErrMissingToken) && !errors.Is(err, verifiers.ErrBadRequest) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if tok == "" || !isB64Token(tok) || strings.ContainsAny(tok, " ,\t\r\n\x00") {
			t.Fatalf("accepted token %q from %q", tok, header)
		}
	})
}

// FuzzCaddyfile: any mcp_token block either parses or fails with an
// error; the parser never panics (it also builds verifiers to check
// values, so this reaches key parsing and the config checks).
func FuzzCaddyfile(f *testing.F) {
	for _, s := range []string{
		"mcp_token {\n static_token t c mcp:read\n}",
		"mcp_token {\n jwks_uri https://idp/jwks\n audience a\n token_cache 10 5m\n}",
		"mcp_token {\n issuer https://a {\n  jwks_uri https://a/jwks\n }\n}",
		"mcp_token {\n introspection https://as/i {\n  client_id c\n  timeout 5s\n }\n}",
		"mcp_token {\n hmac_secret {env.X}\n algorithms HS256\n rate_limit 3 1m\n}",
		"mcp_token {\n tool_scopes deploy a,b\n}",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, input string) {
		if len(input) > 4096 {
			return
		}
		// Caddy's NewTestDispenser exits the process on a lexer error (a
		// bad heredoc marker, found by CI fuzzing): tokenize as the
		// adapter does and stop where it would refuse the input.
		tokens, err := caddyfile.Tokenize([]byte(input), "Testfile")
		if err != nil {
			return
		}
		var c Config
		_ = c.UnmarshalCaddyfile(caddyfile.NewDispenser(tokens))
	})
}

// FuzzInspect: the body inspector with any method, Content-Type,
// Content-Encoding and body either refuses the request or has read it as
// the backend would: a POST of application/json in UTF-8 without an
// encoding, one JSON-RPC value, its deploy calls requiring deploy:write.
func FuzzInspect(f *testing.F) {
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deploy"}}`
	for _, s := range [][4]string{
		{"POST", "application/json", "", call},
		{"POST", "application/json; charset=utf-7", "", call},
		{"POST", "application/json", "gzip", call},
		{"PUT", "application/json", "", call},
		{"DELETE", "", "", call},
		{"POST", "text/plain", "", `{"method":"tools/list"}`},
		{"POST", "application/json;charset=UTF-8", "identity", "[" + call + "]"},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, method, contentType, encoding, body string) {
		if !validMethod(method) {
			return
		}
		r := httptest.NewRequest(method, "/mcp", strings.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		if encoding != "" {
			r.Header.Set("Content-Encoding", encoding)
		}
		needed, calls, err := rulesCore().inspect(httptest.NewRecorder(), r)
		if err != nil {
			return
		}
		if body != "" && method != "POST" {
			t.Fatalf("a %s body was passed on unread", method)
		}
		if method == "POST" && body != "" && calls == nil {
			t.Fatal("a POST body passed without being parsed")
		}
		for _, c := range calls {
			if c.Method == "tools/call" && c.Name == "deploy" && !slices.Contains(needed, "deploy:write") {
				t.Fatalf("deploy passed without deploy:write: %v", needed)
			}
		}
	})
}

// validMethod reports an HTTP method token httptest.NewRequest accepts.
func validMethod(m string) bool {
	if m == "" || len(m) > 16 {
		return false
	}
	for _, c := range m {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	return true
}
