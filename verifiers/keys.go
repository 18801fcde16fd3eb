package verifiers

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// Family groups algorithms that use the same kind of key.
type Family int

// Key families.
const (
	FamilyRSA Family = iota + 1
	FamilyRSAPSS
	FamilyECDSA
	FamilyEdDSA
	FamilyHMAC
)

// MinRSABits is the smallest RSA modulus accepted for verification.
const MinRSABits = 2048

// Algorithm is one JWS algorithm this package verifies.
type Algorithm struct {
	// Name is the JWS alg value, such as "RS256".
	Name   string
	Family Family
	// Curve is the curve an ECDSA key must be on.
	Curve elliptic.Curve
	// MinSecret is the minimum HMAC secret length in bytes.
	MinSecret int
	method    jwt.SigningMethod
}

// strictPSS verifies RSASSA-PSS with the salt length equal to the hash
// length, as RFC 7518 §3.5 requires (golang-jwt accepts any salt length).
func strictPSS(m *jwt.SigningMethodRSAPSS) jwt.SigningMethod {
	return &jwt.SigningMethodRSAPSS{
		SigningMethodRSA: m.SigningMethodRSA,
		Options:          &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash},
		VerifyOptions:    &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash},
	}
}

var algorithms = map[string]*Algorithm{
	"RS256": {Name: "RS256", Family: FamilyRSA, method: jwt.SigningMethodRS256},
	"RS384": {Name: "RS384", Family: FamilyRSA, method: jwt.SigningMethodRS384},
	"RS512": {Name: "RS512", Family: FamilyRSA, method: jwt.SigningMethodRS512},
	"PS256": {Name: "PS256", Family: FamilyRSAPSS, method: strictPSS(jwt.SigningMethodPS256)},
	"PS384": {Name: "PS384", Family: FamilyRSAPSS, method: strictPSS(jwt.SigningMethodPS384)},
	"PS512": {Name: "PS512", Family: FamilyRSAPSS, method: strictPSS(jwt.SigningMethodPS512)},
	"ES256": {Name: "ES256", Family: FamilyECDSA, Curve: elliptic.P256(), method: jwt.SigningMethodES256},
	"ES384": {Name: "ES384", Family: FamilyECDSA, Curve: elliptic.P384(), method: jwt.SigningMethodES384},
	"ES512": {Name: "ES512", Family: FamilyECDSA, Curve: elliptic.P521(), method: jwt.SigningMethodES512},
	"EdDSA": {Name: "EdDSA", Family: FamilyEdDSA, method: jwt.SigningMethodEdDSA},
	"HS256": {Name: "HS256", Family: FamilyHMAC, MinSecret: 32, method: jwt.SigningMethodHS256},
	"HS384": {Name: "HS384", Family: FamilyHMAC, MinSecret: 48, method: jwt.SigningMethodHS384},
	"HS512": {Name: "HS512", Family: FamilyHMAC, MinSecret: 64, method: jwt.SigningMethodHS512},
}

// AlgorithmNames lists the supported algorithms, for messages.
const AlgorithmNames = "RS256 RS384 RS512 PS256 PS384 PS512 ES256 ES384 ES512 EdDSA HS256 HS384 HS512"

// LookupAlgorithm returns the named algorithm. Names are case-sensitive, as
// in RFC 7518; "none" in any case is always refused.
func LookupAlgorithm(name string) (*Algorithm, error) {
	if strings.EqualFold(name, "none") {
		return nil, errors.New(`algorithm "none" is never accepted`)
	}
	a, ok := algorithms[name]
	if !ok {
		return nil, fmt.Errorf("unsupported algorithm %q (supported: %s)", name, AlgorithmNames)
	}
	return a, nil
}

// IsHMAC reports whether the algorithm uses a shared secret.
func (a *Algorithm) IsHMAC() bool { return a.Family == FamilyHMAC }

// CheckKey reports whether key is of the type (and curve) the algorithm
// needs, so that a key can never be used with another family's algorithm.
func (a *Algorithm) CheckKey(key any) error {
	ok := false
	switch a.Family {
	case FamilyRSA, FamilyRSAPSS:
		k, isRSA := key.(*rsa.PublicKey)
		ok = isRSA && k.N.BitLen() >= MinRSABits
	case FamilyECDSA:
		k, isEC := key.(*ecdsa.PublicKey)
		ok = isEC && k.Curve == a.Curve
	case FamilyEdDSA:
		k, isEd := key.(ed25519.PublicKey)
		ok = isEd && len(k) == ed25519.PublicKeySize
	case FamilyHMAC:
		k, isBytes := key.([]byte)
		ok = isBytes && len(k) >= a.MinSecret
	}
	if !ok {
		return fmt.Errorf("%w: key of type %s cannot verify %s", ErrUnknownKey, KeyType(key), a.Name)
	}
	return nil
}

// KeyType names a key's type for messages, without revealing key material.
func KeyType(key any) string {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return fmt.Sprintf("RSA-%d", k.N.BitLen())
	case *ecdsa.PublicKey:
		return "EC " + k.Curve.Params().Name
	case ed25519.PublicKey:
		return "Ed25519"
	case []byte:
		return "HMAC secret"
	case nil:
		return "none"
	}
	return fmt.Sprintf("%T", key)
}

// CheckHMACSecret refuses a secret shorter than the algorithm's minimum
// (32, 48 and 64 bytes for HS256, HS384 and HS512).
func CheckHMACSecret(alg *Algorithm, secret []byte) error {
	if len(secret) < alg.MinSecret {
		return fmt.Errorf("HMAC key for %s must be at least %d bytes (got %d); generate one with: openssl rand -base64 %d",
			alg.Name, alg.MinSecret, len(secret), alg.MinSecret)
	}
	return nil
}

// LoadPublicKey reads a public key given inline as PEM or as the path of a
// PEM file.
func LoadPublicKey(pemOrPath string) (crypto.PublicKey, error) {
	data := []byte(pemOrPath)
	if !strings.Contains(pemOrPath, "-----BEGIN") {
		b, err := os.ReadFile(pemOrPath)
		if err != nil {
			reason := err
			var pe *fs.PathError
			if errors.As(err, &pe) {
				reason = pe.Err
			}
			if !looksLikePath(pemOrPath) {
				// Never echo the value: it may be a secret put in the wrong place.
				return nil, fmt.Errorf("public key is neither PEM nor a readable file (value not shown, in case it is a secret): %v", reason)
			}
			return nil, fmt.Errorf("public key file %q: %v", pemOrPath, reason)
		}
		data = b
	}
	return ParsePublicKey(data)
}

// looksLikePath reports whether s is shaped like a file path rather than
// a stray secret.
func looksLikePath(s string) bool {
	if strings.ContainsAny(s, `/\`) {
		return true
	}
	for _, ext := range []string{".pem", ".crt", ".cer", ".pub", ".key"} {
		if strings.HasSuffix(strings.ToLower(s), ext) {
			return true
		}
	}
	return false
}

// ParsePublicKey parses the first PEM block of data: a PKIX "PUBLIC KEY",
// a PKCS#1 "RSA PUBLIC KEY" or an X.509 "CERTIFICATE". RSA keys must have
// at least 2048 bits; ECDSA keys must be on P-256, P-384 or P-521. A
// private key is refused, with a message saying to configure the public one.
func ParsePublicKey(data []byte) (crypto.PublicKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("public key: no PEM block found (expected -----BEGIN PUBLIC KEY-----)")
	}
	var key any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		key, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		key, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var cert *x509.Certificate
		if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
			key = cert.PublicKey
		}
	default:
		if strings.Contains(block.Type, "PRIVATE KEY") {
			return nil, fmt.Errorf("public key: got a %s; configure the public key only (the private key must stay with the token issuer)", block.Type)
		}
		return nil, fmt.Errorf("public key: unsupported PEM block %q (expected PUBLIC KEY, RSA PUBLIC KEY or CERTIFICATE)", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("public key: parsing %s: %w", block.Type, err)
	}
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < MinRSABits {
			return nil, fmt.Errorf("public key: RSA key has %d bits, at least %d are required", k.N.BitLen(), MinRSABits)
		}
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
		default:
			return nil, fmt.Errorf("public key: unsupported curve %s", k.Curve.Params().Name)
		}
	case ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("public key: unsupported key type %T (expected RSA, ECDSA or Ed25519)", key)
	}
	return key, nil
}

// AlgorithmsForKey returns the default algorithms for a public key: the
// ones its type can verify.
func AlgorithmsForKey(key crypto.PublicKey) []string {
	switch k := key.(type) {
	case *rsa.PublicKey:
		return []string{"RS256"}
	case *ecdsa.PublicKey:
		for _, a := range algorithms {
			if a.Curve == k.Curve {
				return []string{a.Name}
			}
		}
	case ed25519.PublicKey:
		return []string{"EdDSA"}
	}
	return nil
}
