// Package jwks provides JSON Web Key Set key sources for the verifiers
// package: parsing and vetting of JWKs, and key sets that pick a key by kid
// and algorithm. It has no Caddy dependency.
package jwks

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"slices"

	"github.com/MicahParks/jwkset"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// Key is one vetted verification key from a JWKS.
type Key struct {
	// Kid is the key id; may be empty.
	Kid string
	// Alg is the JWK's alg; empty when the JWK names none.
	Alg string
	// Public is *rsa.PublicKey, *ecdsa.PublicKey or ed25519.PublicKey.
	Public any
}

// ErrKeyRefused wraps every reason a JWK is not used for verification.
var ErrKeyRefused = errors.New("jwk refused")

// ParseKey parses one public JWK (JSON) and vets it; see VetKey.
func ParseKey(raw json.RawMessage) (Key, error) { return parseKey(raw, false) }

func parseKey(raw json.RawMessage, symmetric bool) (Key, error) {
	// Private: true keeps "k" of symmetric keys; asymmetric private keys
	// are reduced to their public half by VetKey.
	j, err := jwkset.NewJWKFromRawJSON(raw, jwkset.JWKMarshalOptions{Private: symmetric}, jwkset.JWKValidateOptions{})
	if err != nil {
		return Key{}, fmt.Errorf("%w: %w", ErrKeyRefused, err)
	}
	return VetKey(j, symmetric)
}

// VetKey turns a parsed JWK into a Key, refusing any key that is not a
// public signature-verification key fit for use (RFC 7517, RFC 8725):
//   - use must be absent or "sig"; key_ops, when present, must include "verify";
//   - symmetric ("oct") keys are refused unless symmetric is set (a local,
//     operator-provided secret key set; never a fetched JWKS, which is public:
//     an HMAC key in it is a leak or an attack); then alg must be HS256/384/512
//     and the key at least 32/48/64 bytes;
//   - private keys are used for their public half only;
//   - RSA: at least 2048 bits, e > 1 and odd, not ROCA-vulnerable (CVE-2017-15361);
//   - EC: P-256, P-384 or P-521 with the point on the curve (jwkset checks it); OKP: Ed25519 only;
//   - alg, when present, must be a supported algorithm for the key's type.
func VetKey(j jwkset.JWK, symmetric bool) (Key, error) {
	m := j.Marshal()
	k := Key{Kid: m.KID, Alg: string(m.ALG)}
	refuse := func(format string, args ...any) (Key, error) {
		return Key{}, fmt.Errorf("%w: kid %q: %s", ErrKeyRefused, m.KID, fmt.Sprintf(format, args...))
	}
	if m.USE != "" && m.USE != jwkset.UseSig {
		return refuse("use %q is not sig", m.USE)
	}
	if len(m.KEYOPS) > 0 && !slices.Contains(m.KEYOPS, jwkset.KeyOpsVerify) {
		return refuse("key_ops %v do not include verify", m.KEYOPS)
	}
	switch key := j.Key().(type) {
	case *rsa.PublicKey:
		k.Public = key
	case *rsa.PrivateKey:
		k.Public = &key.PublicKey
	case *ecdsa.PublicKey:
		k.Public = key
	case *ecdsa.PrivateKey:
		k.Public = &key.PublicKey
	case ed25519.PublicKey:
		k.Public = key
	case ed25519.PrivateKey:
		k.Public = key.Public()
	case []byte:
		if !symmetric {
			return refuse("symmetric (oct) keys are never taken from a JWKS")
		}
		alg, err := verifiers.LookupAlgorithm(k.Alg)
		if err != nil || !alg.IsHMAC() {
			return refuse("a symmetric key needs alg HS256, HS384 or HS512 (got %q)", k.Alg)
		}
		if err := verifiers.CheckHMACSecret(alg, key); err != nil {
			return refuse("%v", err)
		}
		k.Public = key
		return k, nil
	default:
		return refuse("unsupported key type %T", key)
	}
	if rk, ok := k.Public.(*rsa.PublicKey); ok {
		switch {
		case rk.N.BitLen() < verifiers.MinRSABits:
			return refuse("RSA key has %d bits, at least %d are required", rk.N.BitLen(), verifiers.MinRSABits)
		case rk.E < 3 || rk.E%2 == 0:
			return refuse("RSA public exponent %d is not allowed", rk.E)
		case IsROCAWeak(rk):
			return refuse("RSA key is ROCA-vulnerable (CVE-2017-15361)")
		}
	}
	if k.Alg != "" {
		alg, err := verifiers.LookupAlgorithm(k.Alg)
		if err != nil {
			return refuse("%v", err)
		}
		if err := alg.CheckKey(k.Public); err != nil {
			return refuse("alg %s does not fit a %s key", k.Alg, verifiers.KeyType(k.Public))
		}
	}
	return k, nil
}

// Set is a fixed set of vetted keys; it implements verifiers.KeySource.
type Set struct {
	keys      []Key
	symmetric bool
}

// NewSet builds a set. Keys sharing a kid are ambiguous, so every key with
// a duplicated non-empty kid is dropped.
func NewSet(keys []Key) *Set {
	s := &Set{}
	count := map[string]int{}
	for _, k := range keys {
		if k.Kid != "" {
			count[k.Kid]++
		}
	}
	for _, k := range keys {
		if k.Kid == "" || count[k.Kid] == 1 {
			s.keys = append(s.keys, k)
			_, isSecret := k.Public.([]byte)
			s.symmetric = s.symmetric || isSecret
		}
	}
	return s
}

// AllowsHMAC reports whether the set holds symmetric keys, which only a
// local secret key set can (see ParseSet); verifiers.NewJWT refuses HMAC
// algorithms with any other non-static key source.
func (s *Set) AllowsHMAC() bool { return s.symmetric }

// ParseSet parses and vets a JWKS document. It returns the usable keys and
// the reasons other entries were dropped (an entry with an unsupported or
// bad key is skipped, not fatal). A set that mixes symmetric and
// asymmetric keys is ambiguous and refused as a whole, as is a document
// that is not a JWKS. symmetric allows HMAC keys: set it only for a
// local secret key set, never for a fetched JWKS.
func ParseSet(doc []byte, symmetric bool) (*Set, []error, error) {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(doc, &raw); err != nil {
		return nil, nil, fmt.Errorf("not a JWKS document: %w", err)
	}
	if raw.Keys == nil {
		return nil, nil, errors.New(`not a JWKS document: no "keys" member`)
	}
	var keys []Key
	var dropped []error
	hasOct := false
	for i, r := range raw.Keys {
		var probe struct {
			Kty string `json:"kty"`
			Kid string `json:"kid"`
		}
		_ = json.Unmarshal(r, &probe)
		if probe.Kty == "oct" {
			hasOct = true
		}
		k, err := parseKey(r, symmetric)
		if err != nil {
			dropped = append(dropped, fmt.Errorf("key %d: %w", i, err))
			continue
		}
		keys = append(keys, k)
	}
	if hasOct && len(raw.Keys) > 0 && slices.ContainsFunc(keys, func(k Key) bool { _, s := k.Public.([]byte); return !s }) {
		return nil, dropped, errors.New("JWKS mixes symmetric and asymmetric keys: refused as a whole")
	}
	set := NewSet(keys)
	if n := len(keys) - len(set.keys); n > 0 {
		dropped = append(dropped, fmt.Errorf("%d keys dropped for sharing a kid with another key", n))
	}
	return set, dropped, nil
}

// keepUnchanged makes s, a newly fetched set not yet in use, share the
// key objects of old, the set it replaces, for every key that did not
// change (same kid, alg and key value). The token cache checks on each hit
// that the key set still gives the key that verified the token, by
// identity first (verifiers.SameKey only when the objects differ), so a
// refresh that changes nothing keeps its hits as cheap as before; a key
// changed or dropped still fails that check at once.
func (s *Set) keepUnchanged(old *Set) {
	if old == nil {
		return
	}
	for i := range s.keys {
		k := &s.keys[i]
		for _, o := range old.keys {
			if o.Kid == k.Kid && o.Alg == k.Alg && verifiers.SameKey(o.Public, k.Public) {
				k.Public = o.Public
				break
			}
		}
	}
}

// Len is the number of usable keys.
func (s *Set) Len() int { return len(s.keys) }

// Key implements verifiers.KeySource. With a kid, the key with that kid is
// used; its JWK alg, when present, must equal the token's. Without a kid,
// the token is accepted only when exactly one key fits the algorithm.
func (s *Set) Key(_ context.Context, alg *verifiers.Algorithm, kid string) (any, error) {
	found := s.find(alg, kid)
	if len(found) != 1 {
		if kid == "" && len(found) > 1 {
			return nil, fmt.Errorf("%w: token has no kid and %d keys fit %s", verifiers.ErrUnknownKey, len(found), alg.Name)
		}
		return nil, fmt.Errorf("%w: no key with kid %q for %s", verifiers.ErrUnknownKey, kid, alg.Name)
	}
	return found[0].Public, nil
}

// CurrentKey returns the key Key would return for (alg, kid); false when
// Key would fail.
func (s *Set) CurrentKey(alg *verifiers.Algorithm, kid string) (any, bool) {
	// The token cache asks this on every hit: the rules of find, without
	// building a slice.
	var key any
	n := 0
	for _, k := range s.keys {
		if (kid != "" && k.Kid != kid) || (k.Alg != "" && k.Alg != alg.Name) || alg.CheckKey(k.Public) != nil {
			continue
		}
		if n++; n > 1 {
			return nil, false
		}
		key = k.Public
	}
	return key, n == 1
}

// find returns the keys that fit (alg, kid) by the rules of Key.
func (s *Set) find(alg *verifiers.Algorithm, kid string) []Key {
	var found []Key
	for _, k := range s.keys {
		if kid != "" && k.Kid != kid {
			continue
		}
		if k.Alg != "" && k.Alg != alg.Name {
			continue
		}
		if alg.CheckKey(k.Public) != nil {
			continue
		}
		found = append(found, k)
	}
	return found
}

// Kids lists the set's non-empty key ids, in document order.
func (s *Set) Kids() []string {
	kids := make([]string, 0, len(s.keys))
	for _, k := range s.keys {
		if k.Kid != "" {
			kids = append(kids, k.Kid)
		}
	}
	return kids
}

// rocaPrimes are the small primes of the ROCA fingerprint test: a modulus
// generated by the vulnerable library is, modulo each of them, a power of
// 65537 (Nemec et al., CCS 2017).
var rocaPrimes = []int64{3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53, 59, 61, 67, 71,
	73, 79, 83, 89, 97, 101, 103, 107, 109, 113, 127, 131, 137, 139, 149, 151, 157, 163, 167}

// rocaPowers[i] holds the powers of 65537 modulo rocaPrimes[i].
var rocaPowers = func() []map[int64]bool {
	out := make([]map[int64]bool, len(rocaPrimes))
	for i, p := range rocaPrimes {
		set := map[int64]bool{}
		for x := int64(1); !set[x]; x = x * (65537 % p) % p {
			set[x] = true
		}
		out[i] = set
	}
	return out
}()

// IsROCAWeak reports whether an RSA modulus has the ROCA fingerprint.
func IsROCAWeak(k *rsa.PublicKey) bool {
	var r big.Int
	for i, p := range rocaPrimes {
		if !rocaPowers[i][r.Mod(k.N, big.NewInt(p)).Int64()] {
			return false
		}
	}
	return true
}

// Algorithms lists, sorted, the algorithms of the set's keys: each key's
// JWK alg, or for a key without one the usual algorithm of its type (see
// verifiers.AlgorithmsForKey). It is the default allow-list of a local set.
func (s *Set) Algorithms() []string {
	var out []string
	for _, k := range s.keys {
		algs := []string{k.Alg}
		if k.Alg == "" {
			algs = verifiers.AlgorithmsForKey(k.Public)
		}
		for _, a := range algs {
			if !slices.Contains(out, a) {
				out = append(out, a)
			}
		}
	}
	slices.Sort(out)
	return out
}

// Fits reports whether some key of the set can verify a token signed with
// alg.
func (s *Set) Fits(alg *verifiers.Algorithm) bool {
	for _, k := range s.keys {
		if (k.Alg == "" || k.Alg == alg.Name) && alg.CheckKey(k.Public) == nil {
			return true
		}
	}
	return false
}
