package mcptoken

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"

	"github.com/mcptoken/caddy-mcp-token/introspection"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// Environment variables read by from_env (FastMCP's names).
const (
	envPrefix = "FASTMCP_SERVER_AUTH_"

	envType          = envPrefix + "TYPE"
	envSecretBackend = envPrefix + "SECRET_BACKEND"

	envJWKSURI        = envPrefix + "JWT_JWKS_URI"
	envPublicKey      = envPrefix + "JWT_PUBLIC_KEY"
	envIssuer         = envPrefix + "JWT_ISSUER"
	envAudience       = envPrefix + "JWT_AUDIENCE"
	envAlgorithm      = envPrefix + "JWT_ALGORITHM"
	envJWTScopes      = envPrefix + "JWT_REQUIRED_SCOPES"
	envClockSkew      = envPrefix + "JWT_CLOCK_SKEW"
	envJWKSCacheTTL   = envPrefix + "JWT_JWKS_CACHE_TTL"
	envIntroURL       = envPrefix + "INTROSPECTION_URL"
	envIntroClientID  = envPrefix + "INTROSPECTION_CLIENT_ID"
	envIntroSecret    = envPrefix + "INTROSPECTION_CLIENT_SECRET"
	envIntroScopes    = envPrefix + "INTROSPECTION_REQUIRED_SCOPES"
	envIntroTimeout   = envPrefix + "INTROSPECTION_TIMEOUT"
	envRateEnabled    = envPrefix + "RATE_LIMIT_ENABLED"
	envRateMax        = envPrefix + "RATE_LIMIT_MAX_ATTEMPTS"
	envRateWindowSecs = envPrefix + "RATE_LIMIT_WINDOW_SECONDS"
)

// envReader reads variables and names the variable in every error.
type envReader struct {
	lookup     func(string) (string, bool)
	production bool
}

// url reads an endpoint URL, checked as the production guards would.
func (e envReader) url(name string) (string, error) {
	u := e.str(name)
	if u == "" {
		return "", nil
	}
	if err := verifiers.CheckURL(u, e.production); err != nil {
		return "", fmt.Errorf("%s: %v", name, err)
	}
	return u, nil
}

func (e envReader) str(name string) string {
	v, _ := e.lookup(name)
	return strings.TrimSpace(v)
}

// list reads a comma-separated list.
func (e envReader) list(name string) []string {
	var out []string
	for _, s := range strings.Split(e.str(name), ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// seconds reads a whole number of seconds in [lo, hi] (hi 0: no maximum).
func (e envReader) seconds(name string, lo, hi int) (time.Duration, bool, error) {
	v := e.str(name)
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.Atoi(v)
	switch {
	case err != nil:
		return 0, false, fmt.Errorf("%s: %q is not a whole number of seconds", name, v)
	case n < lo:
		return 0, false, fmt.Errorf("%s: %d is below the minimum of %d", name, n, lo)
	case hi > 0 && n > hi:
		return 0, false, fmt.Errorf("%s: %d is above the maximum of %d seconds", name, n, hi)
	}
	return time.Duration(n) * time.Second, true, nil
}

// applyEnv fills what the configuration leaves unset from FastMCP's
// FASTMCP_SERVER_AUTH_* variables; options set explicitly win. Secrets
// delivered by Cloud Run's --set-secrets arrive as plain environment
// variables, so FASTMCP_SERVER_AUTH_SECRET_BACKEND=gcp_secret_manager reads
// them the same way as env (and {file.*} placeholders read mounted ones).
func (cfg *Config) applyEnv(lookup func(string) (string, bool), production bool) error {
	e := envReader{lookup, production}
	switch b := e.str(envSecretBackend); b {
	case "", "env", "gcp_secret_manager":
	default:
		return fmt.Errorf("%s: %q not supported (env or gcp_secret_manager; Secret Manager values arrive as environment variables or files)", envSecretBackend, b)
	}
	kind := strings.ToLower(e.str(envType))
	switch kind {
	case "":
		if e.str(envJWKSURI) != "" || e.str(envPublicKey) != "" {
			kind = "jwt"
		} else if e.str(envIntroURL) != "" {
			kind = "introspection"
		}
	case "jwt", "introspection":
	case "static":
		if production {
			return fmt.Errorf("%s=static: static tokens are for DEVELOPMENT ONLY and are refused when ENVIRONMENT=production", envType)
		}
	default:
		return fmt.Errorf("%s: %q not supported (jwt, introspection or static)", envType, kind)
	}
	if kind == "" && cfg.KeyConfig.count() == 0 && len(cfg.IssuerConfigs) == 0 && cfg.Introspection == nil && len(cfg.StaticTokens) == 0 {
		return fmt.Errorf("found none of the variables that configure a key source: set %s or %s (JWT), or %s and %s (opaque tokens), or configure the key source in the config itself",
			envJWKSURI, envPublicKey, envIntroURL, envIntroClientID)
	}
	var err error
	switch kind {
	case "jwt":
		err = cfg.applyJWTEnv(e)
	case "introspection":
		err = cfg.applyIntrospectionEnv(e)
	}
	if err != nil {
		return err
	}
	return cfg.applyRateLimitEnv(e)
}

func (cfg *Config) applyJWTEnv(e envReader) error {
	if alg := e.str(envAlgorithm); alg != "" && len(cfg.Algorithms) == 0 {
		if _, err := verifiers.LookupAlgorithm(alg); err != nil {
			return fmt.Errorf("%s: %v", envAlgorithm, err)
		}
		cfg.Algorithms = []string{alg}
	}
	if cfg.KeyConfig.count() == 0 {
		jwksURI, err := e.url(envJWKSURI)
		if err != nil {
			return err
		}
		key := e.str(envPublicKey)
		switch {
		case jwksURI != "" && key != "":
			return fmt.Errorf("%s and %s are mutually exclusive", envJWKSURI, envPublicKey)
		case jwksURI != "":
			cfg.JWKSURI = jwksURI
		case key != "":
			// FastMCP: with an HS* algorithm the "public key" is the shared secret.
			if len(cfg.Algorithms) == 1 && strings.HasPrefix(cfg.Algorithms[0], "HS") {
				cfg.HMACSecret = key
			} else {
				cfg.PublicKey = key
			}
		default:
			return fmt.Errorf("%s=jwt needs %s or %s", envType, envJWKSURI, envPublicKey)
		}
	}
	if len(cfg.Issuers) == 0 {
		cfg.Issuers = e.list(envIssuer)
	}
	if len(cfg.Audiences) == 0 {
		cfg.Audiences = e.list(envAudience)
	}
	if e.production && len(cfg.audiences()) == 0 {
		return fmt.Errorf("%s is required in production (ENVIRONMENT=production): without it tokens issued for any service are accepted", envAudience)
	}
	if len(cfg.RequiredScopes) == 0 {
		cfg.RequiredScopes = e.list(envJWTScopes)
	}
	if skew, ok, err := e.seconds(envClockSkew, 0, int(verifiers.MaxClockSkew/time.Second)); err != nil {
		return err
	} else if ok && cfg.ClockSkew == nil {
		d := caddy.Duration(skew)
		cfg.ClockSkew = &d
	}
	if ttl, ok, err := e.seconds(envJWKSCacheTTL, 1, 0); err != nil {
		return err
	} else if ok && cfg.JWKSCacheTTL == 0 {
		cfg.JWKSCacheTTL = caddy.Duration(ttl)
	}
	return nil
}

func (cfg *Config) applyIntrospectionEnv(e envReader) error {
	ic := cfg.Introspection
	if ic == nil {
		ic = &IntrospectionConfig{}
	}
	if ic.URL == "" {
		u, err := e.url(envIntroURL)
		if err != nil {
			return err
		}
		ic.URL = u
	}
	if ic.URL == "" {
		return fmt.Errorf("%s=introspection needs %s", envType, envIntroURL)
	}
	if ic.ClientID == "" {
		ic.ClientID = e.str(envIntroClientID)
	}
	if ic.ClientID == "" {
		return fmt.Errorf("%s=introspection needs %s", envType, envIntroClientID)
	}
	if ic.ClientSecret == "" {
		ic.ClientSecret = e.str(envIntroSecret)
	}
	if len(ic.RequiredScopes) == 0 {
		ic.RequiredScopes = e.list(envIntroScopes)
	}
	if d, ok, err := e.seconds(envIntroTimeout, 1, int(introspection.MaxTimeout/time.Second)); err != nil {
		return err
	} else if ok && ic.Timeout == 0 {
		ic.Timeout = caddy.Duration(d)
	}
	cfg.Introspection = ic
	return nil
}

func (cfg *Config) applyRateLimitEnv(e envReader) error {
	if cfg.RateLimit != nil {
		return nil // set explicitly
	}
	rl := RateLimitConfig{}
	set := false
	if v := e.str(envRateEnabled); v != "" {
		on, err := strconv.ParseBool(v)
		if err != nil {
			return fmt.Errorf("%s: %q is not true or false", envRateEnabled, v)
		}
		rl.Disabled, set = !on, true
	}
	if v := e.str(envRateMax); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return fmt.Errorf("%s: %q is not a positive number", envRateMax, v)
		}
		rl.MaxAttempts, set = n, true
	}
	if w, ok, err := e.seconds(envRateWindowSecs, 1, 0); err != nil {
		return err
	} else if ok {
		rl.Window, set = caddy.Duration(w), true
	}
	if set {
		cfg.RateLimit = &rl
	}
	return nil
}
