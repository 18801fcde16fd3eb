package verifiers_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

var nonceKey = []byte("an example nonce key of 32 bytes")

// TestHMACNonces: a nonce is valid at any instance holding the key until
// it expires, and at no instance with another key.
func TestHMACNonces(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func() time.Time { return now }
	a, err := verifiers.NewHMACNonces(nonceKey, time.Minute, clock)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := verifiers.NewHMACNonces(nonceKey, time.Minute, clock)
	other, _ := verifiers.NewHMACNonces([]byte(strings.Repeat("x", 32)), time.Minute, clock)
	nonce := a.Nonce()
	tests := []struct {
		name  string
		src   *verifiers.HMACNonces
		nonce string
		at    time.Duration
		valid bool
	}{
		{"issuing instance", a, nonce, 0, true},
		{"another instance, same key", b, nonce, 0, true},
		{"another key", other, nonce, 0, false},
		{"just before expiry", b, nonce, time.Minute - time.Second, true},
		{"expired", a, nonce, time.Minute, false},
		{"issued in the future beyond the skew", a, nonce, -10 * time.Second, false},
		{"tampered", a, nonce[:len(nonce)-2] + "AA", 0, false},
		{"garbage", a, "not-a-nonce", 0, false},
		{"empty", a, "", 0, false},
	}
	start := now
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now = start.Add(tc.at)
			if got := tc.src.Valid(tc.nonce); got != tc.valid {
				t.Fatalf("Valid = %v, want %v", got, tc.valid)
			}
		})
	}
	if _, err := verifiers.NewHMACNonces([]byte("short"), 0, nil); err == nil {
		t.Fatal("short key accepted")
	}
}

// TestDPoPNonceRequired: with a nonce source, a proof without a nonce or
// with a stale one is ErrUseNonce; with a fresh one it passes.
func TestDPoPNonceRequired(t *testing.T) {
	now := dpopNow
	nonces, _ := verifiers.NewHMACNonces(nonceKey, time.Minute, func() time.Time { return now })
	c := newChecker(t, verifiers.DPoPOptions{Nonces: nonces, Now: func() time.Time { return now }})
	k := newECKey(t)
	stale := nonces.Nonce()
	now = now.Add(2 * time.Minute)
	for _, tc := range []struct {
		name  string
		nonce any
		jti   string
		want  error
	}{
		{"no nonce", nil, "j1", verifiers.ErrUseNonce},
		{"stale nonce", stale, "j2", verifiers.ErrUseNonce},
		{"fresh nonce", nonces.Nonce(), "j3", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			claims := proofClaims()
			claims["jti"], claims["iat"] = tc.jti, now.Unix()
			if tc.nonce != nil {
				claims["nonce"] = tc.nonce
			}
			_, err := c.Check(context.Background(), verifiers.DPoPRequest{
				Proofs: []string{k.proof(t, claims, nil)}, Method: "POST", URL: dpopURL, AccessToken: dpopToken, JKT: k.jkt(t)})
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if tc.want != nil && verifiers.Classify(err).Code != "use_dpop_nonce" {
				t.Fatalf("code %q", verifiers.Classify(err).Code)
			}
		})
	}
}
