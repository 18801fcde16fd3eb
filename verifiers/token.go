// Package verifiers holds the bearer-token verification core: the Verifier
// interface, the AccessToken every verifier returns, JWT verification with
// static keys, HMAC secrets or a pluggable key source, static development
// tokens, and scope checks. It has no Caddy dependency.
package verifiers

import (
	"context"
	"encoding/json"
	"fmt"
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
	// ExpiresAt is exp; zero when the token does not expire; the epoch
	// when exp is present but not a valid NumericDate (so it reads as
	// expired).
	ExpiresAt time.Time
	// KeyID is the kid that verified a JWT, if any.
	KeyID string
	// Claims holds every claim of the token (or introspection response).
	Claims map[string]any

	// binding is how a JWT was verified, for the token cache.
	binding *keyBinding
}

// HasScopes reports whether the token carries every scope in required.
func (t *AccessToken) HasScopes(required []string) bool {
	for _, s := range required {
		if !slices.Contains(t.Scopes, s) {
			return false
		}
	}
	return true
}

// RequireScopes returns a *ScopeError when the token lacks any of required.
func RequireScopes(t *AccessToken, required []string) error {
	var missing []string
	for _, s := range required {
		if !slices.Contains(t.Scopes, s) {
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
	switch exp, present, err := ParseNumericDate(claims["exp"]); {
	case err != nil:
		// Present but not a date: read as long expired, so that a
		// caller that only compares ExpiresAt with its clock refuses it.
		t.ExpiresAt = time.Unix(0, 0)
	case present:
		t.ExpiresAt = exp
	}
	return t
}

// Time claims (RFC 7519 NumericDate) are accepted from the epoch to the
// end of year 9999. Anything outside (negative, 1e300, NaN, more seconds
// than an int64 holds) is a malformed token, never a date in the past:
// converting such a float to int64 is undefined in Go.
const (
	minNumericDate = 0
	maxNumericDate = 253402300799 // 9999-12-31T23:59:59Z
)

// TimeClaims are the claims CheckTimeClaims checks.
var TimeClaims = []string{"exp", "nbf", "iat"}

// ParseNumericDate reads an RFC 7519 NumericDate (seconds since the epoch,
// an integer or a fraction). present is false when v is nil (absent). A
// present value that is not a number from 0 to the end of year 9999 is an
// error wrapping ErrMalformed.
func ParseNumericDate(v any) (t time.Time, present bool, err error) {
	var f float64
	switch n := v.(type) {
	case nil:
		return time.Time{}, false, nil
	case float64:
		f = n
	case json.Number:
		if f, err = n.Float64(); err != nil {
			return time.Time{}, true, fmt.Errorf("%w: %q is not a NumericDate", ErrMalformed, string(n))
		}
	case int64:
		if n < minNumericDate || n > maxNumericDate {
			return time.Time{}, true, fmt.Errorf("%w: NumericDate %d out of range", ErrMalformed, n)
		}
		return time.Unix(n, 0), true, nil
	case int:
		return ParseNumericDate(int64(n))
	default:
		return time.Time{}, true, fmt.Errorf("%w: a NumericDate must be a number, not %T", ErrMalformed, v)
	}
	// The comparisons are false for NaN, so it is refused too.
	if !(f >= minNumericDate && f <= maxNumericDate) {
		return time.Time{}, true, fmt.Errorf("%w: NumericDate %g out of range", ErrMalformed, f)
	}
	sec, frac := math.Modf(f)
	return time.Unix(int64(sec), int64(frac*1e9)), true, nil
}

// NumericDate is ParseNumericDate for callers that only read a date: ok is
// false when v is absent, not a number, or out of range. Callers that
// decide on a date must refuse a present but bad one (CheckTimeClaims):
// ok false alone does not say which.
func NumericDate(v any) (time.Time, bool) {
	t, present, err := ParseNumericDate(v)
	return t, present && err == nil
}

// CheckTimeClaims refuses a claim set whose exp, nbf or iat is present but
// not a NumericDate in range (see ParseNumericDate), with an error
// wrapping ErrMalformed. It does not compare the dates with the clock.
func CheckTimeClaims(claims map[string]any) error {
	for _, name := range TimeClaims {
		v, present := claims[name]
		if !present {
			continue
		}
		if v == nil {
			return fmt.Errorf("%s: %w: null", name, ErrMalformed)
		}
		if _, _, err := ParseNumericDate(v); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
	}
	return nil
}

func stringClaim(claims map[string]any, name string) string {
	s, _ := claims[name].(string)
	return s
}

// SplitScope splits a scope string on single spaces (0x20), dropping empty
// parts (RFC 6749 §3.3: scope = scope-token *( SP scope-token )). Other
// whitespace (tab, no-break space, ...) belongs to a scope-token's text as
// far as we are concerned, as it does for the authorization server that
// issued it: splitting there would grant scopes it never issued.
func SplitScope(s string) []string {
	var out []string
	for part := range strings.SplitSeq(s, " ") {
		if part != "" {
			out = append(out, part)
		}
	}
	return out
}

// stringList reads a claim that is either a space-separated string (see
// SplitScope) or a list of strings; anything else yields nil.
func stringList(v any) []string {
	switch x := v.(type) {
	case string:
		return SplitScope(x)
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
