package verifiers_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcptoken/caddy-mcp-token/devtools"
	"github.com/mcptoken/caddy-mcp-token/jwks"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

var (
	t0        = time.Unix(1_900_000_000, 0)
	fixedNow  = func() time.Time { return t0 }
	issuer    = "https://auth.example.com"
	audience  = "mcp-api"
	rsaKey    = devtools.MustGenerateKey("RS256")
	otherRSA  = devtools.MustGenerateKey("RS256")
	ecKey     = devtools.MustGenerateKey("ES256")
	edKey     = devtools.MustGenerateKey("EdDSA")
	hmacKey   = devtools.MustGenerateKey("HS256")
	hs512Key  = devtools.MustGenerateKey("HS512")
	psKey     = &devtools.KeyPair{Alg: "PS256", Kid: "ps", Private: rsaKey.Private, Public: rsaKey.Public}
	baseOpts  = devtools.TokenOptions{Issuer: issuer, Audience: []string{audience}, Scopes: []string{"mcp:read"}, Now: fixedNow}
	jkuServed atomic.Int64
)

func opts(mod func(*devtools.TokenOptions)) devtools.TokenOptions {
	o := baseOpts
	o.Claims = map[string]any{}
	o.Header = map[string]any{}
	if mod != nil {
		mod(&o)
	}
	return o
}

func newJWT(t *testing.T, key any, mod func(*verifiers.JWTConfig)) *verifiers.JWT {
	t.Helper()
	cfg := verifiers.JWTConfig{
		Issuers:   []string{issuer},
		Audiences: []string{audience},
		Keys:      verifiers.NewStaticKey(key),
		ClockSkew: verifiers.DefaultClockSkew,
		Now:       fixedNow,
	}
	if mod != nil {
		mod(&cfg)
	}
	v, err := verifiers.NewJWT(cfg)
	if err != nil {
		t.Fatalf("NewJWT: %v", err)
	}
	return v
}

// rawToken builds a compact JWS from a literal header, claims and signature.
func rawToken(header, claims map[string]any, sig []byte) string {
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	enc := base64.RawURLEncoding.EncodeToString
	return enc(h) + "." + enc(c) + "." + enc(sig)
}

// hmacWith signs header+claims with HS256 and an arbitrary key (for key
// confusion: the "secret" is the RSA public key's PEM).
func hmacWith(key []byte, claims jwt.MapClaims) string {
	tok := jwt.NewWithClaims(jwt.SigningMethodHS256, claims)
	s, err := tok.SignedString(key)
	if err != nil {
		panic(err)
	}
	return s
}

func validClaims() jwt.MapClaims {
	return jwt.MapClaims{"iss": issuer, "aud": audience, "sub": "u1", "exp": t0.Add(time.Hour).Unix(), "iat": t0.Unix()}
}

func TestJWTVerify(t *testing.T) {
	jku := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		jkuServed.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer jku.Close()
	rsaPEM, _ := rsaKey.PublicPEM()
	attackerJWK, _ := otherRSA.JWK()

	rsaV := newJWT(t, rsaKey.Public, nil)
	cases := []struct {
		name  string
		v     *verifiers.JWT
		token string
		want  error // nil means accepted
	}{
		{"valid RS256", rsaV, rsaKey.MustToken(opts(nil)), nil},
		{"valid ES256", newJWT(t, ecKey.Public, nil), ecKey.MustToken(opts(nil)), nil},
		{"valid EdDSA", newJWT(t, edKey.Public, nil), edKey.MustToken(opts(nil)), nil},
		{"valid HS256", newJWT(t, hmacKey.Public, nil), hmacKey.MustToken(opts(nil)), nil},
		{"valid HS512", newJWT(t, hs512Key.Public, func(c *verifiers.JWTConfig) { c.Algorithms = []string{"HS512"} }), hs512Key.MustToken(opts(nil)), nil},
		{"valid PS256", newJWT(t, rsaKey.Public, func(c *verifiers.JWTConfig) { c.Algorithms = []string{"PS256"} }), psKey.MustToken(opts(nil)), nil},
		{"bad signature", rsaV, tamperSignature(rsaKey.MustToken(opts(nil))), verifiers.ErrBadSignature},
		{"tampered claims", rsaV, tamperClaims(rsaKey.MustToken(opts(nil))), verifiers.ErrBadSignature},
		{"wrong key", rsaV, otherRSA.MustToken(opts(nil)), verifiers.ErrBadSignature},
		{"alg none", rsaV, rawToken(map[string]any{"alg": "none"}, validClaims(), nil), verifiers.ErrUnsupportedAlgorithm},
		{"alg None", rsaV, rawToken(map[string]any{"alg": "None"}, validClaims(), nil), verifiers.ErrUnsupportedAlgorithm},
		{"alg NONE", rsaV, rawToken(map[string]any{"alg": "NONE"}, validClaims(), nil), verifiers.ErrUnsupportedAlgorithm},
		{"alg nOnE with signature", rsaV, rawToken(map[string]any{"alg": "nOnE"}, validClaims(), []byte("x")), verifiers.ErrUnsupportedAlgorithm},
		{"alg not allowed (ES256 to an RS256 verifier)", rsaV, ecKey.MustToken(opts(nil)), verifiers.ErrUnsupportedAlgorithm},
		{"key confusion: HS256 signed with the RSA public key PEM", rsaV, hmacWith([]byte(rsaPEM), validClaims()), verifiers.ErrUnsupportedAlgorithm},
		{"key confusion: HS256 with the PEM to a verifier allowing RS256 and RS512", newJWT(t, rsaKey.Public, func(c *verifiers.JWTConfig) { c.Algorithms = []string{"RS256", "RS512"} }), hmacWith([]byte(rsaPEM), validClaims()), verifiers.ErrUnsupportedAlgorithm},
		{"jku header is never followed", rsaV, otherRSA.MustToken(opts(func(o *devtools.TokenOptions) { o.Header["jku"] = jku.URL })), verifiers.ErrBadSignature},
		{"x5u header is never followed", rsaV, otherRSA.MustToken(opts(func(o *devtools.TokenOptions) { o.Header["x5u"] = jku.URL })), verifiers.ErrBadSignature},
		{"embedded jwk is never used", rsaV, otherRSA.MustToken(opts(func(o *devtools.TokenOptions) { o.Header["jwk"] = attackerJWK })), verifiers.ErrBadSignature},
		{"x5c header is never used", rsaV, otherRSA.MustToken(opts(func(o *devtools.TokenOptions) { o.Header["x5c"] = []string{"MIIB"} })), verifiers.ErrBadSignature},
		{"expired", rsaV, rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.ExpiresIn = -5 * time.Minute })), verifiers.ErrExpired},
		{"expired within skew is accepted", rsaV, rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.ExpiresIn = -30 * time.Second })), nil},
		{"expired beyond a smaller skew", newJWT(t, rsaKey.Public, func(c *verifiers.JWTConfig) { c.ClockSkew = 10 * time.Second }), rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.ExpiresIn = -30 * time.Second })), verifiers.ErrExpired},
		{"missing exp", rsaV, rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.NoExpiry = true })), verifiers.ErrMissingClaim},
		{"nbf in the future", rsaV, rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Claims["nbf"] = t0.Add(5 * time.Minute).Unix() })), verifiers.ErrNotYetValid},
		{"nbf within skew is accepted", rsaV, rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Claims["nbf"] = t0.Add(30 * time.Second).Unix() })), nil},
		{"iat in the future", rsaV, rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Claims["iat"] = t0.Add(10 * time.Minute).Unix() })), verifiers.ErrNotYetValid},
		{"wrong iss", rsaV, rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Issuer = "https://evil.example.com" })), verifiers.ErrBadIssuer},
		{"missing iss", rsaV, rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Claims["iss"] = nil })), verifiers.ErrBadIssuer},
		{"one of several issuers", newJWT(t, rsaKey.Public, func(c *verifiers.JWTConfig) { c.Issuers = []string{"https://a", issuer} }), rsaKey.MustToken(opts(nil)), nil},
		{"wrong aud", rsaV, rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Audience = []string{"other-api"} })), verifiers.ErrBadAudience},
		{"missing aud", rsaV, rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Audience = nil })), verifiers.ErrBadAudience},
		{"aud list containing ours", rsaV, rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Audience = []string{"x", audience, "y"} })), nil},
		{"aud list without ours", rsaV, rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Audience = []string{"x", "y"} })), verifiers.ErrBadAudience},
		{"one of several audiences", newJWT(t, rsaKey.Public, func(c *verifiers.JWTConfig) { c.Audiences = []string{"other", audience} }), rsaKey.MustToken(opts(nil)), nil},
		{"unknown crit", rsaV, rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Header["crit"] = []string{"exp"}; o.Header["exp"] = 1 })), verifiers.ErrCritical},
		{"b64 crit", rsaV, rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Header["crit"] = []string{"b64"}; o.Header["b64"] = false })), verifiers.ErrCritical},
		{"typ at+jwt required, JWT given", newJWT(t, rsaKey.Public, func(c *verifiers.JWTConfig) { c.TokenType = "at+jwt" }), rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Header["typ"] = "JWT" })), verifiers.ErrBadType},
		{"typ at+jwt required, none given", newJWT(t, rsaKey.Public, func(c *verifiers.JWTConfig) { c.TokenType = "at+jwt" }), rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { delete(o.Header, "typ"); o.Header["typ"] = nil })), verifiers.ErrBadType},
		{"typ at+jwt accepted", newJWT(t, rsaKey.Public, func(c *verifiers.JWTConfig) { c.TokenType = "at+jwt" }), rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Header["typ"] = "at+jwt" })), nil},
		{"typ application/at+jwt accepted", newJWT(t, rsaKey.Public, func(c *verifiers.JWTConfig) { c.TokenType = "at+jwt" }), rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Header["typ"] = "application/AT+JWT" })), nil},
		{"missing required scope", newJWT(t, rsaKey.Public, func(c *verifiers.JWTConfig) { c.RequiredScopes = []string{"mcp:read", "mcp:write"} }), rsaKey.MustToken(opts(nil)), verifiers.ErrInsufficientScope},
		{"required scopes via scp list", newJWT(t, rsaKey.Public, func(c *verifiers.JWTConfig) { c.RequiredScopes = []string{"a", "b"} }), rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Scopes = nil; o.Claims["scp"] = []string{"a", "b"} })), nil},
		{"not a JWT", rsaV, "opaque-token", verifiers.ErrMalformed},
		{"four parts", rsaV, rsaKey.MustToken(opts(nil)) + ".x", verifiers.ErrMalformed},
		{"padding in signature", rsaV, rsaKey.MustToken(opts(nil)) + "==", verifiers.ErrMalformed},
		{"oversized", rsaV, "eyJ" + strings.Repeat("a", verifiers.MaxTokenSize), verifiers.ErrMalformed},
		{"kid not a string", rsaV, rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Header["kid"] = 7 })), verifiers.ErrMalformed},
		// Time claims outside 0..year 9999 are malformed, whatever the
		// claim: int64(1e300) is undefined, and nbf 1e300 used to pass as
		// if in the past (issue 10 item 11).
		{"nbf 1e300", rsaV, rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Claims["nbf"] = 1e300 })), verifiers.ErrMalformed},
		{"iat 1e300", rsaV, rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Claims["iat"] = 1e300 })), verifiers.ErrMalformed},
		{"exp 1e300", rsaV, rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Claims["exp"] = 1e300 })), verifiers.ErrMalformed},
		{"nbf -1e300", rsaV, rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Claims["nbf"] = -1e300 })), verifiers.ErrMalformed},
		{"nbf negative", rsaV, rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Claims["nbf"] = -1 })), verifiers.ErrMalformed},
		{"iat negative", rsaV, rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Claims["iat"] = -5 })), verifiers.ErrMalformed},
		{"exp after year 9999", rsaV, rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Claims["exp"] = int64(253402300800) })), verifiers.ErrMalformed},
		{"nbf beyond int64 seconds", rsaV, rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Claims["nbf"] = 9.3e18 })), verifiers.ErrMalformed},
		{"nbf null", rsaV, rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Claims["nbf"] = nil })), verifiers.ErrMalformed},
		{"exp not a number", rsaV, rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Claims["exp"] = "tomorrow" })), verifiers.ErrMalformed},
		{"nbf with a fraction is accepted", rsaV, rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Claims["nbf"] = float64(t0.Unix()) - 0.5 })), nil},
		{"nbf 0 is accepted", rsaV, rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Claims["nbf"] = 0 })), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := tc.v.Verify(context.Background(), tc.token)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("want accepted, got %v", err)
				}
				if tok.Subject != "fastmcp-user" || tok.Issuer != issuer {
					t.Fatalf("identity not read: %+v", tok)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("want %v, got %v", tc.want, err)
			}
			if o := verifiers.Classify(err); o.Status != 401 && o.Status != 403 {
				t.Fatalf("a bad token must be 401/403, got %d", o.Status)
			}
		})
	}
	if n := jkuServed.Load(); n != 0 {
		t.Fatalf("the jku/x5u URL was fetched %d times", n)
	}
}

// TestJWTKeyConfusionHS256CannotBeAllowed: the key confusion attack needs
// a verifier that allows HS256 next to (or instead of) a public key. No
// configuration can produce one: each attempt is refused when the
// verifier is built, so the attack has nothing to run against.
func TestJWTKeyConfusionHS256CannotBeAllowed(t *testing.T) {
	rsaPEM, _ := rsaKey.PublicPEM()
	cases := []struct {
		name  string
		keys  verifiers.KeySource
		algs  []string
		wants string
	}{
		{"HS256 alone with an RSA public key", verifiers.NewStaticKey(rsaKey.Public), []string{"HS256"}, "HS256 needs an HMAC secret, not a public key"},
		{"HS256 next to RS256 with an RSA public key", verifiers.NewStaticKey(rsaKey.Public), []string{"RS256", "HS256"}, "cannot be allowed together with asymmetric ones"},
		{"HS512 with an EC public key", verifiers.NewStaticKey(ecKey.Public), []string{"HS512"}, "HS512 needs an HMAC secret, not a public key"},
		{"HS256 with a JWKS key set", jwks.NewSet(nil), []string{"HS256"}, "HMAC algorithms cannot be used with JWKS endpoints"},
		{"RS256 with the PEM bytes as an HMAC secret", verifiers.NewStaticKey([]byte(rsaPEM)), []string{"RS256"}, "RS256 needs a public key, not an HMAC secret"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := verifiers.NewJWT(verifiers.JWTConfig{Keys: tc.keys, Algorithms: tc.algs, Audiences: []string{audience}})
			if err == nil || !strings.Contains(err.Error(), "algorithm confusion") || !strings.Contains(err.Error(), tc.wants) {
				t.Fatalf("NewJWT: verifier %v, error %v; want an algorithm confusion error containing %q", v != nil, err, tc.wants)
			}
		})
	}
}

func tamperSignature(tok string) string {
	i := strings.LastIndexByte(tok, '.')
	sig, _ := base64.RawURLEncoding.DecodeString(tok[i+1:])
	sig[0] ^= 0x01
	return tok[:i+1] + base64.RawURLEncoding.EncodeToString(sig)
}

func tamperClaims(tok string) string {
	parts := strings.Split(tok, ".")
	c, _ := base64.RawURLEncoding.DecodeString(parts[1])
	c = []byte(strings.Replace(string(c), `"fastmcp-user"`, `"administrator"`, 1))
	parts[1] = base64.RawURLEncoding.EncodeToString(c)
	return strings.Join(parts, ".")
}

func TestScopeClaims(t *testing.T) {
	v := newJWT(t, rsaKey.Public, nil)
	cases := []struct {
		name   string
		claims map[string]any
		want   []string
	}{
		{"scope string", map[string]any{"scope": "a b  c"}, []string{"a", "b", "c"}},
		{"scp list", map[string]any{"scp": []string{"a", "b"}}, []string{"a", "b"}},
		{"scp string", map[string]any{"scp": "a b"}, []string{"a", "b"}},
		// RFC 6749 §3.3: scope-token separators are single spaces (0x20)
		// only; the authorization server reads other whitespace as part of
		// one scope, and so must we (issue 10 item 4).
		{"no-break space stays in one scope", map[string]any{"scope": "mcp:read\u00a0deploy:write"}, []string{"mcp:read\u00a0deploy:write"}},
		{"tab stays in one scope", map[string]any{"scope": "mcp:read\tdeploy:write"}, []string{"mcp:read\tdeploy:write"}},
		{"newline stays in one scope", map[string]any{"scope": "a\nb c"}, []string{"a\nb", "c"}},
		{"ideographic space stays in one scope", map[string]any{"scope": "a\u3000b"}, []string{"a\u3000b"}},
		{"scp string with other whitespace", map[string]any{"scp": "a\u2003b  c "}, []string{"a\u2003b", "c"}},
		{"leading and trailing spaces", map[string]any{"scope": "  a  b  "}, []string{"a", "b"}},
		{"only spaces", map[string]any{"scope": "   "}, nil},
		{"scope wins over scp", map[string]any{"scope": "a", "scp": []string{"b"}}, []string{"a"}},
		{"none", map[string]any{}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := v.Verify(context.Background(), rsaKey.MustToken(opts(func(o *devtools.TokenOptions) {
				o.Scopes = nil
				for k, val := range tc.claims {
					o.Claims[k] = val
				}
			})))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(tok.Scopes, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("scopes %q, want %q", tok.Scopes, tc.want)
			}
		})
	}
}

func TestClientID(t *testing.T) {
	v := newJWT(t, rsaKey.Public, nil)
	cases := []struct {
		name   string
		claims map[string]any
		want   string
	}{
		{"client_id", map[string]any{"client_id": "c1", "azp": "a1"}, "c1"},
		{"azp", map[string]any{"azp": "a1"}, "a1"},
		{"sub", map[string]any{}, "fastmcp-user"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := v.Verify(context.Background(), rsaKey.MustToken(opts(func(o *devtools.TokenOptions) {
				for k, val := range tc.claims {
					o.Claims[k] = val
				}
			})))
			if err != nil {
				t.Fatal(err)
			}
			if tok.ClientID != tc.want {
				t.Fatalf("client id %q, want %q", tok.ClientID, tc.want)
			}
			if got := tok.ExpiresAt; !got.Equal(t0.Add(time.Hour)) {
				t.Fatalf("exp %v", got)
			}
		})
	}
}

func TestNewJWTRefusals(t *testing.T) {
	cases := []struct {
		name string
		cfg  verifiers.JWTConfig
		want string
	}{
		{"HS256 with a public key", verifiers.JWTConfig{Keys: verifiers.NewStaticKey(rsaKey.Public), Algorithms: []string{"HS256"}}, "algorithm confusion"},
		{"RS256 with a secret", verifiers.JWTConfig{Keys: verifiers.NewStaticKey(hmacKey.Public), Algorithms: []string{"RS256"}}, "algorithm confusion"},
		{"HMAC and RSA mixed", verifiers.JWTConfig{Keys: verifiers.NewStaticKey(rsaKey.Public), Algorithms: []string{"RS256", "HS256"}}, "algorithm confusion"},
		{"short HS256 secret", verifiers.JWTConfig{Keys: verifiers.NewStaticKey([]byte(strings.Repeat("s", 31))), Algorithms: []string{"HS256"}}, "at least 32 bytes"},
		{"short HS384 secret", verifiers.JWTConfig{Keys: verifiers.NewStaticKey([]byte(strings.Repeat("s", 47))), Algorithms: []string{"HS384"}}, "at least 48 bytes"},
		{"short HS512 secret", verifiers.JWTConfig{Keys: verifiers.NewStaticKey([]byte(strings.Repeat("s", 63))), Algorithms: []string{"HS512"}}, "at least 64 bytes"},
		{"empty secret", verifiers.JWTConfig{Keys: verifiers.NewStaticKey([]byte{})}, "at least 32 bytes"},
		{"alg none", verifiers.JWTConfig{Keys: verifiers.NewStaticKey(rsaKey.Public), Algorithms: []string{"None"}}, `"none" is never accepted`},
		{"unknown alg", verifiers.JWTConfig{Keys: verifiers.NewStaticKey(rsaKey.Public), Algorithms: []string{"rs256"}}, "unsupported algorithm"},
		{"EC key with RS256", verifiers.JWTConfig{Keys: verifiers.NewStaticKey(ecKey.Public), Algorithms: []string{"RS256"}}, "cannot verify RS256"},
		{"P-256 key with ES384", verifiers.JWTConfig{Keys: verifiers.NewStaticKey(ecKey.Public), Algorithms: []string{"ES384"}}, "cannot verify ES384"},
		{"skew above 120s", verifiers.JWTConfig{Keys: verifiers.NewStaticKey(rsaKey.Public), ClockSkew: 121 * time.Second}, "clock skew"},
		{"negative skew", verifiers.JWTConfig{Keys: verifiers.NewStaticKey(rsaKey.Public), ClockSkew: -time.Second}, "clock skew"},
		{"no key", verifiers.JWTConfig{}, "key source is required"},
		{"bad token type", verifiers.JWTConfig{Keys: verifiers.NewStaticKey(rsaKey.Public), TokenType: "JWT"}, "token type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := verifiers.NewJWT(tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestLoadPublicKeyNeverEchoesASecret(t *testing.T) {
	secret := "hunter2-this-is-an-hmac-secret-not-a-key"
	_, err := verifiers.LoadPublicKey(secret)
	if err == nil || strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), "value not shown") {
		t.Fatalf("error %v", err)
	}
	_, err = verifiers.LoadPublicKey("/etc/caddy/missing.pem")
	if err == nil || !strings.Contains(err.Error(), `public key file "/etc/caddy/missing.pem": no such file or directory`) {
		t.Fatalf("a missing file should be named: %v", err)
	}
}

func TestDefaultAlgorithms(t *testing.T) {
	for _, kp := range []*devtools.KeyPair{rsaKey, ecKey, edKey, hmacKey} {
		v, err := verifiers.NewJWT(verifiers.JWTConfig{Keys: verifiers.NewStaticKey(kp.Public), Now: fixedNow})
		if err != nil {
			t.Fatalf("%s: %v", kp.Alg, err)
		}
		if got := strings.Join(v.Algorithms(), " "); got != kp.Alg {
			t.Fatalf("default algorithms for %s key: %q", kp.Alg, got)
		}
	}
}

func TestPSSSaltLength(t *testing.T) {
	// A PS256 signature with a salt length other than the hash length is
	// refused (RFC 7518 §3.5), though golang-jwt alone would accept it.
	method := &jwt.SigningMethodRSAPSS{SigningMethodRSA: jwt.SigningMethodPS256.SigningMethodRSA,
		Options: &rsaPSSOptions20}
	tok := jwt.NewWithClaims(method, validClaims())
	s, err := tok.SignedString(rsaKey.Private)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jwt.Parse(s, func(*jwt.Token) (any, error) { return rsaKey.Public, nil }, jwt.WithTimeFunc(fixedNow)); err != nil {
		t.Fatalf("precondition: golang-jwt alone accepts it: %v", err)
	}
	v := newJWT(t, rsaKey.Public, func(c *verifiers.JWTConfig) { c.Algorithms = []string{"PS256"} })
	if _, err := v.Verify(context.Background(), s); !errors.Is(err, verifiers.ErrBadSignature) {
		t.Fatalf("want bad signature, got %v", err)
	}
}

type failingKeys struct{ err error }

func (f failingKeys) Key(context.Context, *verifiers.Algorithm, string) (any, error) {
	return nil, f.err
}

// A key source's technical failure must stay a technical failure (503),
// never turn into a 401 on the way through golang-jwt.
func TestKeySourceFailureStaysTechnical(t *testing.T) {
	v, err := verifiers.NewJWT(verifiers.JWTConfig{Keys: failingKeys{fmt.Errorf("%w: down", verifiers.ErrUnavailable)}, Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Verify(context.Background(), rsaKey.MustToken(opts(nil)))
	if !errors.Is(err, verifiers.ErrUnavailable) || verifiers.Classify(err).Status != 503 {
		t.Fatalf("got %v (%+v)", err, verifiers.Classify(err))
	}
}
