package verifiers

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// rotatingKeys is a KeySource and KeyPeeker whose keys a test replaces,
// as a JWKS refresh would.
type rotatingKeys struct {
	mu   sync.Mutex
	keys map[string]any
}

func (r *rotatingKeys) set(kid string, key any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if key == nil {
		delete(r.keys, kid)
		return
	}
	r.keys[kid] = key
}

func (r *rotatingKeys) Key(_ context.Context, _ *Algorithm, kid string) (any, error) {
	if k, ok := r.CurrentKey(nil, kid); ok {
		return k, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownKey, kid)
}

func (r *rotatingKeys) CurrentKey(_ *Algorithm, kid string) (any, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	k, ok := r.keys[kid]
	return k, ok
}

type cacheFixture struct {
	now   time.Time
	priv  *ecdsa.PrivateKey
	keys  *rotatingKeys
	v     *JWT
	cache *TokenCache
}

func newCacheFixture(t testing.TB, ttl time.Duration) *cacheFixture {
	t.Helper()
	f := &cacheFixture{now: time.Unix(1_800_000_000, 0)}
	var err error
	if f.priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	f.keys = &rotatingKeys{keys: map[string]any{"k1": &f.priv.PublicKey}}
	clock := func() time.Time { return f.now }
	if f.v, err = NewJWT(JWTConfig{Algorithms: []string{"ES256"}, Keys: f.keys, ClockSkew: 30 * time.Second, Now: clock}); err != nil {
		t.Fatal(err)
	}
	if f.cache, err = NewTokenCache(100, ttl, clock); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *cacheFixture) token(t testing.TB, kid string, claims jwt.MapClaims) string {
	t.Helper()
	tk := jwt.NewWithClaims(jwt.SigningMethodES256, claims)
	tk.Header["kid"] = kid
	s, err := tk.SignedString(f.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// verify is what the request path does: a hit, or verification and Put.
func (f *cacheFixture) verify(t testing.TB, token string) (hit bool, err error) {
	t.Helper()
	if e := f.cache.Get(token); e != nil {
		return true, nil
	}
	tok, err := f.v.Verify(context.Background(), token)
	if err != nil {
		return false, err
	}
	f.cache.Put(token, KindJWT, tok, nil)
	return false, nil
}

func TestTokenCacheLifetime(t *testing.T) {
	f := newCacheFixture(t, 5*time.Minute)
	exp := f.now.Add(2 * time.Minute)
	tok := f.token(t, "k1", jwt.MapClaims{"sub": "a", "exp": exp.Unix(), "iat": f.now.Unix()})

	if hit, err := f.verify(t, tok); hit || err != nil {
		t.Fatalf("first: hit=%v err=%v", hit, err)
	}
	if hit, err := f.verify(t, tok); !hit || err != nil {
		t.Fatalf("second: hit=%v err=%v", hit, err)
	}
	// Within the skew after exp the verifier still accepts, so may the cache.
	f.now = exp.Add(29 * time.Second)
	if hit, _ := f.verify(t, tok); !hit {
		t.Fatal("entry dropped before exp+skew")
	}
	// Past exp+skew: never a hit, and the verifier refuses.
	f.now = exp.Add(31 * time.Second)
	if hit, err := f.verify(t, tok); hit || err == nil {
		t.Fatalf("entry outlived exp: hit=%v err=%v", hit, err)
	}
	if f.cache.Stats().Len != 0 {
		t.Fatal("expired entry kept")
	}
}

func TestTokenCacheTTL(t *testing.T) {
	f := newCacheFixture(t, time.Minute)
	tok := f.token(t, "k1", jwt.MapClaims{"sub": "a", "exp": f.now.Add(time.Hour).Unix()})
	f.verify(t, tok)
	f.now = f.now.Add(59 * time.Second)
	if hit, _ := f.verify(t, tok); !hit {
		t.Fatal("no hit within the TTL")
	}
	f.now = f.now.Add(2 * time.Second)
	if hit, err := f.verify(t, tok); hit || err != nil {
		t.Fatalf("after the TTL: hit=%v err=%v (want a fresh verification)", hit, err)
	}
}

func TestTokenCacheNotBefore(t *testing.T) {
	f := newCacheFixture(t, time.Hour)
	nbf := f.now.Add(20 * time.Second) // within the 30 s skew: accepted
	tok := f.token(t, "k1", jwt.MapClaims{"sub": "a", "exp": f.now.Add(time.Hour).Unix(), "nbf": nbf.Unix()})
	if _, err := f.verify(t, tok); err != nil {
		t.Fatal(err)
	}
	// A clock that steps back is checked on the hit too.
	f.now = nbf.Add(-31 * time.Second)
	if hit, _ := f.verify(t, tok); hit {
		t.Fatal("hit before nbf-skew")
	}
}

func TestTokenCacheKeyChanges(t *testing.T) {
	f := newCacheFixture(t, time.Hour)
	tok := f.token(t, "k1", jwt.MapClaims{"sub": "a", "exp": f.now.Add(time.Hour).Unix()})
	f.verify(t, tok)

	// A refresh that keeps the kid's key (a new object, same value): still a hit.
	same := f.priv.PublicKey
	f.keys.set("k1", &same)
	if hit, _ := f.verify(t, tok); !hit {
		t.Fatal("a rotation keeping the kid's key invalidated the entry")
	}

	// A refresh that changes the key behind the kid: the entry goes, and
	// the token no longer verifies.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	f.keys.set("k1", &other.PublicKey)
	if hit, err := f.verify(t, tok); hit || err == nil {
		t.Fatalf("changed key: hit=%v err=%v", hit, err)
	}

	// A refresh that drops the kid.
	f.keys.set("k1", &f.priv.PublicKey)
	f.verify(t, tok)
	if hit, _ := f.verify(t, tok); !hit {
		t.Fatal("no hit after the key came back")
	}
	f.keys.set("k1", nil)
	if hit, err := f.verify(t, tok); hit || err == nil {
		t.Fatalf("dropped kid: hit=%v err=%v", hit, err)
	}
}

func TestTokenCacheKeysAreDigests(t *testing.T) {
	f := newCacheFixture(t, time.Hour)
	tok := f.token(t, "k1", jwt.MapClaims{"sub": "a", "exp": f.now.Add(time.Hour).Unix()})
	f.verify(t, tok)
	keys := f.cache.Keys()
	if len(keys) != 1 || keys[0] != TokenKey(tok) {
		t.Fatalf("keys %x", keys)
	}
	for _, k := range keys {
		if bytes.Contains([]byte(tok), k[:8]) {
			t.Fatal("a key holds token bytes")
		}
	}
}

func TestTokenCacheSkipsUnboundTokens(t *testing.T) {
	c, err := NewTokenCache(10, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Static and introspected tokens carry no key binding.
	c.Put("static", KindStatic, &AccessToken{ClientID: "x"}, nil)
	if c.Stats().Len != 0 || c.Get("static") != nil {
		t.Fatal("an unbound token was cached")
	}
	var nilCache *TokenCache
	if nilCache.Get("x") != nil || nilCache.Put("x", KindJWT, &AccessToken{}, 1).Extra != 1 {
		t.Fatal("a nil cache must be a no-op")
	}
}

// TestTokenCacheRecency: a hit moves its entry to the front of the LRU at
// most once per promoteEvery, so an entry in use outlives idle ones when
// the cache is full.
func TestTokenCacheRecency(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	c, err := NewTokenCache(2, time.Hour, func() time.Time { return now })
	if err != nil {
		t.Fatal(err)
	}
	bind := &keyBinding{keys: StaticKey{}, notAfter: now.Add(time.Hour)}
	put := func(token string) { c.Put(token, KindJWT, &AccessToken{ClientID: token, binding: bind}, nil) }
	put("a")
	put("b")
	now = now.Add(promoteEvery)
	if c.Get("a") == nil { // promoted: b is now the least recently used
		t.Fatal("a: no hit")
	}
	put("c")
	if c.Get("a") == nil || c.Get("b") != nil || c.Get("c") == nil {
		t.Fatal("the entry in use was evicted, or an idle one kept")
	}
	if c.Stats().Len != 2 {
		t.Fatalf("len %d, want the cap 2", c.Stats().Len)
	}
}

// TestTokenCacheBounded puts 1,000,000 distinct verified tokens through a
// cache of 10,000 and checks the size and the heap stay at the cap.
func TestTokenCacheBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	const n, size = 1_000_000, 10_000
	c, err := NewTokenCache(size, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	bind := &keyBinding{keys: StaticKey{}, notAfter: time.Now().Add(time.Hour)}
	put := func(from, to int) {
		for i := from; i < to; i++ {
			s := strconv.Itoa(i)
			c.Put("token-"+s, KindJWT, &AccessToken{ClientID: "client-" + s, Subject: s, binding: bind}, nil)
		}
	}
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	put(0, size)
	full := heap()
	put(size, n)
	after := heap()
	if got := c.Stats().Len; got != size {
		t.Fatalf("len %d after %d tokens, want %d", got, n, size)
	}
	grew := int64(after) - int64(full)
	t.Logf("heap with %d entries: %.1f MiB; after %d more distinct tokens: %.1f MiB (%+.2f MiB)",
		size, float64(full)/(1<<20), n-size, float64(after)/(1<<20), float64(grew)/(1<<20))
	if grew > 4<<20 {
		t.Fatalf("heap grew by %d bytes past the cap", grew)
	}
}
