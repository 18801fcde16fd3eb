package mcptoken

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcptoken/caddy-mcp-token/internal/streak"
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
		{"technical failure is a challenged 401, not an error", fakeVerifier{err: verifiers.ErrUnavailable}, "Bearer t", false, false, "Bearer"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := &Authenticator{module: module{core: &core{verifier: tc.v, logger: zap.NewNop(), maxBody: DefaultMaxBody}}}
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

// TestProviderOutageLogging: during an outage the provider writes one
// WARN line per failure streak (not one ERROR per request), and one INFO
// line when verification works again.
func TestProviderOutageLogging(t *testing.T) {
	obs, logs := observer.New(zap.DebugLevel)
	v := &switchVerifier{err: fmt.Errorf("%w: jwks down", verifiers.ErrUnavailable)}
	a := &Authenticator{module: module{core: &core{verifier: v, logger: zap.NewNop(), maxBody: DefaultMaxBody}},
		outage: streak.New(zap.New(obs), "token verification", nil)}
	for i := 0; i < 50; i++ {
		w := httptest.NewRecorder()
		if _, authed, err := a.Authenticate(w, newRequest("Bearer t")); authed || err != nil {
			t.Fatalf("outage request %d: authed=%v err=%v", i, authed, err)
		}
		if !strings.Contains(w.Header().Get("WWW-Authenticate"), "resource_metadata=") {
			t.Fatalf("no challenge during the outage: %q", w.Header().Get("WWW-Authenticate"))
		}
	}
	v.err, v.tok = nil, &verifiers.AccessToken{ClientID: "c1"}
	if _, authed, _ := a.Authenticate(httptest.NewRecorder(), newRequest("Bearer t")); !authed {
		t.Fatal("not accepted after recovery")
	}
	warn, info := logs.FilterLevelExact(zap.WarnLevel).Len(), logs.FilterLevelExact(zap.InfoLevel).Len()
	if warn != 1 || info != 1 || logs.FilterLevelExact(zap.ErrorLevel).Len() != 0 {
		t.Fatalf("50 failures then a success logged %d WARN, %d INFO, %d ERROR lines; want 1, 1, 0",
			warn, info, logs.FilterLevelExact(zap.ErrorLevel).Len())
	}
}

// switchVerifier is a fakeVerifier whose answer a test changes.
type switchVerifier struct {
	tok *verifiers.AccessToken
	err error
}

func (s *switchVerifier) Verify(context.Context, string) (*verifiers.AccessToken, error) {
	return s.tok, s.err
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
		{"second issuer block refused after the first took a cache", Config{IssuerConfigs: []IssuerConfig{
			{Issuer: "https://a", Audiences: []string{"x"}, KeyConfig: KeyConfig{JWKSURI: "https://a.example.invalid/jwks"}},
			{Issuer: "https://b", KeyConfig: KeyConfig{JWKSURI: "http://b.example.invalid/jwks"}}}}, "issuer https://b: jwks_uri: cannot use plain http URL"},
		{"issuer block refused after the top-level JWKS took a cache", Config{Audiences: []string{"x"}, KeyConfig: KeyConfig{JWKSURI: "https://top.example.invalid/jwks"},
			IssuerConfigs: []IssuerConfig{{Issuer: "https://c", KeyConfig: KeyConfig{JWKSURI: "http://c.example.invalid/jwks"}}}}, "issuer https://c: jwks_uri: cannot use plain http URL"},
	}
	t.Setenv("ENVIRONMENT", "production")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			entries := poolEntries()
			h := &Handler{module{Config: tc.cfg}}
			err := h.Provision(ctx)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want %q, got %v", tc.want, err)
			}
			_ = h.Cleanup() // Caddy calls it after a failed Provision
			for _, url := range jwksURLs(tc.cfg) {
				if c, _ := pooledFor(url); c != nil {
					t.Fatalf("a refused config left a pooled cache for %s", url)
				}
			}
			if got := poolEntries(); got != entries {
				t.Fatalf("a refused config changed the pools: %d entries before, %d after", entries, got)
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
	select {
	case <-cache.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("Cleanup did not stop the JWKS cache's goroutine")
	}
}

// jwksURLs lists every JWKS endpoint a config names, top level and in
// issuer blocks, so a leak check looks where a cache could be.
func jwksURLs(cfg Config) []string {
	var urls []string
	for _, u := range append([]string{cfg.JWKSURI}, issuerJWKSURIs(cfg)...) {
		if u != "" {
			urls = append(urls, u)
		}
	}
	return urls
}

func issuerJWKSURIs(cfg Config) []string {
	var urls []string
	for _, ic := range cfg.IssuerConfigs {
		urls = append(urls, ic.JWKSURI)
	}
	return urls
}

// poolEntries is the number of values held in the module's pools.
func poolEntries() int {
	n := 0
	for _, pool := range []*caddy.UsagePool{jwksPool, introspectionPool, limiterPool} {
		pool.Range(func(any, any) bool { n++; return true })
	}
	return n
}

// TestAudienceWarnings: the start-up warning names what enforces no
// audience, and is silent when resource stands in for the audience.
func TestAudienceWarnings(t *testing.T) {
	key := KeyConfig{JWKSURI: "https://idp.example/jwks"}
	cases := []struct {
		name string
		cfg  Config
		want []string
	}{
		{"audience set", Config{KeyConfig: key, Audiences: []string{"a"}}, nil},
		{"resource enforced as the audience", Config{KeyConfig: key, ProtectedResource: ProtectedResource{Resource: "https://mcp.example/mcp"}}, nil},
		{"nothing enforced", Config{KeyConfig: key}, []string{"JWT verification: no audience configured"}},
		{"an issuer block without audience", Config{IssuerConfigs: []IssuerConfig{
			{Issuer: "https://a", KeyConfig: key, Audiences: []string{"x"}},
			{Issuer: "https://b", KeyConfig: key}}}, []string{"issuer https://b: no audience configured"}},
		{"introspection without audience", Config{Introspection: &IntrospectionConfig{URL: "https://as/i", ClientID: "c"}}, []string{"introspection: no audience configured"}},
		{"introspection with resource", Config{Introspection: &IntrospectionConfig{URL: "https://as/i", ClientID: "c"}, ProtectedResource: ProtectedResource{Resource: "https://mcp.example/mcp"}}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := tc.cfg.audienceWarnings()
			if len(got) != len(tc.want) {
				t.Fatalf("warnings %q, want %d", got, len(tc.want))
			}
			for i := range got {
				if !strings.HasPrefix(got[i], tc.want[i]) {
					t.Fatalf("warning %q, want prefix %q", got[i], tc.want[i])
				}
			}
		})
	}
}

// TestProvisionRefusesCommaScopes: JSON configs get the Caddyfile's
// comma check at start.
func TestProvisionRefusesCommaScopes(t *testing.T) {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	h := &Handler{module{Config: Config{StaticTokens: []StaticToken{{Token: "t", ClientID: "c"}},
		ToolScopes: map[string][]string{"deploy": {"deploy:write,admin"}}}}}
	err := h.Provision(ctx)
	defer h.Cleanup()
	if err == nil || !strings.Contains(err.Error(), `tool_scopes deploy: scope "deploy:write,admin" contains a comma: scopes are space-separated`) {
		t.Fatalf("got %v", err)
	}
}

// TestPlaceholderErrors: a value that comes from a placeholder is named by
// its option and placeholder text (never its value), and an empty one says
// which variable is unset.
func TestPlaceholderErrors(t *testing.T) {
	t.Setenv("MCP_TEST_SHORT_SECRET", "short-secret-value")
	t.Setenv("MCP_TEST_EMPTY", "")
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"empty env secret", Config{KeyConfig: KeyConfig{HMACSecret: "{env.MCP_TEST_UNSET_VAR}"}},
			"hmac_secret {env.MCP_TEST_UNSET_VAR}: resolves to an empty value (the environment variable MCP_TEST_UNSET_VAR is unset or empty)"},
		{"short env secret", Config{KeyConfig: KeyConfig{HMACSecret: "{env.MCP_TEST_SHORT_SECRET}"}},
			"hmac_secret {env.MCP_TEST_SHORT_SECRET}: HMAC key for HS256 must be at least 32 bytes (got 18)"},
		{"empty env public key", Config{KeyConfig: KeyConfig{PublicKey: "{env.MCP_TEST_EMPTY}"}},
			"public_key {env.MCP_TEST_EMPTY}: resolves to an empty value (the environment variable MCP_TEST_EMPTY is unset or empty)"},
		{"garbage public key from env", Config{KeyConfig: KeyConfig{PublicKey: "{env.MCP_TEST_SHORT_SECRET}"}},
			"public_key {env.MCP_TEST_SHORT_SECRET}: "},
		{"missing file", Config{KeyConfig: KeyConfig{PublicKey: "{file./nonexistent/mcp-key.pem}"}},
			"public_key {file./nonexistent/mcp-key.pem}: resolves to an empty value (the file /nonexistent/mcp-key.pem is missing or empty)"},
		{"empty jwks_uri", Config{KeyConfig: KeyConfig{JWKSURI: "{env.MCP_TEST_EMPTY}"}},
			"jwks_uri {env.MCP_TEST_EMPTY}: resolves to an empty value"},
		{"empty introspection secret", Config{Introspection: &IntrospectionConfig{URL: "https://as.example/i", ClientID: "c", ClientSecret: "{env.MCP_TEST_EMPTY}"}},
			"client_secret {env.MCP_TEST_EMPTY}: resolves to an empty value"},
		{"empty static token", Config{StaticTokens: []StaticToken{{Token: "{env.MCP_TEST_EMPTY}", ClientID: "c"}}},
			"static token 1 {env.MCP_TEST_EMPTY}: resolves to an empty value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
			defer cancel()
			h := &Handler{module{Config: tc.cfg}}
			err := h.Provision(ctx)
			defer h.Cleanup()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want %q, got %v", tc.want, err)
			}
			if strings.Contains(err.Error(), "short-secret-value") {
				t.Fatal("the error echoes the secret")
			}
		})
	}
}
