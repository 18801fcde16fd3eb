package mcptoken

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/mcptoken/caddy-mcp-token/devtools"
)

// writeJWKS writes a JWK Set of the given keys (oct for HMAC keys) to a
// file in dir and returns its path.
func writeJWKS(t *testing.T, dir, name string, keys ...*devtools.KeyPair) string {
	t.Helper()
	var jwks []any
	for _, k := range keys {
		if secret, ok := k.Private.([]byte); ok {
			jwks = append(jwks, map[string]any{"kty": "oct", "kid": k.Kid, "alg": k.Alg, "k": base64.RawURLEncoding.EncodeToString(secret)})
			continue
		}
		jwk, err := k.JWK()
		if err != nil {
			t.Fatal(err)
		}
		jwks = append(jwks, jwk)
	}
	doc, _ := json.Marshal(map[string]any{"keys": jwks})
	return writeKeyFile(t, dir, name, string(doc))
}

func writeKeyFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func mustKey(t *testing.T, alg, kid string) *devtools.KeyPair {
	t.Helper()
	k, err := devtools.GenerateKey(alg, 0, kid)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestJWKSFileCaddyfileErrors: a bad jwks_file fails `caddy adapt` at its
// line, with the path and the reason.
func TestJWKSFileCaddyfileErrors(t *testing.T) {
	dir := t.TempDir()
	rsa := writeJWKS(t, dir, "rsa.json", mustKey(t, "RS256", "r1"))
	hmac := writeJWKS(t, dir, "hmac.json", mustKey(t, "HS256", "h1"))
	short := writeKeyFile(t, dir, "short.json", `{"keys":[{"kty":"oct","kid":"s","alg":"HS256","k":"c2hvcnQ"}]}`)
	weak := writeKeyFile(t, dir, "use-enc.json", strings.Replace(readString(t, rsa), `"use":"sig"`, `"use":"enc"`, 1))
	mixed := writeJWKS(t, dir, "mixed.json", mustKey(t, "HS256", "h1"), mustKey(t, "ES256", "e1"))
	bad := writeKeyFile(t, dir, "bad.json", `{"keys": [`)
	cases := []struct{ name, input, want string }{
		{"missing file", "mcp_token {\n jwks_file /nonexistent/jwks.json\n}", "jwks_file /nonexistent/jwks.json: open /nonexistent/jwks.json: no such file or directory, at Testfile:2"},
		{"bad JSON", "mcp_token {\n audience a\n jwks_file " + bad + "\n}", "jwks_file " + bad + ": not a JWKS document: unexpected end of JSON input, at Testfile:3"},
		{"no usable key: short oct key", "mcp_token {\n jwks_file " + short + "\n}", "jwks_file " + short + `: no usable key (1 refused; first: key 0: jwk refused: kid "s": HMAC key for HS256 must be at least 32 bytes`},
		{"no usable key: use enc", "mcp_token {\n jwks_file " + weak + "\n}", `no usable key (1 refused; first: key 0: jwk refused: kid "r1": use "enc" is not sig), at Testfile:2`},
		{"symmetric and asymmetric mixed", "mcp_token {\n jwks_file " + mixed + "\n}", "JWKS mixes symmetric and asymmetric keys: refused as a whole, at Testfile:2"},
		{"HMAC algorithm with an RSA set", "mcp_token {\n jwks_file " + rsa + "\n algorithms HS256\n}", "jwks_file: no key of the set fits the algorithms HS256 (its keys are for RS256), at Testfile:2"},
		{"RSA algorithm with an oct set", "mcp_token {\n jwks_file " + hmac + "\n algorithms RS256\n}", "jwks_file: no key of the set fits the algorithms RS256 (its keys are for HS256), at Testfile:2"},
		{"in an issuer block", "mcp_token {\n issuer https://a {\n  jwks_file /nonexistent/a.json\n }\n}", "issuer https://a: jwks_file /nonexistent/a.json: open /nonexistent/a.json: no such file or directory, at Testfile:2"},
		{"two key sources", "mcp_token {\n jwks_uri https://idp/jwks\n jwks_file " + rsa + "\n}", "jwks_file: one key source per policy (public_key, hmac_secret, jwks_uri, jwks_file or discover); one is already set at line 2"},
		{"no argument", "mcp_token {\n jwks_file\n}", "wrong argument count"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			err := c.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestJWKSFileParses: jwks_file at the top level, in an issuer block and
// behind a placeholder (checked at start) becomes the JSON field.
func TestJWKSFileParses(t *testing.T) {
	dir := t.TempDir()
	rsa := writeJWKS(t, dir, "rsa.json", mustKey(t, "RS256", "r1"))
	hmac := writeJWKS(t, dir, "hmac.json", mustKey(t, "HS384", "h1"))
	cases := []struct {
		name, input string
		want        Config
	}{
		{"top level", "mcp_token {\n jwks_file " + rsa + "\n}", Config{KeyConfig: KeyConfig{JWKSFile: rsa}}},
		{"HMAC set with its algorithm", "mcp_token {\n jwks_file " + hmac + "\n algorithms HS384\n}", Config{KeyConfig: KeyConfig{JWKSFile: hmac}, Algorithms: []string{"HS384"}}},
		{"placeholder with HMAC algorithms", "mcp_token {\n jwks_file {env.MCP_JWKS_FILE}\n algorithms HS256\n}", Config{KeyConfig: KeyConfig{JWKSFile: "{env.MCP_JWKS_FILE}"}, Algorithms: []string{"HS256"}}},
		{"issuer block", "mcp_token {\n issuer https://a {\n  jwks_file " + rsa + "\n }\n}", Config{IssuerConfigs: []IssuerConfig{{Issuer: "https://a", KeyConfig: KeyConfig{JWKSFile: rsa}}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			if err := c.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input)); err != nil {
				t.Fatal(err)
			}
			got, _ := json.Marshal(c)
			want, _ := json.Marshal(tc.want)
			if string(got) != string(want) {
				t.Fatalf("got  %s\nwant %s", got, want)
			}
		})
	}
}

// TestJWKSFileVerifies: a jwks_file of asymmetric or HMAC keys verifies
// tokens signed by them (default algorithms: the set's), the verified-token
// cache serves the next request, and provisioning again (a reload) reads
// the file again: a key removed from it no longer verifies.
func TestJWKSFileVerifies(t *testing.T) {
	for _, alg := range []string{"ES256", "RS256", "HS256", "HS512"} {
		t.Run(alg, func(t *testing.T) {
			dir := t.TempDir()
			k1, k2 := mustKey(t, alg, "k1"), mustKey(t, alg, "k2")
			path := writeJWKS(t, dir, "jwks.json", k1, k2)
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			provision := func() *Handler {
				t.Helper()
				h := &Handler{module{Config: Config{KeyConfig: KeyConfig{JWKSFile: path}, Audiences: []string{"aud"}}}}
				if err := h.Provision(ctx); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = h.Cleanup() })
				return h
			}
			h := provision()
			tok1 := k1.MustToken(devtools.TokenOptions{Audience: []string{"aud"}, ExpiresIn: time.Hour})
			tok2 := k2.MustToken(devtools.TokenOptions{Audience: []string{"aud"}, ExpiresIn: time.Hour})
			for i, tok := range []string{tok1, tok2, tok1} {
				if out := h.core.check(httptest.NewRecorder(), newRequest("Bearer "+tok)); out.err != nil {
					t.Fatalf("token %d: %v", i, out.err)
				}
			}
			if st := h.core.tokens.Stats(); st.Hits != 1 {
				t.Fatalf("verified-token cache: %+v, want the third request served from it", st)
			}
			other := mustKey(t, alg, "k1") // same kid, another key
			if out := h.core.check(httptest.NewRecorder(), newRequest("Bearer "+other.MustToken(devtools.TokenOptions{Audience: []string{"aud"}, ExpiresIn: time.Hour}))); out.err == nil {
				t.Fatal("a token signed by a key not in the file was accepted")
			}

			writeJWKS(t, dir, "jwks.json", k2)
			h2 := provision()
			if out := h2.core.check(httptest.NewRecorder(), newRequest("Bearer "+tok1)); out.err == nil {
				t.Fatal("after the reload, a token of the key removed from the file was accepted")
			}
			if out := h2.core.check(httptest.NewRecorder(), newRequest("Bearer "+tok2)); out.err != nil {
				t.Fatalf("after the reload: %v", out.err)
			}
		})
	}
}
