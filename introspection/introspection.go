// Package introspection verifies opaque bearer tokens with OAuth 2.0 Token
// Introspection (RFC 7662): one call per token, cached, fail-closed. It has
// no Caddy dependency.
package introspection

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"go.uber.org/zap"

	"github.com/mcptoken/caddy-mcp-token/internal/remote"
	"github.com/mcptoken/caddy-mcp-token/internal/streak"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// Defaults and limits for Options.
const (
	DefaultTimeout          = 10 * time.Second
	MaxTimeout              = 60 * time.Second
	DefaultCacheTTL         = 60 * time.Second
	DefaultNegativeCacheTTL = 5 * time.Second
	DefaultCacheSize        = 10000
	DefaultMaxBytes         = 1 << 20
	DefaultMaxInFlight      = 64
)

// Client authentication methods (RFC 6749 §2.3.1).
const (
	AuthBasic = "basic" // client_secret_basic (default)
	AuthPost  = "post"  // client_secret_post
)

// Options configure a Client: the endpoint, how to call it, and the cache.
// Zero values mean the defaults.
type Options struct {
	// URL is the introspection endpoint. Required.
	URL string
	// ClientID and ClientSecret authenticate this resource server to the
	// endpoint.
	ClientID, ClientSecret string
	// AuthMethod is AuthBasic (default) or AuthPost.
	AuthMethod string
	// Timeout bounds each call. Default 10s, at most 60s.
	Timeout time.Duration
	// CacheTTL bounds how long an active result is reused (never past the
	// token's exp). Default 60s; NoCache disables caching.
	CacheTTL time.Duration
	NoCache  bool
	// NegativeCacheTTL is how long an inactive result is reused, so a flood
	// of garbage tokens cannot hammer the provider. Default 5s.
	NegativeCacheTTL time.Duration
	// CacheSize bounds the number of cached tokens (LRU). Default 10000.
	CacheSize int
	// MaxBytes caps a response body. Default 1 MiB.
	MaxBytes int64
	// MaxInFlight bounds the calls outstanding to the endpoint at a time
	// (concurrent requests for one token share a call). A request that
	// needs a call beyond the bound fails at once with ErrUnavailable (503);
	// nothing queues. The connection pool holds as many connections.
	// Default 64.
	MaxInFlight int
	// Client is the HTTP client. Default: our own, with Timeout, not
	// following redirects, on a transport of its own holding at most
	// MaxInFlight connections (and keeping as many idle for reuse).
	Client *http.Client
	// Shared, when set, is a cache the gateway instances of a fleet share:
	// a token missing from the local cache is looked up there before the
	// endpoint is called, and a fresh answer is stored there for as long
	// as it is cached locally. Its failures are misses (the endpoint
	// answers), logged once per streak. It needs the cache (not NoCache).
	Shared SharedCache
	// Logger receives endpoint trouble, once per failure streak.
	Logger *zap.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Rules are what a Verifier requires of an introspection result.
type Rules struct {
	// Issuers, when set, are the accepted iss values: a response naming
	// another issuer is refused. RequireIssuer refuses a response without iss.
	Issuers       []string
	RequireIssuer bool
	// Audiences, when set, are the accepted aud values (any of them).
	// RequireAudience refuses a response without aud.
	Audiences       []string
	RequireAudience bool
	// RequiredScopes must all be granted (else a *verifiers.ScopeError).
	RequiredScopes []string
	// ClockSkew is the leeway on exp and nbf; at most verifiers.MaxClockSkew.
	ClockSkew time.Duration
}

// Stats counts a client's work.
type Stats struct {
	Calls     int64 `json:"calls"`      // introspection requests sent
	CacheHits int64 `json:"cache_hits"` // verifications answered from the cache
	Failures  int64 `json:"failures"`   // calls that ended in a technical failure
	Rejected  int64 `json:"rejected"`   // requests refused at once: MaxInFlight calls outstanding
	Abandoned int64 `json:"abandoned"`  // calls cancelled because every request waiting for them went away
	// SharedHits counts answers taken from the fleet's shared cache.
	SharedHits int64 `json:"shared_hits,omitempty"`
}

// entry is a cached introspection result: the token's identity, or
// inactive.
type entry struct {
	tok      *verifiers.AccessToken
	active   bool
	answered time.Time // when the endpoint gave this answer
	expires  time.Time
}

// Client calls one introspection endpoint and caches its answers. It is
// safe for concurrent use and can be shared by several Verifiers (routes,
// config generations) with different Rules.
type Client struct {
	opts    Options
	display string // the URL, redacted for errors, logs and Status
	cache   *lru.Cache[[sha256.Size]byte, entry]
	streak  *streak.Logger

	sharedStreak *streak.Logger // the shared cache's failures

	mu       sync.Mutex
	flights  map[[sha256.Size]byte]*call // shared calls still accepting waiters
	inFlight int                         // calls outstanding, abandoned ones included

	calls, hits, failures, rejected, abandoned, sharedHits atomic.Int64
}

// Verifier is a verifiers.Verifier for opaque tokens: a Client's answers
// judged by Rules.
type Verifier struct {
	client *Client
	rules  Rules
}

// New checks opts and returns a client.
func New(opts Options) (*Client, error) {
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("introspection URL %q is not an absolute http(s) URL", opts.URL)
	}
	switch opts.AuthMethod {
	case "":
		opts.AuthMethod = AuthBasic
	case AuthBasic, AuthPost:
	default:
		return nil, fmt.Errorf("auth method %q not supported (basic or post)", opts.AuthMethod)
	}
	if opts.ClientID == "" {
		return nil, errors.New("client_id is required to call the introspection endpoint")
	}
	switch {
	case opts.Timeout < 0 || opts.Timeout > MaxTimeout:
		return nil, fmt.Errorf("timeout %s out of range (at most %s)", opts.Timeout, MaxTimeout)
	case opts.Timeout == 0:
		opts.Timeout = DefaultTimeout
	}
	if opts.CacheTTL < 0 || opts.NegativeCacheTTL < 0 || opts.CacheSize < 0 {
		return nil, errors.New("cache TTLs and size must not be negative")
	}
	if opts.CacheTTL == 0 {
		opts.CacheTTL = DefaultCacheTTL
	}
	if opts.NegativeCacheTTL == 0 {
		opts.NegativeCacheTTL = DefaultNegativeCacheTTL
	}
	if opts.CacheSize == 0 {
		opts.CacheSize = DefaultCacheSize
	}
	if opts.MaxBytes <= 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.Shared != nil && opts.NoCache {
		return nil, errors.New("a shared cache needs the cache: cache_ttl 0 turns it off")
	}
	if opts.MaxInFlight < 0 {
		return nil, errors.New("max in-flight calls must not be negative")
	}
	if opts.MaxInFlight == 0 {
		opts.MaxInFlight = DefaultMaxInFlight
	}
	if opts.Client == nil {
		opts.Client = remote.NewClient(opts.Timeout, opts.MaxInFlight)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	cache, err := lru.New[[sha256.Size]byte, entry](opts.CacheSize)
	if err != nil {
		return nil, err
	}
	return &Client{opts: opts, display: remote.Redact(opts.URL), cache: cache, flights: map[[sha256.Size]byte]*call{},
		streak:       streak.New(opts.Logger, "token introspection", opts.Now),
		sharedStreak: streak.New(opts.Logger, "shared introspection cache (redis)", opts.Now)}, nil
}

// Verifier returns a verifier applying r to this client's answers.
func (c *Client) Verifier(r Rules) (*Verifier, error) {
	if r.ClockSkew < 0 || r.ClockSkew > verifiers.MaxClockSkew {
		return nil, fmt.Errorf("clock skew %s out of range (0 to %s)", r.ClockSkew, verifiers.MaxClockSkew)
	}
	return &Verifier{client: c, rules: r}, nil
}

// Stats returns the counters.
func (c *Client) Stats() Stats {
	return Stats{Calls: c.calls.Load(), CacheHits: c.hits.Load(), Failures: c.failures.Load(),
		Rejected: c.rejected.Load(), Abandoned: c.abandoned.Load(), SharedHits: c.sharedHits.Load()}
}

// Close closes the idle connections of the client's own transport; calls
// still outstanding end by their timeout. A closed client still works (it
// dials again), so Close is safe in a pool's destructor.
func (c *Client) Close() { c.opts.Client.CloseIdleConnections() }

// CacheLen is the number of cached results.
func (c *Client) CacheLen() int { return c.cache.Len() }

// Verify implements verifiers.Verifier. The cache is keyed by the token's
// SHA-256, never the token; concurrent requests with the same uncached
// token share one call.
func (v *Verifier) Verify(ctx context.Context, token string) (*verifiers.AccessToken, error) {
	e, err := v.client.lookup(ctx, token)
	if err != nil {
		return nil, err
	}
	return v.decide(e)
}

// decide applies the verifier's rules to an introspection result, fresh
// or cached.
func (v *Verifier) decide(e entry) (*verifiers.AccessToken, error) {
	if !e.active {
		return nil, fmt.Errorf("%w: introspection says inactive", verifiers.ErrInactive)
	}
	tok, now, skew := e.tok, v.client.opts.Now(), v.rules.ClockSkew
	// An exp, nbf or iat out of range (nbf 1e300 would read as the past)
	// makes the answer malformed, as it makes a JWT.
	if err := verifiers.CheckTimeClaims(tok.Claims); err != nil {
		return nil, err
	}
	if !tok.ExpiresAt.IsZero() && now.After(tok.ExpiresAt.Add(skew)) {
		return nil, fmt.Errorf("%w: active but exp %s has passed", verifiers.ErrExpired, tok.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if nbf, ok := verifiers.NumericDate(tok.Claims["nbf"]); ok && now.Add(skew).Before(nbf) {
		return nil, fmt.Errorf("%w: nbf %s", verifiers.ErrNotYetValid, nbf.UTC().Format(time.RFC3339))
	}
	r := v.rules
	if err := checkValue(tok.Issuer != "", slices.Contains(r.Issuers, tok.Issuer), len(r.Issuers) > 0, r.RequireIssuer); err != nil {
		return nil, fmt.Errorf("%w: iss %q %v", verifiers.ErrBadIssuer, tok.Issuer, err)
	}
	audOK := verifiers.MatchAudience(tok.Audience, r.Audiences)
	if err := checkValue(len(tok.Audience) > 0, audOK, len(r.Audiences) > 0, r.RequireAudience); err != nil {
		return nil, fmt.Errorf("%w: aud %q %v", verifiers.ErrBadAudience, tok.Audience, err)
	}
	if err := verifiers.RequireScopes(tok, r.RequiredScopes); err != nil {
		return tok, err
	}
	return tok, nil
}

// checkValue applies "refuse a value that does not match; refuse an absent
// value only when required".
func checkValue(present, matches, configured, required bool) error {
	switch {
	case !present && required:
		return errors.New("is required")
	case present && configured && !matches:
		return errors.New("is not accepted")
	}
	return nil
}

// Interface guard
var _ verifiers.Verifier = (*Verifier)(nil)
