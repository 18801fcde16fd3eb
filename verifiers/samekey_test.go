package verifiers

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"math/big"
	"testing"
)

// TestSameKey: SameKey compares verification keys by value, whatever the
// object; sameObject, the token cache's fast check, only by identity.
func TestSameKey(t *testing.T) {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rk2, _ := rsa.GenerateKey(rand.Reader, 2048)
	ek, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ek2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	edPub2, _, _ := ed25519.GenerateKey(rand.Reader)
	secret := []byte("0123456789abcdef0123456789abcdef")

	rsaCopy := &rsa.PublicKey{N: new(big.Int).Set(rk.N), E: rk.E}
	ecCopy := &ecdsa.PublicKey{Curve: ek.Curve, X: new(big.Int).Set(ek.X), Y: new(big.Int).Set(ek.Y)}
	edCopy := append(ed25519.PublicKey(nil), edPub...)
	secretCopy := append([]byte(nil), secret...)

	tests := []struct {
		name       string
		a, b       any
		same, self bool // SameKey, sameObject
	}{
		{"rsa same object", &rk.PublicKey, &rk.PublicKey, true, true},
		{"rsa equal copy", &rk.PublicKey, rsaCopy, true, false},
		{"rsa other key", &rk.PublicKey, &rk2.PublicKey, false, false},
		{"ecdsa same object", &ek.PublicKey, &ek.PublicKey, true, true},
		{"ecdsa equal copy", &ek.PublicKey, ecCopy, true, false},
		{"ecdsa other key", &ek.PublicKey, &ek2.PublicKey, false, false},
		{"ed25519 same bytes", edPub, edPub, true, true},
		{"ed25519 equal copy", edPub, edCopy, true, false},
		{"ed25519 other key", edPub, edPub2, false, false},
		{"hmac same bytes", secret, secret, true, true},
		{"hmac equal copy", secret, secretCopy, true, false},
		{"hmac vs ed25519 of other bytes", secret, edPub, false, false},
		{"rsa vs ecdsa", &rk.PublicKey, &ek.PublicKey, false, false},
		{"nil", nil, &rk.PublicKey, false, false},
		{"empty secrets", []byte{}, []byte{}, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := SameKey(tt.a, tt.b); got != tt.same {
				t.Errorf("SameKey = %v, want %v", got, tt.same)
			}
			if got := sameObject(tt.a, tt.b); got != tt.self {
				t.Errorf("sameObject = %v, want %v", got, tt.self)
			}
		})
	}
	// The identity check is what a hit pays: nothing allocated.
	if n := testing.AllocsPerRun(100, func() { sameObject(&rk.PublicKey, &rk.PublicKey) }); n != 0 {
		t.Fatalf("sameObject allocates %v times", n)
	}
}
