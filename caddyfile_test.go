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
	on := true
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
				KeyConfig:      KeyConfig{PublicKey: keyFile},
				RequiredScopes: []string{"mcp:read", "mcp:write"},
				ClockSkew:      skew(30 * time.Second),
				TokenType:      "at+jwt",
				ForwardToken:   true,
			},
		},
		{
			name:  "inline PEM by heredoc",
			input: "mcp_token {\n\tpublic_key <<PEM_END\n" + pemText + "PEM_END\n}",
			want:  Config{KeyConfig: KeyConfig{PublicKey: strings.TrimSuffix(pemText, "\n")}},
		},
		{
			name:  "hmac secret from a placeholder",
			input: "mcp_token {\n hmac_secret {env.MCP_SECRET}\n}",
			want:  Config{KeyConfig: KeyConfig{HMACSecret: "{env.MCP_SECRET}"}},
		},
		{
			name:  "hmac secret literal, HS512",
			input: "mcp_token {\n hmac_secret " + strings.Repeat("k", 64) + "\n algorithms HS512\n}",
			want:  Config{KeyConfig: KeyConfig{HMACSecret: strings.Repeat("k", 64)}, Algorithms: []string{"HS512"}},
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
			name: "jwks and issuer blocks",
			input: `mcp_token {
				jwks_uri https://idp.example.com/.well-known/jwks.json
				issuer https://idp.example.com
				audience mcp-api
				jwks_cache_ttl 30m
				jwks_timeout 5s
				jwks_throttle 1m
				issuer https://other.example.com {
					discover
					audience other-api
					algorithms ES256
					required_scopes other:read
				}
				issuer https://internal {
					hmac_secret {env.INTERNAL_SECRET}
				}
			}`,
			want: Config{
				KeyConfig:    KeyConfig{JWKSURI: "https://idp.example.com/.well-known/jwks.json"},
				Issuers:      []string{"https://idp.example.com"},
				Audiences:    []string{"mcp-api"},
				JWKSCacheTTL: caddy.Duration(30 * time.Minute),
				JWKSTimeout:  caddy.Duration(5 * time.Second),
				JWKSThrottle: caddy.Duration(time.Minute),
				IssuerConfigs: []IssuerConfig{
					{Issuer: "https://other.example.com", KeyConfig: KeyConfig{Discover: true}, Audiences: []string{"other-api"}, Algorithms: []string{"ES256"}, RequiredScopes: []string{"other:read"}},
					{Issuer: "https://internal", KeyConfig: KeyConfig{HMACSecret: "{env.INTERNAL_SECRET}"}},
				},
			},
		},
		{
			name: "introspection",
			input: `mcp_token {
				audience mcp-api
				introspection https://as.example.com/oauth/introspect {
					client_id mcp-resource-server
					client_secret {env.INTROSPECTION_SECRET}
					auth_method post
					timeout 5s
					cache_ttl 0
					negative_cache_ttl 2s
					cache_size 5000
					issuer https://as.example.com
					require_issuer
					require_audience
					required_scopes mcp:read
				}
			}`,
			want: Config{
				Audiences: []string{"mcp-api"},
				Introspection: &IntrospectionConfig{
					URL: "https://as.example.com/oauth/introspect", ClientID: "mcp-resource-server",
					ClientSecret: "{env.INTROSPECTION_SECRET}", AuthMethod: "post",
					Timeout: caddy.Duration(5 * time.Second), CacheTTL: skew(0),
					NegativeCacheTTL: caddy.Duration(2 * time.Second), CacheSize: 5000,
					Issuers: []string{"https://as.example.com"}, RequireIssuer: true, RequireAudience: &on,
					RequiredScopes: []string{"mcp:read"},
				},
			},
		},
		{
			name:  "public key from a file placeholder",
			input: "mcp_token {\n public_key {file./etc/caddy/issuer.pem}\n algorithms ES256\n}",
			want:  Config{KeyConfig: KeyConfig{PublicKey: "{file./etc/caddy/issuer.pem}"}, Algorithms: []string{"ES256"}},
		},
		{
			name:  "zero skew",
			input: "mcp_token {\n hmac_secret {env.S}\n clock_skew 0\n}",
			want:  Config{KeyConfig: KeyConfig{HMACSecret: "{env.S}"}, ClockSkew: skew(0)},
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
		{"no verifier", "mcp_token {\n}", "no verifier configured: set public_key, hmac_secret, jwks_uri, jwks_file, an issuer block, introspection or static_token, at Testfile:1"},
		{"issuer without key", "mcp_token {\n static_token t c\n issuer x\n}", "issuer, audience and algorithms need a key: set public_key, hmac_secret, jwks_uri, jwks_file or discover (or use issuer blocks), at Testfile:1"},
		{"issuer without value", "mcp_token {\n issuer\n}", "wrong argument count"},
		{"bad algorithm", "mcp_token {\n hmac_secret {env.S}\n algorithms HS256 RS257\n}", `algorithms: unsupported algorithm "RS257"`},
		{"alg none", "mcp_token {\n algorithms none\n}", `"none" is never accepted, at Testfile:2`},
		{"lowercase alg", "mcp_token {\n algorithms rs256\n}", `unsupported algorithm "rs256"`},
		{"short hmac secret", "mcp_token {\n hmac_secret too-short-secret\n}", "HMAC key for HS256 must be at least 32 bytes (got 16); generate one with: openssl rand -base64 32, at Testfile:2"},
		{"short HS512 secret", "mcp_token {\n algorithms HS512\n hmac_secret " + strings.Repeat("s", 40) + "\n}", "HMAC key for HS512 must be at least 64 bytes (got 40)"},
		{"hmac with RS256 (confusion)", "mcp_token {\n hmac_secret {env.S}\n algorithms RS256\n}", "algorithm confusion: RS256 needs a public key, not an HMAC secret, at Testfile:2"},
		{"public key with HS256 (confusion)", "mcp_token {\n public_key <<PEM_END\n" + pemText + "PEM_END\n algorithms HS256\n}", "algorithm confusion: HS256 needs an HMAC secret, not a public key, at Testfile:2"},
		{"mixed families", "mcp_token {\n public_key <<PEM_END\n" + pemText + "PEM_END\n algorithms RS256 HS256\n}", "algorithm confusion: HMAC algorithms (HS256) cannot be allowed together with asymmetric ones (RS256)"},
		{"EC key with RS256", "mcp_token {\n algorithms RS256\n public_key <<PEM_END\n" + ecPEM + "PEM_END\n}", "public key (EC P-256) cannot verify RS256; set algorithms to match the key, at Testfile:3"},
		{"both keys", "mcp_token {\n public_key <<PEM_END\n" + pemText + "PEM_END\n hmac_secret {env.S}\n}", "hmac_secret: one key source per policy (public_key, hmac_secret, jwks_uri, jwks_file or discover); one is already set at line 2, at Testfile:"},
		{"missing key file", "mcp_token {\n public_key /nonexistent/key.pem\n}", `public_key: public key file "/nonexistent/key.pem": no such file or directory`},
		{"garbage PEM", "mcp_token {\n public_key \"-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\"\n}", "public_key: public key: parsing PUBLIC KEY"},
		{"private key given", "mcp_token {\n public_key \"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\"\n}", "configure the public key only"},
		{"skew too large", "mcp_token {\n hmac_secret {env.S}\n clock_skew 3m\n}", "clock_skew: 3m0s out of range (0s to 2m0s), at Testfile:3"},
		{"skew not a duration", "mcp_token {\n hmac_secret {env.S}\n clock_skew soon\n}", `clock_skew: "soon" is not a duration`},
		{"bad token_type", "mcp_token {\n hmac_secret {env.S}\n token_type JWT\n}", `token_type: "JWT" not supported; the only value is at+jwt`},
		{"forward_token with argument", "mcp_token {\n hmac_secret {env.S}\n forward_token yes\n}", "wrong argument count"},
		{"static token without client", "mcp_token {\n static_token abc\n}", "static_token: want <token> <client_id> [<scope>...], at Testfile:2"},
		{"HMAC with a JWKS", "mcp_token {\n jwks_uri https://idp.example.com/jwks\n algorithms HS256\n}", "HMAC algorithms cannot be used with JWKS endpoints (HS256), at Testfile:2"},
		{"relative jwks_uri", "mcp_token {\n jwks_uri /jwks.json\n}", `jwks_uri: "/jwks.json" is not an absolute http(s) URL, at Testfile:2`},
		{"jwks_uri and public key", "mcp_token {\n jwks_uri https://idp/jwks\n discover\n}", "discover: one key source per policy"},
		{"discover needs one issuer", "mcp_token {\n issuer https://a https://b\n discover\n}", "discover needs exactly one issuer, at Testfile:3"},
		{"negative ttl", "mcp_token {\n jwks_uri https://idp/jwks\n jwks_cache_ttl -1m\n}", "jwks_cache_ttl: -1m0s must not be negative, at Testfile:3"},
		{"bad timeout", "mcp_token {\n jwks_uri https://idp/jwks\n jwks_timeout fast\n}", `jwks_timeout: "fast" is not a duration`},
		{"issuer block without key", "mcp_token {\n issuer https://a {\n  audience x\n }\n}", "issuer https://a: set one of public_key, hmac_secret, jwks_uri, jwks_file or discover"},
		{"issuer block with two issuers", "mcp_token {\n issuer https://a https://b {\n  jwks_uri https://a/jwks\n }\n}", "issuer block: name exactly one issuer per block, at Testfile:2"},
		{"unknown option in issuer block", "mcp_token {\n issuer https://a {\n  jwks_uri https://a/jwks\n  forward_token\n }\n}", "issuer block: unrecognized subdirective 'forward_token'"},
		{"confusion inside an issuer block", "mcp_token {\n issuer https://a {\n  jwks_uri https://a/jwks\n }\n issuer https://b {\n  hmac_secret {env.S}\n  algorithms RS256\n }\n}", "issuer https://b: algorithm confusion: RS256 needs a public key, not an HMAC secret, at Testfile:5"},
		{"same issuer twice", "mcp_token {\n issuer https://a {\n  jwks_uri https://a/jwks\n }\n issuer https://a {\n  jwks_uri https://a/jwks2\n }\n}", `issuer "https://a" is configured twice, at Testfile:1`},
		{"top-level key without issuer beside blocks", "mcp_token {\n jwks_uri https://x/jwks\n issuer https://a {\n  jwks_uri https://a/jwks\n }\n}", "each key source must name its issuer"},
		{"introspection without client_id", "mcp_token {\n introspection https://as/introspect {\n  client_secret x\n }\n}", "introspection: client_id is required to call the introspection endpoint, at Testfile:2"},
		{"introspection timeout too long", "mcp_token {\n introspection https://as/introspect {\n  client_id c\n  timeout 90s\n }\n}", "timeout: 1m30s out of range (0s to 1m0s), at Testfile:4"},
		{"introspection bad auth method", "mcp_token {\n introspection https://as/introspect {\n  client_id c\n  auth_method jwt\n }\n}", `auth_method: "jwt" not supported; use basic (client_secret_basic) or post (client_secret_post), at Testfile:4`},
		{"introspection bad cache size", "mcp_token {\n introspection https://as/introspect {\n  client_id c\n  cache_size lots\n }\n}", `cache_size: "lots" is not a positive number of entries`},
		{"introspection relative url", "mcp_token {\n introspection /introspect {\n  client_id c\n }\n}", `introspection: "/introspect" is not an absolute http(s) URL, at Testfile:2`},
		{"introspection unknown option", "mcp_token {\n introspection https://as/introspect {\n  client_id c\n  jwks_uri x\n }\n}", "introspection: unrecognized subdirective 'jwks_uri', at Testfile:4"},
		{"two introspection blocks", "mcp_token {\n introspection https://as/i {\n  client_id c\n }\n introspection https://as/j {\n  client_id c\n }\n}", "only one introspection endpoint per mcp_token, at Testfile:5"},
		{"comma in required_scopes", "mcp_token {\n static_token t c\n required_scopes mcp:read,mcp:write\n}", `required_scopes: scope "mcp:read,mcp:write" contains a comma: scopes are space-separated (write mcp:read mcp:write), at Testfile:3`},
		{"comma in tool_scopes", "mcp_token {\n static_token t c\n tool_scopes deploy a,b\n}", `tool_scopes: scope "a,b" contains a comma`},
		{"comma in a static token's scopes", "mcp_token {\n static_token t c mcp:read,x\n}", `static_token: scope "mcp:read,x" contains a comma: scopes are space-separated (write mcp:read x), at Testfile:2`},
		{"comma in an issuer block", "mcp_token {\n issuer https://a {\n  jwks_uri https://a/jwks\n  required_scopes a,b\n }\n}", `required_scopes: scope "a,b" contains a comma: scopes are space-separated (write a b), at Testfile:4`},
		{"token_cache without size", "mcp_token {\n static_token t c\n token_cache\n}", "token_cache: want <size> [<ttl>] (for example 10000 5m) or off, at Testfile:3"},
		{"token_cache bad size", "mcp_token {\n static_token t c\n token_cache many\n}", `token_cache: size "many" is not a number of tokens`},
		{"token_cache bad ttl", "mcp_token {\n static_token t c\n token_cache 10 soon\n}", `token_cache: ttl "soon" is not a positive duration`},
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
