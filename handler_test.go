package mcptoken

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

type fakeVerifier struct {
	tok *verifiers.AccessToken
	err error
}

func (f fakeVerifier) Verify(context.Context, string) (*verifiers.AccessToken, error) {
	return f.tok, f.err
}

func newRequest(auth ...string) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader("{}"))
	for _, a := range auth {
		r.Header.Add("Authorization", a)
	}
	repl := caddy.NewReplacer()
	return r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
}

func TestHandlerOutcomes(t *testing.T) {
	good := &verifiers.AccessToken{ClientID: "c1", Subject: "s1", Scopes: []string{"a", "b"}}
	cases := []struct {
		name      string
		verifier  fakeVerifier
		auth      []string
		status    int
		challenge string
		retry     string
	}{
		{"accepted", fakeVerifier{tok: good}, []string{"Bearer abc"}, 200, "", ""},
		{"scheme is case-insensitive", fakeVerifier{tok: good}, []string{"bEaReR abc"}, 200, "", ""},
		{"no header", fakeVerifier{tok: good}, nil, 401, "Bearer", ""},
		{"basic scheme is no bearer", fakeVerifier{tok: good}, []string{"Basic dXNlcjpwYXNz"}, 401, "Bearer", ""},
		{"two Authorization headers", fakeVerifier{tok: good}, []string{"Bearer a", "Bearer b"}, 400, `Bearer error="invalid_request", error_description="Malformed authorization request"`, ""},
		{"empty bearer", fakeVerifier{tok: good}, []string{"Bearer "}, 400, `Bearer error="invalid_request", error_description="Malformed authorization request"`, ""},
		{"bad characters", fakeVerifier{tok: good}, []string{"Bearer a,b"}, 400, `Bearer error="invalid_request", error_description="Malformed authorization request"`, ""},
		{"expired", fakeVerifier{err: fmt.Errorf("%w: x", verifiers.ErrExpired)}, []string{"Bearer abc"}, 401, `Bearer error="invalid_token", error_description="Token has expired"`, ""},
		{"scope", fakeVerifier{err: &verifiers.ScopeError{Required: []string{"x", "y"}, Missing: []string{"y"}}}, []string{"Bearer abc"}, 403, `Bearer error="insufficient_scope", error_description="Insufficient scope", scope="x y"`, ""},
		{"key source down", fakeVerifier{err: fmt.Errorf("%w: jwks unreachable", verifiers.ErrUnavailable)}, []string{"Bearer abc"}, 503, "", "5"},
		{"unclassified error fails closed", fakeVerifier{err: errors.New("bug")}, []string{"Bearer abc"}, 503, "", "5"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := &Handler{module{core: &core{verifier: tc.verifier, logger: zap.NewNop(), corsPreflight: true, maxBody: DefaultMaxBody}}}
			r := newRequest(tc.auth...)
			w := httptest.NewRecorder()
			nextCalled := false
			next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				nextCalled = true
				if r.Header.Get("Authorization") != "" {
					t.Error("Authorization reached next")
				}
				w.WriteHeader(200)
				return nil
			})
			if err := h.ServeHTTP(w, r, next); err != nil {
				t.Fatal(err)
			}
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d", w.Code, tc.status)
			}
			if nextCalled != (tc.status == 200) {
				t.Fatalf("next called: %v", nextCalled)
			}
			want := tc.challenge
			if want != "" {
				want += `, resource_metadata="http://example.com/.well-known/oauth-protected-resource/mcp"`
				want = strings.Replace(want, "Bearer, ", "Bearer ", 1)
			}
			if got := w.Header().Get("WWW-Authenticate"); got != want {
				t.Fatalf("challenge %q, want %q", got, want)
			}
			if got := w.Header().Get("Retry-After"); got != tc.retry {
				t.Fatalf("Retry-After %q", got)
			}
			if tc.status == 200 {
				repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
				want := map[string]string{"id": "c1", "client_id": "c1", "sub": "s1", "scopes": "a b", "iss": "", "aud": "", "exp": "", "kid": ""}
				for k, v := range want {
					got, ok := repl.Get("http.auth.user." + k)
					if !ok || got != v {
						t.Errorf("{http.auth.user.%s} = %q (set %v), want %q", k, got, ok, v)
					}
				}
			} else if ct := w.Header().Get("Content-Type"); ct != "application/json" {
				t.Fatalf("refusal content type %q", ct)
			}
		})
	}
}

func TestProviderAuthenticate(t *testing.T) {
	good := &verifiers.AccessToken{ClientID: "c1", Scopes: []string{"a"}}
	cases := []struct {
		name    string
		v       fakeVerifier
		auth    string
		authed  bool
		wantErr bool
		header  string
	}{
		{"accepted", fakeVerifier{tok: good}, "Bearer t", true, false, ""},
		{"missing", fakeVerifier{tok: good}, "", false, false, "Bearer"},
		{"bad token is not an error", fakeVerifier{err: verifiers.ErrBadSignature}, "Bearer t", false, false, `Bearer error="invalid_token", error_description="Token signature verification failed"`},
		{"scope is a 401 challenge here", fakeVerifier{err: &verifiers.ScopeError{Required: []string{"a"}}}, "Bearer t", false, false, `Bearer error="insufficient_scope", error_description="Insufficient scope", scope="a"`},
		{"technical failure is an error", fakeVerifier{err: verifiers.ErrUnavailable}, "Bearer t", false, true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := &Authenticator{module{core: &core{verifier: tc.v, logger: zap.NewNop(), maxBody: DefaultMaxBody}}}
			var r *http.Request
			if tc.auth != "" {
				r = newRequest(tc.auth)
			} else {
				r = newRequest()
			}
			w := httptest.NewRecorder()
			user, authed, err := a.Authenticate(w, r)
			if authed != tc.authed || (err != nil) != tc.wantErr {
				t.Fatalf("authed=%v err=%v", authed, err)
			}
			want := tc.header
			if want != "" {
				want = strings.Replace(want+`, resource_metadata="http://example.com/.well-known/oauth-protected-resource/mcp"`, "Bearer, ", "Bearer ", 1)
			}
			if got := w.Header().Get("WWW-Authenticate"); got != want {
				t.Fatalf("challenge %q, want %q", got, want)
			}
			if authed && (user.ID != "c1" || user.Metadata["scopes"] != "a" || user.Metadata["sub"] != "") {
				t.Fatalf("user %+v", user)
			}
			if authed && r.Header.Get("Authorization") != "" {
				t.Fatal("Authorization not removed")
			}
		})
	}
}

func TestProvisionProduction(t *testing.T) {
	t.Setenv("ENVIRONMENT", "production")
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	h := &Handler{module{Config: Config{StaticTokens: []StaticToken{{Token: "dev", ClientID: "c"}}}}}
	err := h.Provision(ctx)
	if err == nil || !strings.Contains(err.Error(), "DEVELOPMENT ONLY") {
		t.Fatalf("static tokens under ENVIRONMENT=production: %v", err)
	}
	t.Setenv("ENVIRONMENT", "development")
	if err := h.Provision(ctx); err != nil {
		t.Fatalf("development: %v", err)
	}
}

func TestProvisionPlaceholders(t *testing.T) {
	secret := strings.Repeat("q", 32)
	t.Setenv("E2E_HMAC_SECRET", secret)
	t.Setenv("E2E_DEV_TOKEN", "from-env-token")
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	h := &Handler{module{Config: Config{
		KeyConfig:    KeyConfig{HMACSecret: "{env.E2E_HMAC_SECRET}"},
		StaticTokens: []StaticToken{{Token: "{env.E2E_DEV_TOKEN}", ClientID: "c"}},
	}}}
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := h.core.verifier.Verify(context.Background(), "from-env-token"); err != nil {
		t.Fatalf("static token from {env.*}: %v", err)
	}
	t.Setenv("E2E_HMAC_SECRET", "short")
	err := h.Provision(ctx)
	if err == nil || !strings.Contains(err.Error(), "at least 32 bytes") {
		t.Fatalf("short secret from env: %v", err)
	}
	if strings.Contains(err.Error(), "short") && strings.Contains(err.Error(), "\"short\"") {
		t.Fatal("the secret was echoed in an error")
	}
}

// TestProductionOption: the `production` option applies the guards even
// without ENVIRONMENT=production; a resource stands in for the audience.
func TestProductionOption(t *testing.T) {
	t.Setenv("ENVIRONMENT", "")
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	h := &Handler{module{Config: Config{Production: true, StaticTokens: []StaticToken{{Token: "t", ClientID: "c"}}}}}
	if err := h.Provision(ctx); err == nil || !strings.Contains(err.Error(), "DEVELOPMENT ONLY") {
		t.Fatalf("production option with static tokens: %v", err)
	}
	pemText := mustPEM(t, testRSA)
	h = &Handler{module{Config: Config{Production: true, KeyConfig: KeyConfig{PublicKey: pemText}}}}
	if err := h.Provision(ctx); err == nil || !strings.Contains(err.Error(), "audience is required") {
		t.Fatalf("production option without audience: %v", err)
	}
	h = &Handler{module{Config: Config{Production: true, KeyConfig: KeyConfig{PublicKey: pemText},
		ProtectedResource: ProtectedResource{Resource: "https://mcp.example.com/mcp"}}}}
	if err := h.Provision(ctx); err != nil {
		t.Fatalf("production option with a resource: %v", err)
	}
}

func TestProvisionJWKSProductionGuards(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"http jwks_uri", Config{KeyConfig: KeyConfig{JWKSURI: "http://idp.example.com/jwks"}}, "cannot use plain http URL"},
		{"localhost jwks_uri", Config{KeyConfig: KeyConfig{JWKSURI: "https://localhost:8443/jwks"}}, "cannot use localhost URL"},
		{"http discovery", Config{Issuers: []string{"http://idp.example.com"}, KeyConfig: KeyConfig{Discover: true}}, "discover: issuer: cannot use plain http URL"},
		{"http in an issuer block", Config{IssuerConfigs: []IssuerConfig{{Issuer: "https://a", KeyConfig: KeyConfig{JWKSURI: "http://a/jwks"}}}}, "issuer https://a: jwks_uri: cannot use plain http URL"},
		{"no audience", Config{KeyConfig: KeyConfig{JWKSURI: "https://idp.example.com/jwks"}}, "jwt: an audience is required in production"},
		{"no audience in an issuer block", Config{IssuerConfigs: []IssuerConfig{{Issuer: "https://a", KeyConfig: KeyConfig{JWKSURI: "https://a/jwks"}}}}, "issuer https://a: jwt: an audience is required"},
		{"introspection over http", Config{Audiences: []string{"x"}, Introspection: &IntrospectionConfig{URL: "http://as.example.com/introspect", ClientID: "c"}}, "introspection: url: cannot use plain http URL"},
		{"introspection without audience", Config{Introspection: &IntrospectionConfig{URL: "https://as.example.com/introspect", ClientID: "c"}}, "introspection: an audience is required in production"},
		{"static tokens", Config{StaticTokens: []StaticToken{{Token: "t", ClientID: "c"}}}, "DEVELOPMENT ONLY"},
	}
	t.Setenv("ENVIRONMENT", "production")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := &Handler{module{Config: tc.cfg}}
			err := h.Provision(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want %q, got %v", tc.want, err)
			}
			_ = h.Cleanup() // Caddy calls it after a failed Provision
			if c, _ := pooledFor(tc.cfg.JWKSURI); c != nil {
				t.Fatal("a refused config left a pooled cache")
			}
		})
	}
	// A good https endpoint provisions without touching the network, and
	// Cleanup releases it.
	h := &Handler{module{Config: Config{KeyConfig: KeyConfig{JWKSURI: "https://idp.example.invalid/jwks"}, Audiences: []string{"mcp-api"},
		ProtectedResource: ProtectedResource{Resource: "https://mcp.example.invalid/mcp"}}}}
	if err := h.Provision(ctx); err != nil {
		t.Fatal(err)
	}
	cache, refs := pooledFor("https://idp.example.invalid/jwks")
	if cache == nil || refs != 1 {
		t.Fatalf("pooled %v refs %d", cache != nil, refs)
	}
	if err := h.Cleanup(); err != nil {
		t.Fatal(err)
	}
	<-cache.Done()
}
