package verifiers

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"time"
)

const (
	// MinNonceKey is the shortest accepted nonce key, in bytes.
	MinNonceKey = 32
	// DefaultNonceLifetime is how long a server nonce is accepted when no
	// lifetime is configured.
	DefaultNonceLifetime = 5 * time.Minute
	// nonceSkew tolerates clocks of instances sharing a key being apart.
	nonceSkew = 5 * time.Second
	nonceMAC  = 16 // bytes of HMAC-SHA256 kept
)

// HMACNonces issues stateless DPoP server nonces (RFC 9449 §8): the time of
// issue and an HMAC of it under a shared key, so that every instance holding
// the key accepts any instance's nonce until it expires, and nothing is
// stored.
type HMACNonces struct {
	key      []byte
	lifetime time.Duration
	now      func() time.Time
}

// NewHMACNonces returns a nonce source with key (at least MinNonceKey
// bytes), nonces valid for lifetime (DefaultNonceLifetime when 0), and
// clock now (time.Now when nil).
func NewHMACNonces(key []byte, lifetime time.Duration, now func() time.Time) (*HMACNonces, error) {
	if len(key) < MinNonceKey {
		return nil, errors.New("dpop nonce key: at least 32 bytes are required")
	}
	if lifetime < 0 || lifetime > MaxDPoPWindow {
		return nil, errors.New("dpop nonce lifetime: must be between 0 and 1h")
	}
	if lifetime == 0 {
		lifetime = DefaultNonceLifetime
	}
	if now == nil {
		now = time.Now
	}
	return &HMACNonces{key: append([]byte(nil), key...), lifetime: lifetime, now: now}, nil
}

func (n *HMACNonces) mac(issued []byte) []byte {
	m := hmac.New(sha256.New, n.key)
	m.Write([]byte("dpop-nonce\x00"))
	m.Write(issued)
	return m.Sum(nil)[:nonceMAC]
}

// Nonce implements NonceSource.
func (n *HMACNonces) Nonce() string {
	var issued [8]byte
	binary.BigEndian.PutUint64(issued[:], uint64(n.now().Unix()))
	return base64.RawURLEncoding.EncodeToString(append(issued[:], n.mac(issued[:])...))
}

// Valid implements NonceSource.
func (n *HMACNonces) Valid(nonce string) bool {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(nonce)
	if err != nil || len(raw) != 8+nonceMAC || !hmac.Equal(raw[8:], n.mac(raw[:8])) {
		return false
	}
	issued := time.Unix(int64(binary.BigEndian.Uint64(raw[:8])), 0)
	now := n.now()
	return !issued.After(now.Add(nonceSkew)) && now.Before(issued.Add(n.lifetime))
}

// Renew implements NonceSource: the nonce (already found Valid) was
// issued half its lifetime ago or more. It reads the time of issue only;
// an undecodable nonce is renewed.
func (n *HMACNonces) Renew(nonce string) bool {
	raw, err := base64.RawURLEncoding.Strict().DecodeString(nonce)
	if err != nil || len(raw) != 8+nonceMAC {
		return true
	}
	issued := time.Unix(int64(binary.BigEndian.Uint64(raw[:8])), 0)
	return !n.now().Before(issued.Add(n.lifetime / 2))
}
