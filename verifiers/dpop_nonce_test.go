package verifiers_test

import (
	"context"
	"errors"
	"fmt"
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

// TestHMACNoncesRenew: a nonce is renewed once half its lifetime has
// passed (RFC 9449 §8.2), and a proof checked with it says so.
func TestHMACNoncesRenew(t *testing.T) {
	now := dpopNow
	clock := func() time.Time { return now }
	nonces, _ := verifiers.NewHMACNonces(nonceKey, time.Minute, clock)
	c := newChecker(t, verifiers.DPoPOptions{Nonces: nonces, Now: clock})
	k := newECKey(t)
	nonce := nonces.Nonce()
	start := now
	for i, tc := range []struct {
		name  string
		at    time.Duration
		renew bool
	}{
		{"just issued", 0, false},
		{"just under half its lifetime", 29 * time.Second, false},
		{"at half its lifetime", 30 * time.Second, true},
		{"just before expiry", 59 * time.Second, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now = start.Add(tc.at)
			if got := nonces.Renew(nonce); got != tc.renew {
				t.Fatalf("Renew = %v, want %v", got, tc.renew)
			}
			claims := proofClaims()
			claims["jti"], claims["iat"], claims["nonce"] = fmt.Sprintf("renew-%d", i), now.Unix(), nonce
			proof, err := c.Check(context.Background(), verifiers.DPoPRequest{
				Proofs: []string{k.proof(t, claims, nil)}, Method: "POST", URL: dpopURL, AccessToken: dpopToken, JKT: k.jkt(t)})
			if err != nil || proof.RenewNonce != tc.renew {
				t.Fatalf("Check: %v, RenewNonce %v, want %v", err, proof != nil && proof.RenewNonce, tc.renew)
			}
		})
	}
	// Without server nonces nothing is renewed.
	plain := newChecker(t, verifiers.DPoPOptions{Now: clock})
	proof, err := plain.Check(context.Background(), verifiers.DPoPRequest{
		Proofs: []string{k.proof(t, proofClaims(), nil)}, Method: "POST", URL: dpopURL, AccessToken: dpopToken, JKT: k.jkt(t)})
	if err != nil || proof.RenewNonce {
		t.Fatalf("no nonces: %v %+v", err, proof)
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
