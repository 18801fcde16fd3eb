package mcptoken

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	"github.com/mcptoken/caddy-mcp-token/devtools"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

func lookupFrom(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestApplyEnvMapping(t *testing.T) {
	var cfg Config
	err := cfg.applyEnv(lookupFrom(map[string]string{
		envType:           "jwt",
		envJWKSURI:        "https://auth.example.com/.well-known/jwks.json",
		envIssuer:         "https://auth.example.com",
		envAudience:       "mcp-production-api",
		envAlgorithm:      "ES256",
		envJWTScopes:      "api:read, api:write",
		envClockSkew:      "90",
		envJWKSCacheTTL:   "7200",
		envRateEnabled:    "true",
		envRateMax:        "5",
		envRateWindowSecs: "30",
		envSecretBackend:  "gcp_secret_manager",
	}), false)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.JWKSURI != "https://auth.example.com/.well-known/jwks.json" || strings.Join(cfg.Issuers, ",") != "https://auth.example.com" ||
		strings.Join(cfg.Audiences, ",") != "mcp-production-api" || strings.Join(cfg.Algorithms, ",") != "ES256" ||
		strings.Join(cfg.RequiredScopes, ",") != "api:read,api:write" || time.Duration(*cfg.ClockSkew) != 90*time.Second ||
		time.Duration(cfg.JWKSCacheTTL) != 2*time.Hour || cfg.RateLimit.MaxAttempts != 5 ||
		time.Duration(cfg.RateLimit.Window) != 30*time.Second || cfg.RateLimit.Disabled {
		t.Fatalf("mapped: %+v", cfg)
	}

	// HS* algorithm: PUBLIC_KEY is the secret.
	cfg = Config{}
	if err := cfg.applyEnv(lookupFrom(map[string]string{envPublicKey: "s3cret-that-is-long-enough-for-hs256!!", envAlgorithm: "HS256"}), false); err != nil {
		t.Fatal(err)
	}
	if cfg.HMACSecret == "" || cfg.PublicKey != "" {
		t.Fatalf("HS256 secret: %+v", cfg.KeyConfig)
	}

	// Introspection.
	cfg = Config{}
	if err := cfg.applyEnv(lookupFrom(map[string]string{envType: "introspection", envIntroURL: "https://as/introspect",
		envIntroClientID: "rs", envIntroSecret: "sec", envIntroScopes: "a,b", envIntroTimeout: "30", envRateEnabled: "false"}), false); err != nil {
		t.Fatal(err)
	}
	ic := cfg.Introspection
	if ic.URL != "https://as/introspect" || ic.ClientID != "rs" || ic.ClientSecret != "sec" || strings.Join(ic.RequiredScopes, " ") != "a b" ||
		time.Duration(ic.Timeout) != 30*time.Second || !cfg.RateLimit.Disabled {
		t.Fatalf("introspection: %+v %+v", ic, cfg.RateLimit)
	}

	// Explicit options win over the environment.
	cfg = Config{Issuers: []string{"explicit"}, KeyConfig: KeyConfig{JWKSURI: "https://explicit/jwks"}, RequiredScopes: []string{"x"}}
	if err := cfg.applyEnv(lookupFrom(map[string]string{envJWKSURI: "https://env/jwks", envIssuer: "env", envJWTScopes: "y", envAudience: "aud"}), false); err != nil {
		t.Fatal(err)
	}
	if cfg.JWKSURI != "https://explicit/jwks" || cfg.Issuers[0] != "explicit" || cfg.RequiredScopes[0] != "x" || cfg.Audiences[0] != "aud" {
		t.Fatalf("explicit options must win: %+v", cfg)
	}
}

func TestApplyEnvErrorsNameTheVariable(t *testing.T) {
	cases := []struct {
		env        map[string]string
		production bool
		want       string
	}{
		{map[string]string{envJWKSURI: "https://x/jwks", envClockSkew: "300"}, false, envClockSkew + ": 300 is above the maximum of 120 seconds"},
		{map[string]string{envJWKSURI: "https://x/jwks", envClockSkew: "soon"}, false, envClockSkew + `: "soon" is not a whole number`},
		{map[string]string{envIntroURL: "https://as/i", envIntroClientID: "c", envIntroTimeout: "90"}, false, envIntroTimeout + ": 90 is above the maximum of 60 seconds"},
		{map[string]string{envJWKSURI: "https://x/jwks", envAlgorithm: "none"}, false, envAlgorithm + `: algorithm "none" is never accepted`},
		{map[string]string{envType: "saml"}, false, envType + `: "saml" not supported`},
		{map[string]string{envSecretBackend: "vault"}, false, envSecretBackend + `: "vault" not supported`},
		{map[string]string{envJWKSURI: "https://x/jwks", envPublicKey: "k"}, false, "mutually exclusive"},
		{map[string]string{envType: "jwt"}, false, "needs " + envJWKSURI},
		{map[string]string{envType: "introspection", envIntroURL: "https://as/i"}, false, "needs " + envIntroClientID},
		{map[string]string{envJWKSURI: "https://x/jwks", envRateMax: "0"}, false, envRateMax + `: "0" is not a positive number`},
		{map[string]string{envJWKSURI: "https://x/jwks", envRateEnabled: "maybe"}, false, envRateEnabled + `: "maybe" is not true or false`},
		{map[string]string{envJWKSURI: "http://localhost:8080/jwks", envAudience: "a"}, true, envJWKSURI + `: cannot use localhost URL`},
		{map[string]string{envJWKSURI: "http://idp.example.com/jwks", envAudience: "a"}, true, envJWKSURI + `: cannot use plain http URL`},
		{map[string]string{envJWKSURI: "https://idp.example.com/jwks"}, true, envAudience + " is required in production"},
		{map[string]string{envIntroURL: "http://as.example.com/i", envIntroClientID: "c"}, true, envIntroURL + ": cannot use plain http URL"},
		{map[string]string{envType: "static"}, true, envType + "=static: static tokens are for DEVELOPMENT ONLY"},
		{map[string]string{}, false, "found none of the variables that configure a key source: set " + envJWKSURI + " or " + envPublicKey + " (JWT), or " + envIntroURL + " and " + envIntroClientID},
		{map[string]string{envJWTScopes: "mcp:read", envAudience: "a"}, false, "found none of the variables that configure a key source"},
	}
	for _, tc := range cases {
		var cfg Config
		err := cfg.applyEnv(lookupFrom(tc.env), tc.production)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v (production=%v): want %q, got %v", tc.env, tc.production, tc.want, err)
		}
	}
}

// TestSeedEnvScenarios runs the .env examples of the FastMCP quickstart
// (scenarios 1, 2 and 4) through a Caddyfile with from_env: they adapt,
// provision, and verify tokens. The endpoints of scenarios 1 and 4 are
// replaced by local servers (no network here); everything else is verbatim.
func TestSeedEnvScenarios(t *testing.T) {
	adapt := func(t *testing.T) *Handler {
		t.Helper()
		out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte("example.com {\n\tmcp_token /mcp* {\n\t\tfrom_env\n\t}\n}\n"), nil)
		if err != nil {
			t.Fatalf("adapt: %v", err)
		}
		i := strings.Index(string(out), `{"from_env":true,"handler":"mcp_token"`)
		if i < 0 {
			t.Fatalf("adapted config has no mcp_token handler with from_env: %s", out)
		}
		h := new(Handler)
		if err := json.NewDecoder(strings.NewReader(string(out[i:]))).Decode(h); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		t.Cleanup(cancel)
		if err := h.Provision(ctx); err != nil {
			t.Fatalf("provision: %v", err)
		}
		t.Cleanup(func() { _ = h.Cleanup() })
		return h
	}
	verify := func(t *testing.T, h *Handler, token string) error {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			_, err := h.core.verifier.Verify(context.Background(), token)
			if !errors.Is(err, verifiers.ErrUnavailable) || time.Now().After(deadline) {
				return err
			}
			time.Sleep(20 * time.Millisecond) // JWKS loading in the background
		}
	}

	t.Run("scenario 1: JWKS", func(t *testing.T) {
		key := devtools.MustGenerateKey("RS256")
		srv := devtools.NewJWKSServer(key)
		defer srv.Close()
		t.Setenv(envJWKSURI, srv.JWKSURL()) // the seed: https://auth.yourcompany.com/.well-known/jwks.json
		t.Setenv(envIssuer, "https://auth.yourcompany.com")
		t.Setenv(envAudience, "mcp-production-api")
		t.Setenv(envJWTScopes, "api:read,api:write")
		t.Setenv(envClockSkew, "60")
		h := adapt(t)
		good := key.MustToken(devtools.TokenOptions{Issuer: "https://auth.yourcompany.com", Audience: []string{"mcp-production-api"}, Scopes: []string{"api:read", "api:write"}})
		if err := verify(t, h, good); err != nil {
			t.Fatalf("valid token: %v", err)
		}
		readOnly := key.MustToken(devtools.TokenOptions{Issuer: "https://auth.yourcompany.com", Audience: []string{"mcp-production-api"}, Scopes: []string{"api:read"}})
		if err := verify(t, h, readOnly); !errors.Is(err, verifiers.ErrInsufficientScope) {
			t.Fatalf("token without api:write: %v", err)
		}
	})
	t.Run("scenario 2: HMAC", func(t *testing.T) {
		t.Setenv(envPublicKey, "your-shared-secret-minimum-32-chars")
		t.Setenv(envAlgorithm, "HS256")
		t.Setenv(envIssuer, "internal-auth-service")
		t.Setenv(envAudience, "mcp-internal-api")
		h := adapt(t)
		kp := &devtools.KeyPair{Alg: "HS256", Private: []byte("your-shared-secret-minimum-32-chars")}
		tok := kp.MustToken(devtools.TokenOptions{Issuer: "internal-auth-service", Audience: []string{"mcp-internal-api"}, Subject: "service-123",
			Scopes: []string{"api:read", "api:write"}, Claims: map[string]any{"client_id": "billing-service"}})
		if err := verify(t, h, tok); err != nil {
			t.Fatalf("HS256 token from the seed's secret: %v", err)
		}
	})
	t.Run("scenario 4: introspection", func(t *testing.T) {
		as := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			user, pass, _ := r.BasicAuth()
			if user != "mcp-resource-server" || pass != "your-client-secret" {
				http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
				return
			}
			_ = r.ParseForm()
			active := r.PostForm.Get("token") == "opaque-token-string"
			_ = json.NewEncoder(w).Encode(map[string]any{"active": active, "client_id": "c", "scope": "api:read api:write"})
		}))
		defer as.Close()
		t.Setenv(envIntroURL, as.URL+"/oauth/introspect") // the seed: https://auth.yourcompany.com/oauth/introspect
		t.Setenv(envIntroClientID, "mcp-resource-server")
		t.Setenv(envIntroSecret, "your-client-secret")
		t.Setenv(envIntroScopes, "api:read,api:write")
		t.Setenv(envIntroTimeout, "10")
		h := adapt(t)
		if err := verify(t, h, "opaque-token-string"); err != nil {
			t.Fatalf("active opaque token: %v", err)
		}
		if err := verify(t, h, "revoked"); !errors.Is(err, verifiers.ErrInactive) {
			t.Fatalf("inactive token: %v", err)
		}
	})
}
