// Package verifiers holds the bearer-token verification core: the Verifier
// interface, the AccessToken every verifier returns, JWT verification with
// static keys, HMAC secrets or a pluggable key source, static development
// tokens, and scope checks. It has no Caddy dependency.
package verifiers

import (
	"context"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"time"
)

// Verifier checks one bearer token. It returns the token's identity, or an
// error wrapping one of this package's sentinels (see Classify). A
// technical failure wraps ErrUnavailable and must never be read as a pass.
type Verifier interface {
	Verify(ctx context.Context, token string) (*AccessToken, error)
}

// AccessToken is a verified token's identity, whatever kind of token it was.
type AccessToken struct {
	// ClientID is client_id, else azp, else sub.
	ClientID string
	// Subject is sub.
	Subject string
	// Issuer is iss.
	Issuer string
	// Audience is aud, always as a list.
	Audience []string
	// Scopes come from scope (space-separated) or scp (list or string).
	Scopes []string
	// ExpiresAt is exp; zero when the token does not expire.
	ExpiresAt time.Time
	// KeyID is the kid that verified a JWT, if any.
	KeyID string
	// Claims holds every claim of the token (or introspection response).
	Claims map[string]any

	// binding is how a JWT was verified, for the token cache.
	binding *keyBinding
	// granted are the effective scopes when a ScopeHierarchy added implied
	// ones (see ScopeHierarchy.Apply); nil: Scopes.
	granted []string
}

// Granted returns the scopes the token is granted: its own Scopes, plus
// the scopes they imply when a ScopeHierarchy was applied.
func (t *AccessToken) Granted() []string {
	if t.granted != nil {
		return t.granted
	}
	return t.Scopes
}

// HasScopes reports whether the token is granted every scope in required
// (see Granted).
func (t *AccessToken) HasScopes(required []string) bool {
	granted := t.Granted()
	for _, s := range required {
		if !slices.Contains(granted, s) {
			return false
		}
	}
	return true
}

// RequireScopes returns a *ScopeError when the token is not granted (see
// Granted) any of required. The error names required as given, never the
// broader scopes that would imply them.
func RequireScopes(t *AccessToken, required []string) error {
	var missing []string
	granted := t.Granted()
	for _, s := range required {
		if !slices.Contains(granted, s) {
			missing = append(missing, s)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return &ScopeError{Required: required, Missing: missing}
}

// FromClaims builds an AccessToken from a claim set (a JWT payload or an
// introspection response). It does not validate anything.
func FromClaims(claims map[string]any) *AccessToken {
	t := &AccessToken{
		Subject:  stringClaim(claims, "sub"),
		Issuer:   stringClaim(claims, "iss"),
		Audience: audienceList(claims["aud"]),
		Claims:   claims,
	}
	t.ClientID = firstNonEmpty(stringClaim(claims, "client_id"), stringClaim(claims, "azp"), t.Subject)
	if v, ok := claims["scope"]; ok {
		t.Scopes = stringList(v)
	} else {
		t.Scopes = stringList(claims["scp"])
	}
	if exp, ok := NumericDate(claims["exp"]); ok {
		t.ExpiresAt = exp
	}
	return t
}

// NumericDate reads an RFC 7519 NumericDate (seconds since the epoch, an
// integer or a fraction). ok is false when v is absent or not a number.
func NumericDate(v any) (time.Time, bool) {
	var f float64
	switch n := v.(type) {
	case float64:
		f = n
	case json.Number:
		var err error
		if f, err = n.Float64(); err != nil {
			return time.Time{}, false
		}
	case int64:
		f = float64(n)
	case int:
		f = float64(n)
	default:
		return time.Time{}, false
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return time.Time{}, false
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true
}

func stringClaim(claims map[string]any, name string) string {
	s, _ := claims[name].(string)
	return s
}

// stringList reads a claim that is either a space-separated string or a
// list of strings; anything else yields nil.
func stringList(v any) []string {
	switch x := v.(type) {
	case string:
		return strings.Fields(x)
	case []string:
		return x
	case []any:
		out := make([]string, 0, len(x))
		for _, e := range x {
			if s, ok := e.(string); ok && s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}

// audienceList reads aud: a single StringOrURI (never split) or a list.
func audienceList(v any) []string {
	if s, ok := v.(string); ok {
		if s == "" {
			return nil
		}
		return []string{s}
	}
	return stringList(v)
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
