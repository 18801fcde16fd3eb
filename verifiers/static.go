package verifiers

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"maps"
	"os"
	"strings"
	"time"
)

// IsProduction reports whether ENVIRONMENT=production (case-insensitive).
func IsProduction() bool {
	return strings.EqualFold(strings.TrimSpace(os.Getenv("ENVIRONMENT")), "production")
}

// ErrStaticInProduction is returned by NewStatic under ENVIRONMENT=production.
var ErrStaticInProduction = errors.New("static tokens are for DEVELOPMENT ONLY and are refused when ENVIRONMENT=production")

// StaticToken is one development token and the identity it stands for.
type StaticToken struct {
	// Token is the bearer string.
	Token string
	// ClientID is required.
	ClientID string
	// Subject is optional.
	Subject string
	// Scopes granted to the token.
	Scopes []string
	// ExpiresAt, when not zero, ends the token's validity.
	ExpiresAt time.Time
	// Claims holds any extra claims, passed through to AccessToken.Claims.
	Claims map[string]any
}

// Static verifies a fixed set of development tokens. Tokens are held as
// SHA-256 digests (the plain tokens are not kept) and every lookup compares
// the presented token's digest with all of them in constant time.
type Static struct {
	entries []staticEntry
	now     func() time.Time
}

type staticEntry struct {
	digest [sha256.Size]byte
	token  StaticToken
}

// NewStatic builds the verifier. It refuses under production (see
// IsProduction), refuses an entry without token or client id, and
// refuses a duplicated token.
func NewStatic(tokens []StaticToken, production bool) (*Static, error) {
	if production {
		return nil, ErrStaticInProduction
	}
	s := &Static{now: time.Now}
	seen := make(map[[sha256.Size]byte]bool, len(tokens))
	for i, t := range tokens {
		if t.Token == "" {
			return nil, fmt.Errorf("static token %d: token is empty", i+1)
		}
		if t.ClientID == "" {
			return nil, fmt.Errorf("static token %d: client_id is required", i+1)
		}
		d := sha256.Sum256([]byte(t.Token))
		if seen[d] {
			return nil, fmt.Errorf("static token %d: duplicate token", i+1)
		}
		seen[d] = true
		t.Token = ""
		s.entries = append(s.entries, staticEntry{digest: d, token: t})
	}
	return s, nil
}

// lookup finds the entry for token, comparing its digest with every
// entry's without an early exit.
func (s *Static) lookup(token string) (StaticToken, bool) {
	d := sha256.Sum256([]byte(token))
	found := -1
	for i := range s.entries {
		if subtle.ConstantTimeCompare(s.entries[i].digest[:], d[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return StaticToken{}, false
	}
	return s.entries[found].token, true
}

// Verify accepts a configured token that has not expired.
func (s *Static) Verify(_ context.Context, token string) (*AccessToken, error) {
	t, ok := s.lookup(token)
	if !ok {
		return nil, fmt.Errorf("%w: unknown static token", ErrInactive)
	}
	if !t.ExpiresAt.IsZero() && !s.now().Before(t.ExpiresAt) {
		return nil, fmt.Errorf("%w: static token expired", ErrExpired)
	}
	claims := maps.Clone(t.Claims)
	if claims == nil {
		claims = map[string]any{}
	}
	claims["client_id"] = t.ClientID
	if t.Subject != "" {
		claims["sub"] = t.Subject
	}
	if !t.ExpiresAt.IsZero() {
		claims["exp"] = t.ExpiresAt.Unix()
	}
	return &AccessToken{
		ClientID:  t.ClientID,
		Subject:   t.Subject,
		Scopes:    append([]string(nil), t.Scopes...),
		ExpiresAt: t.ExpiresAt,
		Claims:    claims,
	}, nil
}

// Has reports whether token is one of the static tokens.
func (s *Static) Has(token string) bool {
	_, ok := s.lookup(token)
	return ok
}
