// Package mcptoken is a Caddy module that verifies OAuth bearer tokens
// (JWTs, static development tokens) in front of MCP servers.
//
// It provides the `mcp_token` HTTP handler (and Caddyfile directive),
// which answers 401, 403 and 503 as RFC 6750 and the MCP authorization
// specification ask, and the `mcp_token` authentication provider for the
// `authentication` handler, for JSON users who compose it with others.
package mcptoken

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

func init() {
	caddy.RegisterModule(Authenticator{})
}

// Config is the configuration shared by the `mcp_token` handler and the
// `mcp_token` authentication provider. At least one of public_key,
// hmac_secret or static_tokens must be set.
type Config struct {
	// Accepted values of the token's `iss` claim. When empty, any issuer
	// is accepted (not recommended).
	Issuers []string `json:"issuers,omitempty"`

	// Accepted values of the token's `aud` claim; a token matches when any
	// of its audiences is one of these. When empty, any audience is
	// accepted (not recommended: a token minted for another service would
	// pass).
	Audiences []string `json:"audiences,omitempty"`

	// The JWS algorithms accepted (allow-list). Default: the algorithm of
	// the public key's type (RS256 for RSA, ES256/ES384/ES512 for EC,
	// EdDSA for Ed25519), or HS256 with an HMAC secret. HMAC and asymmetric
	// algorithms can never be mixed; "none" is never accepted.
	Algorithms []string `json:"algorithms,omitempty"`

	// A PEM public key (PKIX PUBLIC KEY, PKCS#1 RSA PUBLIC KEY or an X.509
	// CERTIFICATE; RSA of 2048 bits or more, ECDSA P-256/384/521, or
	// Ed25519), given inline or as the path of a PEM file. Placeholders
	// such as {env.*} and {file.*} are resolved at start.
	PublicKey string `json:"public_key,omitempty"`

	// A shared HMAC secret for HS256/384/512 (at least 32/48/64 bytes).
	// Use a placeholder such as {env.MCP_HMAC_SECRET} or {file./path}
	// rather than writing the secret in the config. Never logged.
	HMACSecret string `json:"hmac_secret,omitempty"`

	// Scopes every request's token must carry (all of them). A valid token
	// without them gets 403 insufficient_scope from the handler.
	RequiredScopes []string `json:"required_scopes,omitempty"`

	// Leeway for exp, nbf and iat, to absorb clock differences. Default:
	// 60s; at most 120s.
	ClockSkew *caddy.Duration `json:"clock_skew,omitempty"`

	// When "at+jwt", only JWTs whose typ header is at+jwt or
	// application/at+jwt (RFC 9068 access tokens) are accepted, which
	// refuses ID tokens presented as access tokens.
	TokenType string `json:"token_type,omitempty"`

	// Keep the Authorization header on the request that continues to the
	// backend. Default: false, the header is removed after verification.
	ForwardToken bool `json:"forward_token,omitempty"`

	// Fixed development tokens. Refused when ENVIRONMENT=production.
	StaticTokens []StaticToken `json:"static_tokens,omitempty"`
}

// StaticToken is one development token. Never use them in production.
type StaticToken struct {
	// The bearer token string. Placeholders are resolved at start.
	Token string `json:"token"`
	// The client identity the token stands for. Required.
	ClientID string `json:"client_id"`
	// Scopes the token grants.
	Scopes []string `json:"scopes,omitempty"`
	// Optional subject.
	Subject string `json:"sub,omitempty"`
	// Optional expiry, in seconds since the Unix epoch.
	ExpiresAt int64 `json:"expires_at,omitempty"`
	// Optional extra claims.
	Claims map[string]any `json:"claims,omitempty"`
}

// core is the provisioned state shared by the handler and the provider.
type core struct {
	verifier       verifiers.Verifier
	requiredScopes []string
	forwardToken   bool
	logger         *zap.Logger
}

// provision builds the verifier chain. Placeholders in key material and
// tokens are resolved once, here.
func (c *Config) provision(ctx caddy.Context) (*core, error) {
	logger := ctx.Logger()
	chain, err := c.buildChain(caddy.NewReplacer(), verifiers.IsProduction())
	if err != nil {
		return nil, err
	}
	if chain.Static != nil {
		logger.Warn("static tokens are configured: for DEVELOPMENT ONLY, never in production",
			zap.Int("count", len(c.StaticTokens)))
	}
	if len(c.Audiences) == 0 && chain.JWT != nil {
		logger.Warn("no audience configured: tokens issued for any service are accepted")
	}
	return &core{
		verifier:       chain,
		requiredScopes: c.RequiredScopes,
		forwardToken:   c.ForwardToken,
		logger:         logger,
	}, nil
}

// buildChain turns the config into verifiers. repl resolves placeholders.
// The Caddyfile parser calls it too, to report bad values with their line.
func (c *Config) buildChain(repl *caddy.Replacer, production bool) (*verifiers.Chain, error) {
	chain := &verifiers.Chain{RequiredScopes: c.RequiredScopes}
	if c.PublicKey != "" || c.HMACSecret != "" {
		v, err := c.buildJWT(repl)
		if err != nil {
			return nil, err
		}
		chain.JWT = v
	} else if len(c.Issuers)+len(c.Audiences)+len(c.Algorithms) > 0 || c.TokenType != "" {
		return nil, errors.New("issuer, audience, algorithms and token_type need a key: set public_key or hmac_secret")
	}
	if len(c.StaticTokens) > 0 {
		s, err := c.buildStatic(repl, production)
		if err != nil {
			return nil, err
		}
		chain.Static = s
	}
	if chain.JWT == nil && chain.Static == nil {
		return nil, errors.New("no verifier configured: set public_key, hmac_secret or static_token")
	}
	return chain, nil
}

func (c *Config) buildStatic(repl *caddy.Replacer, production bool) (*verifiers.Static, error) {
	tokens := make([]verifiers.StaticToken, len(c.StaticTokens))
	for i, st := range c.StaticTokens {
		tokens[i] = verifiers.StaticToken{
			Token:    repl.ReplaceKnown(st.Token, ""),
			ClientID: st.ClientID,
			Subject:  st.Subject,
			Scopes:   st.Scopes,
			Claims:   st.Claims,
		}
		if st.ExpiresAt != 0 {
			tokens[i].ExpiresAt = time.Unix(st.ExpiresAt, 0)
		}
	}
	return verifiers.NewStatic(tokens, production)
}

func (c *Config) buildJWT(repl *caddy.Replacer) (*verifiers.JWT, error) {
	if c.PublicKey != "" && c.HMACSecret != "" {
		return nil, errors.New("public_key and hmac_secret are mutually exclusive")
	}
	var keys verifiers.KeySource
	if c.PublicKey != "" {
		key, err := verifiers.LoadPublicKey(repl.ReplaceKnown(c.PublicKey, ""))
		if err != nil {
			return nil, err
		}
		keys = verifiers.NewStaticKey(key)
	} else {
		secret := repl.ReplaceKnown(c.HMACSecret, "")
		keys = verifiers.NewStaticKey([]byte(secret))
	}
	skew := verifiers.DefaultClockSkew
	if c.ClockSkew != nil {
		skew = time.Duration(*c.ClockSkew)
	}
	return verifiers.NewJWT(verifiers.JWTConfig{
		Issuers:    replaceAll(repl, c.Issuers),
		Audiences:  replaceAll(repl, c.Audiences),
		Algorithms: c.Algorithms,
		Keys:       keys,
		ClockSkew:  skew,
		TokenType:  c.TokenType,
	})
}

func replaceAll(repl *caddy.Replacer, in []string) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = repl.ReplaceKnown(s, "")
	}
	return out
}

// bearerToken extracts the bearer token from the Authorization header, the
// only place a credential is taken from (RFC 6750 §2.1; never the query).
func bearerToken(r *http.Request) (string, error) {
	values := r.Header.Values("Authorization")
	switch len(values) {
	case 0:
		return "", verifiers.ErrMissingToken
	case 1:
	default:
		return "", fmt.Errorf("%w: %d Authorization headers", verifiers.ErrBadRequest, len(values))
	}
	scheme, token, _ := strings.Cut(strings.TrimSpace(values[0]), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", verifiers.ErrMissingToken // another scheme: no bearer credentials
	}
	token = strings.TrimLeft(token, " ")
	if token == "" || !isB64Token(token) {
		return "", fmt.Errorf("%w: malformed bearer token", verifiers.ErrBadRequest)
	}
	return token, nil
}

// isB64Token checks RFC 6750's b64token syntax:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	s = strings.TrimRight(s, "=")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

// authenticate verifies the request's bearer token. On success the
// Authorization header is removed unless forward_token is set.
func (c *core) authenticate(r *http.Request) (*verifiers.AccessToken, error) {
	token, err := bearerToken(r)
	if err == nil {
		var tok *verifiers.AccessToken
		tok, err = c.verifier.Verify(r.Context(), token)
		if err == nil {
			if !c.forwardToken {
				r.Header.Del("Authorization")
			}
			return tok, nil
		}
		c.logRejection(err, token, tok)
		return tok, err
	}
	c.logRejection(err, "", nil)
	return nil, err
}

func (c *core) logRejection(err error, token string, tok *verifiers.AccessToken) {
	ce := c.logger.Check(zapcore.DebugLevel, "bearer token rejected")
	if ce == nil {
		return
	}
	fields := []zap.Field{zap.String("reason", verifiers.Classify(err).Reason), zap.Error(err)}
	if token != "" {
		fields = append(fields, zap.String("token_hash", TokenHash(token)))
	}
	if tok != nil {
		fields = append(fields, zap.String("client_id", tok.ClientID), zap.String("kid", tok.KeyID))
	}
	ce.Write(fields...)
}

// TokenHash is the short, non-reversible token fingerprint used in logs
// to correlate requests: the first 8 bytes of SHA-256, in hex.
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:8])
}

// userMetadata is the identity exposed as {http.auth.user.*}. Every key is
// always set (empty when absent): Caddy would otherwise forward an unset
// placeholder's literal text.
func userMetadata(tok *verifiers.AccessToken) map[string]string {
	exp := ""
	if !tok.ExpiresAt.IsZero() {
		exp = strconv.FormatInt(tok.ExpiresAt.Unix(), 10)
	}
	return map[string]string{
		"client_id": tok.ClientID,
		"sub":       tok.Subject,
		"iss":       tok.Issuer,
		"aud":       strings.Join(tok.Audience, " "),
		"scopes":    strings.Join(tok.Scopes, " "),
		"exp":       exp,
		"kid":       tok.KeyID,
	}
}

// challenge is the WWW-Authenticate value for a refusal (RFC 6750 §3): no
// error attribute when no credentials were sent; the scopes needed when
// known.
func (c *core) challenge(err error) string {
	out := verifiers.Classify(err)
	params := []string{}
	scopes := c.requiredScopes
	var se *verifiers.ScopeError
	if errors.As(err, &se) {
		scopes = se.Required
	}
	if out.Code != "" {
		params = append(params, param("error", out.Code), param("error_description", out.Description))
	}
	if len(scopes) > 0 {
		params = append(params, param("scope", strings.Join(scopes, " ")))
	}
	if len(params) == 0 {
		return "Bearer"
	}
	return "Bearer " + strings.Join(params, ", ")
}

func param(name, value string) string {
	return name + "=" + strconv.Quote(value)
}

// Authenticator is the `mcp_token` authentication provider for Caddy's
// `authentication` handler. Caddy's handler can only answer 401, so a
// missing scope is a 401 with error="insufficient_scope", and a technical
// failure (key source down) is a 401 too, logged by Caddy at error level;
// use the `mcp_token` handler for 403 and 503 answers.
type Authenticator struct {
	Config
	core *core
}

// CaddyModule returns the Caddy module information.
func (Authenticator) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.authentication.providers.mcp_token",
		New: func() caddy.Module { return new(Authenticator) },
	}
}

// Provision builds the verifiers.
func (a *Authenticator) Provision(ctx caddy.Context) error {
	c, err := a.provision(ctx)
	if err != nil {
		return fmt.Errorf("mcp_token: %w", err)
	}
	a.core = c
	return nil
}

// Authenticate implements caddyauth.Authenticator. A bad or missing token
// is (User{}, false, nil) with a WWW-Authenticate challenge; an error is
// returned only for a technical failure.
func (a *Authenticator) Authenticate(w http.ResponseWriter, r *http.Request) (caddyauth.User, bool, error) {
	tok, err := a.core.authenticate(r)
	if err == nil {
		return caddyauth.User{ID: tok.ClientID, Metadata: userMetadata(tok)}, true, nil
	}
	if errors.Is(err, verifiers.ErrUnavailable) || verifiers.Classify(err).Status == http.StatusServiceUnavailable {
		return caddyauth.User{}, false, fmt.Errorf("mcp_token: %w", err)
	}
	w.Header().Set("WWW-Authenticate", a.core.challenge(err))
	return caddyauth.User{}, false, nil
}

// Interface guards
var (
	_ caddy.Provisioner       = (*Authenticator)(nil)
	_ caddyauth.Authenticator = (*Authenticator)(nil)
)
