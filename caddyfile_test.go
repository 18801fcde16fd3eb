package mcptoken

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/mcptoken/caddy-mcp-token/devtools"
)

var testRSA = devtools.MustGenerateKey("RS256")

func mustPEM(t testing.TB, kp *devtools.KeyPair) string {
	t.Helper()
	p, err := kp.PublicPEM()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestUnmarshalCaddyfile(t *testing.T) {
	pemText := mustPEM(t, testRSA)
	keyFile := filepath.Join(t.TempDir(), "pub.pem")
	if err := os.WriteFile(keyFile, []byte(pemText), 0o600); err != nil {
		t.Fatal(err)
	}
	skew := func(d time.Duration) *caddy.Duration { c := caddy.Duration(d); return &c }
	cases := []struct {
		name  string
		input string
		want  Config
	}{
		{
			name: "full",
			input: `mcp_token {
				issuer https://a.example https://b.example
				audience mcp-api
				audience other
				algorithms RS256 PS256
				public_key ` + keyFile + `
				required_scopes mcp:read mcp:write
				clock_skew 30s
				token_type at+jwt
				forward_token
			}`,
			want: Config{
				Issuers:        []string{"https://a.example", "https://b.example"},
				Audiences:      []string{"mcp-api", "other"},
				Algorithms:     []string{"RS256", "PS256"},
				PublicKey:      keyFile,
				RequiredScopes: []string{"mcp:read", "mcp:write"},
				ClockSkew:      skew(30 * time.Second),
				TokenType:      "at+jwt",
				ForwardToken:   true,
			},
		},
		{
			name:  "inline PEM by heredoc",
			input: "mcp_token {\n\tpublic_key <<PEM\n" + pemText + "PEM\n}",
			want:  Config{PublicKey: strings.TrimSuffix(pemText, "\n")},
		},
		{
			name:  "hmac secret from a placeholder",
			input: "mcp_token {\n hmac_secret {env.MCP_SECRET}\n}",
			want:  Config{HMACSecret: "{env.MCP_SECRET}"},
		},
		{
			name:  "hmac secret literal, HS512",
			input: "mcp_token {\n hmac_secret " + strings.Repeat("k", 64) + "\n algorithms HS512\n}",
			want:  Config{HMACSecret: strings.Repeat("k", 64), Algorithms: []string{"HS512"}},
		},
		{
			name: "static tokens",
			input: `mcp_token {
				static_token dev-alice alice@company.com read:data write:data
				static_token dev-guest guest
			}`,
			want: Config{StaticTokens: []StaticToken{
				{Token: "dev-alice", ClientID: "alice@company.com", Scopes: []string{"read:data", "write:data"}},
				{Token: "dev-guest", ClientID: "guest", Scopes: []string{}},
			}},
		},
		{
			name:  "zero skew",
			input: "mcp_token {\n hmac_secret {env.S}\n clock_skew 0\n}",
			want:  Config{HMACSecret: "{env.S}", ClockSkew: skew(0)},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			if err := c.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input)); err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !reflect.DeepEqual(c, tc.want) {
				t.Fatalf("got  %+v\nwant %+v", c, tc.want)
			}
		})
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	pemText := mustPEM(t, testRSA)
	ecPEM := mustPEM(t, devtools.MustGenerateKey("ES256"))
	cases := []struct {
		name  string
		input string
		want  string // substring of the error, including the line
	}{
		{"argument on the directive", `mcp_token foo`, "wrong argument count"},
		{"unknown subdirective", "mcp_token {\n issuer x\n frobnicate on\n}", "unrecognized subdirective 'frobnicate', at Testfile:3"},
		{"no verifier", "mcp_token {\n}", "no verifier configured: set public_key, hmac_secret or static_token, at Testfile:1"},
		{"issuer without key", "mcp_token {\n static_token t c\n issuer x\n}", "need a key: set public_key or hmac_secret, at Testfile:1"},
		{"issuer without value", "mcp_token {\n issuer\n}", "wrong argument count"},
		{"bad algorithm", "mcp_token {\n hmac_secret {env.S}\n algorithms HS256 RS257\n}", `algorithms: unsupported algorithm "RS257"`},
		{"alg none", "mcp_token {\n algorithms none\n}", `"none" is never accepted, at Testfile:2`},
		{"lowercase alg", "mcp_token {\n algorithms rs256\n}", `unsupported algorithm "rs256"`},
		{"short hmac secret", "mcp_token {\n hmac_secret too-short-secret\n}", "HMAC key for HS256 must be at least 32 bytes (got 16); generate one with: openssl rand -base64 32, at Testfile:2"},
		{"short HS512 secret", "mcp_token {\n algorithms HS512\n hmac_secret " + strings.Repeat("s", 40) + "\n}", "HMAC key for HS512 must be at least 64 bytes (got 40)"},
		{"hmac with RS256 (confusion)", "mcp_token {\n hmac_secret {env.S}\n algorithms RS256\n}", "algorithm confusion: RS256 needs a public key, not an HMAC secret, at Testfile:2"},
		{"public key with HS256 (confusion)", "mcp_token {\n public_key <<PEM\n" + pemText + "PEM\n algorithms HS256\n}", "algorithm confusion: HS256 needs an HMAC secret, not a public key, at Testfile:2"},
		{"mixed families", "mcp_token {\n public_key <<PEM\n" + pemText + "PEM\n algorithms RS256 HS256\n}", "algorithm confusion: HMAC algorithms (HS256) cannot be allowed together with asymmetric ones (RS256)"},
		{"EC key with RS256", "mcp_token {\n algorithms RS256\n public_key <<PEM\n" + ecPEM + "PEM\n}", "public key (EC P-256) cannot verify RS256; set algorithms to match the key, at Testfile:3"},
		{"both keys", "mcp_token {\n public_key <<PEM\n" + pemText + "PEM\n hmac_secret {env.S}\n}", "only one of public_key or hmac_secret, once (the key is already set at line 2)"},
		{"missing key file", "mcp_token {\n public_key /nonexistent/key.pem\n}", "public_key: public key is neither PEM nor a readable file"},
		{"garbage PEM", "mcp_token {\n public_key \"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\"\n}", "public_key: public key: parsing PUBLIC KEY"},
		{"private key given", "mcp_token {\n public_key \"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\"\n}", "configure the public key only"},
		{"skew too large", "mcp_token {\n hmac_secret {env.S}\n clock_skew 3m\n}", "clock_skew: 3m0s out of range (0s to 2m0s), at Testfile:3"},
		{"skew not a duration", "mcp_token {\n hmac_secret {env.S}\n clock_skew soon\n}", `clock_skew: "soon" is not a duration`},
		{"bad token_type", "mcp_token {\n hmac_secret {env.S}\n token_type JWT\n}", `token_type: "JWT" not supported; the only value is at+jwt`},
		{"forward_token with argument", "mcp_token {\n hmac_secret {env.S}\n forward_token yes\n}", "wrong argument count"},
		{"static token without client", "mcp_token {\n static_token abc\n}", "static_token: want <token> <client_id> [<scope>...], at Testfile:2"},
		{"duplicate static token", "mcp_token {\n static_token abc c1\n static_token abc c2\n}", "static token 2: duplicate token, at Testfile:2"},
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
