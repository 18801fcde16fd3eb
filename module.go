// Package mcptoken is a Caddy module that verifies OAuth bearer tokens
// (JWTs, static development tokens) in front of MCP servers.
//
// It provides the `mcp_token` HTTP handler (and Caddyfile directive),
// which answers 401, 403 and 503 as RFC 6750 and the MCP authorization
// specification ask, and the `mcp_token` authentication provider for the
// `authentication` handler, for JSON users who compose it with others.
package mcptoken

import (
	"github.com/caddyserver/caddy/v2"
)

// KeyConfig says where the keys that verify JWTs come from: exactly one of
// a public key, an HMAC secret, a JWKS endpoint, a JWKS file, or discovery.
type KeyConfig struct {
	// A PEM public key (PKIX PUBLIC KEY, PKCS#1 RSA PUBLIC KEY or an X.509
	// CERTIFICATE; RSA of 2048 bits or more, ECDSA P-256/384/521, or
	// Ed25519), given inline or as the path of a PEM file. Placeholders
	// such as {env.*} and {file.*} are resolved at start.
	PublicKey string `json:"public_key,omitempty"`

	// A shared HMAC secret for HS256/384/512 (at least 32/48/64 bytes).
	// Use a placeholder such as {env.MCP_HMAC_SECRET} or {file./path}
	// rather than writing the secret in the config. Never logged.
	HMACSecret string `json:"hmac_secret,omitempty"`

	// The URL of the issuer's JSON Web Key Set. Keys are fetched in the
	// background, shared by every route and config naming the same URL,
	// refreshed every jwks_cache_ttl, and refetched (at most once per
	// jwks_throttle) when a token names an unknown kid. Must be https
	// when ENVIRONMENT=production.
	JWKSURI string `json:"jwks_uri,omitempty"`

	// The path of a local JSON Web Key Set file (such as the jwks.json of
	// `caddy mcp-token keygen`), read at start and on every config reload.
	// Its keys are vetted as a fetched set's are; symmetric (oct) keys for
	// HS256/384/512 are allowed here only, never from a URL. Default
	// algorithms: those of its keys.
	JWKSFile string `json:"jwks_file,omitempty"`

	// Discover the JWKS URL from the issuer's metadata
	// (/.well-known/oauth-authorization-server, then
	// /.well-known/openid-configuration). Needs exactly one issuer.
	Discover bool `json:"discover,omitempty"`
}

// IssuerConfig is one issuer's policy when several issuers are accepted:
// a token's iss selects it, and only its keys can verify the token.
type IssuerConfig struct {
	// The issuer (iss) this policy is for. Required.
	Issuer string `json:"issuer"`

	// Where this issuer's keys come from.
	KeyConfig

	// Accepted aud values for this issuer's tokens (any of them).
	Audiences []string `json:"audiences,omitempty"`

	// Accepted algorithms. Default: as for the top-level algorithms.
	Algorithms []string `json:"algorithms,omitempty"`

	// Scopes this issuer's tokens must carry, on top of the global ones.
	RequiredScopes []string `json:"required_scopes,omitempty"`
}

// Config is the configuration shared by the `mcp_token` handler and the
// `mcp_token` authentication provider. At least one key source (top-level
// or in issuer_configs) or static token must be set.
type Config struct {
	// Accepted values of the token's `iss` claim for the top-level key
	// source. When empty, any issuer is accepted (not recommended).
	Issuers []string `json:"issuers,omitempty"`

	// Where the top-level policy's keys come from.
	KeyConfig

	// Accepted values of the token's `aud` claim; a token matches when any
	// of its audiences is one of these. When empty, any audience is
	// accepted (not recommended: a token minted for another service would
	// pass).
	Audiences []string `json:"audiences,omitempty"`

	// The JWS algorithms accepted (allow-list). Default: the algorithm of
	// the public key's type (RS256 for RSA, ES256/ES384/ES512 for EC,
	// EdDSA for Ed25519), HS256 with an HMAC secret, RS256 with a JWKS.
	// HMAC and asymmetric algorithms can never be mixed, HMAC never comes
	// from a JWKS, and "none" is never accepted.
	Algorithms []string `json:"algorithms,omitempty"`

	// Per-issuer policies, each with its own key source, audiences,
	// algorithms and scopes. A token's iss selects the policy.
	IssuerConfigs []IssuerConfig `json:"issuer_configs,omitempty"`

	// Time between background refreshes of JWKS key sets. Default: 1h.
	JWKSCacheTTL caddy.Duration `json:"jwks_cache_ttl,omitempty"`

	// Timeout of each JWKS or discovery request. Default: 10s.
	JWKSTimeout caddy.Duration `json:"jwks_timeout,omitempty"`

	// Minimum time between two JWKS refetches caused by tokens with an
	// unknown kid (meanwhile such tokens get 401, or 503 when the last
	// fetch failed). Default: 5m.
	JWKSThrottle caddy.Duration `json:"jwks_throttle,omitempty"`

	// Longest time a request waits for a JWKS fetch (for an unknown kid,
	// or while no keys are loaded); past it the request gets 503 while the
	// fetch goes on. Default: 1s.
	JWKSMaxWait caddy.Duration `json:"jwks_max_wait,omitempty"`

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

	// Fixed development tokens. Refused in production.
	StaticTokens []StaticToken `json:"static_tokens,omitempty"`

	// Failed-attempt rate limiting per client address (Caddy's client IP,
	// which honours trusted_proxies). Default: on, 10 failures per 60s.
	RateLimit *RateLimitConfig `json:"rate_limit,omitempty"`

	// Fill what this configuration leaves unset from FastMCP's
	// FASTMCP_SERVER_AUTH_* environment variables (JWT, introspection, rate
	// limiting; TYPE and SECRET_BACKEND). Options set here win.
	FromEnv bool `json:"from_env,omitempty"`

	// Apply the production guards whatever ENVIRONMENT says: no static
	// tokens, https and non-loopback endpoints only, an audience required.
	// They also apply when ENVIRONMENT=production.
	Production bool `json:"production,omitempty"`

	// The protected MCP resource: RFC 9728 metadata and the
	// resource_metadata URL of challenges.
	ProtectedResource

	// Scopes required per JSON-RPC method (such as tools/list), checked
	// after the global required_scopes on POST requests.
	MethodScopes map[string][]string `json:"method_scopes,omitempty"`

	// Scopes required per tool, for tools/call with that params.name.
	ToolScopes map[string][]string `json:"tool_scopes,omitempty"`

	// Scopes required per prompt, for prompts/get with that params.name.
	PromptScopes map[string][]string `json:"prompt_scopes,omitempty"`

	// Scopes required per resource, for resources/read with that
	// params.uri (exact match). In resources/templates/list, a rule keyed
	// by a template's uriTemplate text decides whether it is listed.
	ResourceScopes map[string][]string `json:"resource_scopes,omitempty"`

	// Rules in CEL (https://cel.dev) over the token and the MCP call; when
	// any is set, a request passes only if its scopes pass and at least
	// one rule is true (for each call of a batch). Variables: claims (map),
	// client_id, sub, iss, scopes (list), mcp.method, mcp.name,
	// mcp.arguments (map; decoded only when a rule reads it),
	// request.method, request.path, request.host, request.remote_ip. A
	// refusal is 403 naming no scope; a rule that fails to evaluate is
	// false (fail closed, logged at debug). Rules also filter lists: an
	// entry no rule can allow for the caller is hidden. Compiled and
	// type-checked when the config loads.
	AllowIf []string `json:"allow_if,omitempty"`

	// Write one INFO line per decision (accepted or refused, with the
	// reason, status, verifier, client_id, sub, iss, kid, a hash of the
	// token, the MCP method and name, remote address, host and path) to
	// the logger http.handlers.mcp_token.audit; route it with a `log`
	// block's include/exclude. Never the token, never argument values.
	// Default: off.
	Audit bool `json:"audit,omitempty"`

	// Filter the results of tools/list, prompts/list, resources/list and
	// resources/templates/list to the entries the caller's token may use
	// under method_scopes and tool_scopes, prompt_scopes or
	// resource_scopes (after scope_implies). A hidden entry is still
	// refused when called. JSON and event-stream responses are filtered; a
	// list response larger than max_body is refused with 502, never passed
	// unfiltered. Other responses are never buffered. Default: on when a
	// tool, prompt or resource rule exists.
	FilterLists *bool `json:"filter_lists,omitempty"`

	// Scope hierarchy: each key is a broader scope and its value the
	// narrower scopes it implies (transitively; a cycle is a configuration
	// error). A token granted the broader scope passes every check of a
	// narrower one: required_scopes, method_scopes, tool_scopes, issuer and
	// introspection scopes, and list filtering. Challenges still name the
	// scopes an operation needs, and {http.auth.user.scopes} the token's own.
	ScopeImplies map[string][]string `json:"scope_implies,omitempty"`

	// Let CORS preflight requests (OPTIONS with Origin and
	// Access-Control-Request-Method) through without a token, so browser
	// clients work. Default: true.
	CORSPreflight *bool `json:"cors_preflight,omitempty"`

	// The largest JSON-RPC body the handler reads to check method and tool
	// scopes and the Mcp-Method/Mcp-Name headers; larger bodies get 413.
	// Default: 1 MiB.
	MaxBody int64 `json:"max_body,omitempty"`

	// The verified-token cache: a JWT that verified is remembered (by its
	// SHA-256, never the token itself) and its next requests skip the
	// signature check, until the earliest of its exp (with the clock
	// skew), the TTL, and a change of the key that verified it. Method and
	// tool scopes are still checked on every request. Default: on, 10000
	// tokens, 5m.
	TokenCache *TokenCacheConfig `json:"token_cache,omitempty"`

	// Bind MCP sessions to the principal (iss and sub, else client_id) that
	// received their Mcp-Session-Id from the backend: a request carrying a
	// session id bound to another principal gets 404 before the backend,
	// whatever its method. Sessions the gateway never saw (a restart,
	// another instance) pass. Default: on, 100000 sessions, 24h since last
	// use. Handler only (the authentication provider cannot see answers).
	BindSessions *SessionBindingConfig `json:"bind_sessions,omitempty"`

	// Verify opaque tokens with an OAuth 2.0 Token Introspection endpoint
	// (RFC 7662). With JWT key sources configured too, a token shaped like
	// a JWS goes to JWT verification and any other token to introspection.
	Introspection *IntrospectionConfig `json:"introspection,omitempty"`

	// DPoP-bound access tokens (RFC 9449). Default: allowed.
	DPoP *DPoPConfig `json:"dpop,omitempty"`

	// Certificate-bound access tokens (RFC 8705 §3): a token whose cnf
	// carries x5t#S256 passes only over a TLS connection presenting that
	// client certificate (configure Caddy's tls client_auth). allowed
	// checks bound tokens, required refuses unbound ones too, off refuses
	// every bound token. Default: allowed.
	MTLSBound string `json:"mtls_bound,omitempty"`
}

// RateLimitConfig limits failed authentication attempts per client
// address. Only failures count (a token refused as invalid, expired, badly
// signed, for another audience...; not a missing token, a missing scope or
// a technical failure), so a client that never fails is never limited.
// Over the limit the handler answers 429 with Retry-After before any
// signature check or introspection call. State survives config reloads.
type RateLimitConfig struct {
	// Turn rate limiting off.
	Disabled bool `json:"disabled,omitempty"`
	// Failures allowed per window. Default: 10.
	MaxAttempts int `json:"max_attempts,omitempty"`
	// The window, starting at an address's first failure. Default: 60s.
	Window caddy.Duration `json:"window,omitempty"`
	// Most addresses tracked at once (least recently seen forgotten
	// first). Default: 10000.
	MaxAddresses int `json:"max_addresses,omitempty"`
}

// TokenCacheConfig sizes the verified-token cache of JWTs. Static tokens
// and introspected tokens are not cached here (the first are a constant-
// time lookup; introspection has its own cache).
type TokenCacheConfig struct {
	// Turn the cache off: every request's signature is checked.
	Disabled bool `json:"disabled,omitempty"`
	// Most tokens remembered (least recently used forgotten first).
	// Default: 10000.
	Size int `json:"size,omitempty"`
	// Longest time a token is remembered (never past its exp). Default: 5m.
	TTL caddy.Duration `json:"ttl,omitempty"`
}

// SessionBindingConfig sizes the session bindings; state is shared by
// every configuration with the same settings and survives reloads.
type SessionBindingConfig struct {
	// Turn session binding off.
	Disabled bool `json:"disabled,omitempty"`
	// Most sessions remembered (least recently used forgotten first; a
	// forgotten session passes as never seen). Default: 100000.
	Size int `json:"size,omitempty"`
	// Time a binding lives after its last use. Default: 24h.
	TTL caddy.Duration `json:"ttl,omitempty"`
}

// IntrospectionConfig configures RFC 7662 token introspection.
type IntrospectionConfig struct {
	// The introspection endpoint. Must be https (and not localhost) when
	// ENVIRONMENT=production.
	URL string `json:"url"`

	// This resource server's client id at the authorization server. Required.
	ClientID string `json:"client_id,omitempty"`

	// Its client secret; use a placeholder such as {env.INTROSPECTION_SECRET}
	// or {file./path}. Never logged.
	ClientSecret string `json:"client_secret,omitempty"`

	// How to authenticate: "basic" (client_secret_basic, default) or
	// "post" (client_secret_post).
	AuthMethod string `json:"auth_method,omitempty"`

	// Timeout of each introspection call. Default: 10s; at most 60s.
	Timeout caddy.Duration `json:"timeout,omitempty"`

	// How long an active result is reused (never past the token's exp).
	// Default: 60s; 0 disables the cache (every request is introspected,
	// so a revocation is seen at once).
	CacheTTL *caddy.Duration `json:"cache_ttl,omitempty"`

	// How long an inactive result is reused. Default: 5s.
	NegativeCacheTTL caddy.Duration `json:"negative_cache_ttl,omitempty"`

	// Share introspection answers across the fleet through the global
	// `mcp_token { store redis <url> }` store: a token missing from the
	// local cache is looked up in Redis before the endpoint is called, and
	// a fresh answer is stored there for as long as it is cached locally
	// (cache_ttl, never past exp; negative_cache_ttl when inactive), under
	// a hash of the endpoint, client id and token (never the token).
	// Refused without that store or with cache_ttl 0. During a Redis
	// outage the local cache and the endpoint answer. Default: off.
	ShareIntrospection bool `json:"share_introspection,omitempty"`

	// Maximum number of cached results (LRU). Default: 10000.
	CacheSize int `json:"cache_size,omitempty"`

	// Most calls outstanding to the endpoint at once (requests for the
	// same token share one call); beyond it requests get 503 at once
	// rather than queue behind a slow endpoint. Also the connection
	// limit of the endpoint's own connection pool. Default: 64.
	MaxInFlight int `json:"max_in_flight,omitempty"`

	// Accepted iss values of introspection results. Default: the top-level
	// issuers. A result naming another issuer is refused.
	Issuers []string `json:"issuers,omitempty"`

	// Accepted aud values (any of them). Default: the top-level audiences.
	Audiences []string `json:"audiences,omitempty"`

	// Refuse results without iss.
	RequireIssuer bool `json:"require_issuer,omitempty"`

	// Refuse results without aud. Default: on whenever an audience (or a
	// resource, the default audience) is configured, since a result that
	// names no audience may be a token issued for any service; set false
	// only for an authorization server that never returns aud. Always on
	// in production.
	RequireAudience *bool `json:"require_audience,omitempty"`

	// Scopes introspected tokens must carry, on top of the global ones.
	RequiredScopes []string `json:"required_scopes,omitempty"`
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
