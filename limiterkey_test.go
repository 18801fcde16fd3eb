package mcptoken

import (
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
)

// TestLimiterNamespaceWithoutSecrets: the limiter's Redis namespace (and
// pool key) is derived from the configuration without its secrets: two
// configurations that differ only in a secret share it, so a reader of
// Redis cannot test guesses of a secret against it; any other difference
// still separates them.
func TestLimiterNamespaceWithoutSecrets(t *testing.T) {
	base := func() *Config {
		return &Config{
			Issuers:   []string{"https://as.example"},
			KeyConfig: KeyConfig{HMACSecret: "hmac-secret-0123456789abcdef0123456789ab"},
			IssuerConfigs: []IssuerConfig{{Issuer: "https://other.example",
				KeyConfig: KeyConfig{HMACSecret: "issuer-secret-0123456789abcdef012345"}}},
			StaticTokens:  []StaticToken{{Token: "static-token-secret", ClientID: "dev"}},
			Introspection: &IntrospectionConfig{URL: "https://as.example/introspect", ClientID: "gw", ClientSecret: "client-secret-value"},
			DPoP:          &DPoPConfig{NonceKey: "nonce-key-secret-value"},
		}
	}
	rl := RateLimitConfig{MaxAttempts: 10, Window: caddy.Duration(60e9)}
	namespace := func(cfg *Config) (string, string) {
		t.Helper()
		key, ns, err := limiterKey(cfg, rl)
		if err != nil {
			t.Fatal(err)
		}
		return key, ns
	}
	baseKey, baseNS := namespace(base())
	identity, err := publicIdentity(base())
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"hmac-secret", "issuer-secret", "static-token-secret", "client-secret-value", "nonce-key-secret"} {
		if strings.Contains(string(identity), secret) {
			t.Fatalf("the hashed identity holds %q: %s", secret, identity)
		}
	}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		same   bool
	}{
		{"another HMAC secret", func(c *Config) { c.HMACSecret = "guess-0123456789abcdef0123456789abcdef" }, true},
		{"another issuer's HMAC secret", func(c *Config) { c.IssuerConfigs[0].HMACSecret = "guess-0123456789abcdef0123456789ab" }, true},
		{"another static token", func(c *Config) { c.StaticTokens[0].Token = "guess" }, true},
		{"another client secret", func(c *Config) { c.Introspection.ClientSecret = "guess" }, true},
		{"another nonce key", func(c *Config) { c.DPoP.NonceKey = "guess" }, true},
		{"another issuer", func(c *Config) { c.Issuers = []string{"https://evil.example"} }, false},
		{"another client id", func(c *Config) { c.Introspection.ClientID = "gw2" }, false},
		{"another static token's client", func(c *Config) { c.StaticTokens[0].ClientID = "dev2" }, false},
	} {
		cfg := base()
		tc.change(cfg)
		key, ns := namespace(cfg)
		if (key == baseKey && ns == baseNS) != tc.same {
			t.Errorf("%s: namespace %s (base %s), want same=%v", tc.name, ns, baseNS, tc.same)
		}
	}
}

// TestSecretFieldsCoverTheConfig: every configuration field named like a
// secret is one withoutSecrets removes (a new secret field must join
// secretFields).
func TestSecretFieldsCoverTheConfig(t *testing.T) {
	seen := map[reflect.Type]bool{}
	var walk func(reflect.Type, string)
	walk = func(typ reflect.Type, path string) {
		for typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Slice || typ.Kind() == reflect.Map {
			typ = typ.Elem()
		}
		if typ.Kind() != reflect.Struct || seen[typ] {
			return
		}
		seen[typ] = true
		for i := range typ.NumField() {
			f := typ.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if f.Anonymous && name == "" {
				walk(f.Type, path)
				continue
			}
			secretLike := strings.Contains(name, "secret") || strings.Contains(name, "password") || name == "token" ||
				(strings.HasSuffix(name, "_key") && name != "public_key")
			if secretLike && !secretFields[name] {
				t.Errorf("%s.%s (json %q) looks like a secret and is not in secretFields", path, f.Name, name)
			}
			walk(f.Type, path+"."+f.Name)
		}
	}
	walk(reflect.TypeFor[Config](), "Config")
	if len(seen) < 5 {
		t.Fatalf("walked %d types, want the whole configuration", len(seen))
	}
}
