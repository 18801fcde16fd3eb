package verifiers

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/sha256"
	"errors"
	"sync/atomic"
	"time"
	"unsafe"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Token cache defaults.
const (
	DefaultTokenCacheSize = 10000
	DefaultTokenCacheTTL  = 5 * time.Minute
)

// KeyPeeker is a KeySource that can tell, without fetching or waiting,
// which key it would give now for a token signed with alg naming kid. The
// token cache asks it on every hit, so that a key dropped or changed by a
// refresh invalidates the tokens it verified.
type KeyPeeker interface {
	CurrentKey(alg *Algorithm, kid string) (any, bool)
}

// keyBinding records how a JWT was verified: the key source, the
// algorithm, the kid and the key. JWT.Verify attaches it to the token.
type keyBinding struct {
	keys KeySource
	alg  *Algorithm
	kid  string
	key  any
	// the token's validity, the clock skew applied
	notBefore, notAfter time.Time
}

// current reports whether the key source would still verify the token
// with the same key.
func (b *keyBinding) current() bool {
	switch ks := b.keys.(type) {
	case StaticKey:
		return true // a static key never changes within a configuration
	case KeyPeeker:
		key, ok := ks.CurrentKey(b.alg, b.kid)
		// A JWKS refresh keeps the object of an unchanged key (see
		// jwks.Set), so a hit is one identity check; a source that makes
		// new objects pays the value comparison.
		return ok && (sameObject(key, b.key) || SameKey(key, b.key))
	}
	return false
}

// SameKey compares two verification keys by value.
func SameKey(a, b any) bool {
	if sa, ok := a.([]byte); ok {
		sb, ok := b.([]byte)
		return ok && bytes.Equal(sa, sb)
	}
	if ea, ok := a.(interface{ Equal(crypto.PublicKey) bool }); ok {
		return ea.Equal(b)
	}
	return false
}

// sameObject reports whether a and b are the same key object: the same
// pointer, or the same bytes in memory for a slice key (Ed25519, HMAC).
// It never compares values, and so never allocates.
func sameObject(a, b any) bool {
	switch ka := a.(type) {
	case *rsa.PublicKey:
		kb, ok := b.(*rsa.PublicKey)
		return ok && ka == kb
	case *ecdsa.PublicKey:
		kb, ok := b.(*ecdsa.PublicKey)
		return ok && ka == kb
	case ed25519.PublicKey:
		kb, ok := b.(ed25519.PublicKey)
		return ok && sameBytes(ka, kb)
	case []byte:
		kb, ok := b.([]byte)
		return ok && sameBytes(ka, kb)
	}
	return false
}

func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && len(a) > 0 && &a[0] == &b[0]
}

// CachedToken is a verified token as the cache keeps it: the identity,
// which verifier judged it, and whatever the caller derived from it once
// (Extra: placeholder values), so a hit rebuilds nothing.
type CachedToken struct {
	Token *AccessToken
	Kind  string
	Extra any

	binding *keyBinding
	expires time.Time    // min(exp+skew, added+ttl)
	touched atomic.Int64 // when the LRU last moved it to the front (UnixNano)
}

// promoteEvery is how often a hit moves its entry to the front of the
// LRU: at most once in this time per entry, so that most hits only read
// the cache (a shared lock, no list update). An entry in use stays among
// the recently used to within this time; the cache stays bounded.
const promoteEvery = time.Second

// TokenCache remembers verified JWTs, keyed by the SHA-256 of the token
// (the raw token is never stored), in a bounded LRU. An entry is served
// until the earliest of the token's exp (with the clock skew), the TTL,
// and a change of the key that verified it; nbf and exp are checked
// against the clock on every hit. Only tokens verified with a key binding
// (JWT verification) are cached: static tokens are a constant-time lookup
// already, and introspection has its own cache. Per-request rules (method
// and tool scopes) are never cached: callers evaluate them on every hit.
type TokenCache struct {
	lru          *lru.Cache[[sha256.Size]byte, *CachedToken]
	ttl          time.Duration
	now          func() time.Time
	hits, misses atomic.Int64
}

// NewTokenCache returns a cache of at most size entries kept at most ttl.
// now is the clock (nil: time.Now).
func NewTokenCache(size int, ttl time.Duration, now func() time.Time) (*TokenCache, error) {
	if size <= 0 || ttl <= 0 {
		return nil, errors.New("token cache: size and ttl must be positive")
	}
	l, err := lru.New[[sha256.Size]byte, *CachedToken](size)
	if err != nil {
		return nil, err
	}
	if now == nil {
		now = time.Now
	}
	return &TokenCache{lru: l, ttl: ttl, now: now}, nil
}

// TokenKey is the cache key of a token: its SHA-256. The token's bytes
// are hashed in place: []byte(token) would copy a token of more than 32
// bytes to the heap on every request, and Sum256 only reads its input.
func TokenKey(token string) [sha256.Size]byte {
	return sha256.Sum256(unsafe.Slice(unsafe.StringData(token), len(token)))
}

// Get returns the cached verification of token, or nil. A stale entry
// (expired, not yet valid, or whose key changed) is removed.
func (c *TokenCache) Get(token string) *CachedToken {
	if c == nil {
		return nil
	}
	key := TokenKey(token)
	e, ok := c.lru.Peek(key)
	if !ok {
		c.misses.Add(1)
		return nil
	}
	now := c.now()
	if !now.Before(e.expires) || now.Before(e.binding.notBefore) || !e.binding.current() {
		c.lru.Remove(key)
		c.misses.Add(1)
		return nil
	}
	if t := now.UnixNano(); t-e.touched.Load() >= int64(promoteEvery) {
		e.touched.Store(t)
		c.lru.Get(key) // to the front (see promoteEvery)
	}
	c.hits.Add(1)
	return e
}

// Put caches a token the verifiers accepted, with extra (see CachedToken).
// Tokens verified without a key binding are not cached. It returns the
// entry, which the caller may use as a hit's.
func (c *TokenCache) Put(token string, kind string, tok *AccessToken, extra any) *CachedToken {
	e := &CachedToken{Token: tok, Kind: kind, Extra: extra}
	if c == nil || tok == nil || tok.binding == nil {
		return e
	}
	now := c.now()
	e.binding = tok.binding
	e.expires = now.Add(c.ttl)
	e.touched.Store(now.UnixNano())
	if !tok.binding.notAfter.IsZero() && tok.binding.notAfter.Before(e.expires) {
		e.expires = tok.binding.notAfter
	}
	if now.Before(e.expires) {
		c.lru.Add(TokenKey(token), e)
	}
	return e
}

// TokenCacheStats are a cache's counters.
type TokenCacheStats struct {
	Hits, Misses int64
	Len          int
}

// Stats returns the counters and the current size.
func (c *TokenCache) Stats() TokenCacheStats {
	if c == nil {
		return TokenCacheStats{}
	}
	return TokenCacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Len: c.lru.Len()}
}

// Keys returns the cache's keys (token digests), for tests and tools.
func (c *TokenCache) Keys() [][sha256.Size]byte {
	if c == nil {
		return nil
	}
	return c.lru.Keys()
}
