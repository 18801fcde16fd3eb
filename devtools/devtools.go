// Package devtools generates key pairs and mints tokens for development and
// tests. Nothing here belongs on a production request path.
package devtools

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// KeyPair is a signing key and its public half, for one algorithm.
type KeyPair struct {
	// Alg is the JWS algorithm, such as RS256, ES256, EdDSA or HS256.
	Alg string
	// Kid is the key id put in minted tokens' headers and in the JWKS.
	Kid string
	// Private is a crypto.Signer, or the secret ([]byte) for HMAC.
	Private any
	// Public is the crypto.PublicKey, or the secret ([]byte) for HMAC.
	Public any
}

// Algorithms are the algorithms GenerateKey makes keys for: the ones
// mcp_token verifies.
var Algorithms = strings.Fields(verifiers.AlgorithmNames)

// RSABits are the RSA modulus sizes GenerateKey makes: at least
// verifiers.MinRSABits, which is what mcp_token accepts.
var RSABits = []int{2048, 3072, 4096}

// GenerateKey makes a new key pair for alg, one of Algorithms. bits is the
// RSA modulus size, one of RSABits (0 means 2048), and must be 0 for other
// algorithms; HMAC secrets get the algorithm's minimum length. An empty
// kid is derived from the public key.
func GenerateKey(alg string, bits int, kid string) (*KeyPair, error) {
	a, err := verifiers.LookupAlgorithm(alg)
	if err != nil {
		return nil, err
	}
	rsaFamily := a.Family == verifiers.FamilyRSA || a.Family == verifiers.FamilyRSAPSS
	switch {
	case rsaFamily && bits == 0:
		bits = 2048
	case rsaFamily && !slices.Contains(RSABits, bits):
		return nil, fmt.Errorf("RSA key size %d bits is not offered: use %s (mcp_token refuses RSA keys under %d bits)",
			bits, joinInts(RSABits), verifiers.MinRSABits)
	case !rsaFamily && bits != 0:
		return nil, fmt.Errorf("a key size applies to RSA algorithms only; %s keys have a fixed size", alg)
	}
	kp := &KeyPair{Alg: alg, Kid: kid}
	switch a.Family {
	case verifiers.FamilyRSA, verifiers.FamilyRSAPSS:
		var k *rsa.PrivateKey
		if k, err = rsa.GenerateKey(rand.Reader, bits); err == nil {
			kp.Private, kp.Public = k, &k.PublicKey
		}
	case verifiers.FamilyECDSA:
		var k *ecdsa.PrivateKey
		if k, err = ecdsa.GenerateKey(a.Curve, rand.Reader); err == nil {
			kp.Private, kp.Public = k, &k.PublicKey
		}
	case verifiers.FamilyEdDSA:
		var pub ed25519.PublicKey
		var priv ed25519.PrivateKey
		if pub, priv, err = ed25519.GenerateKey(rand.Reader); err == nil {
			kp.Private, kp.Public = priv, pub
		}
	case verifiers.FamilyHMAC:
		// A printable secret (base64url of MinSecret random bytes), so the
		// same text works in hmac_secret and in a key file.
		raw := make([]byte, a.MinSecret)
		if _, err = rand.Read(raw); err == nil {
			secret := []byte(base64.RawURLEncoding.EncodeToString(raw))
			kp.Private, kp.Public = secret, secret
		}
	default:
		return nil, fmt.Errorf("unsupported algorithm %q (supported: %s)", alg, verifiers.AlgorithmNames)
	}
	if err != nil {
		return nil, fmt.Errorf("generating %s key: %w", alg, err)
	}
	if kp.Kid == "" {
		kp.Kid = kp.thumbprint()
	}
	return kp, nil
}

func joinInts(ns []int) string {
	s := make([]string, len(ns))
	for i, n := range ns {
		s[i] = strconv.Itoa(n)
	}
	return strings.Join(s, ", ")
}

// MustGenerateKey is GenerateKey for tests and examples; it panics on error.
func MustGenerateKey(alg string) *KeyPair {
	kp, err := GenerateKey(alg, 0, "")
	if err != nil {
		panic(err)
	}
	return kp
}

// Thumbprint is the kid GenerateKey derives from a public key.
func Thumbprint(kp *KeyPair) string { return kp.thumbprint() }

func (kp *KeyPair) thumbprint() string {
	var der []byte
	if s, ok := kp.Public.([]byte); ok {
		der = s
	} else {
		der, _ = x509.MarshalPKIXPublicKey(kp.Public)
	}
	sum := sha256.Sum256(der)
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

// PublicPEM is the PKIX "PUBLIC KEY" PEM of the public key. For HMAC it
// returns an error: a secret has no public half.
func (kp *KeyPair) PublicPEM() (string, error) {
	if _, ok := kp.Public.([]byte); ok {
		return "", errors.New("an HMAC secret has no public key")
	}
	der, err := x509.MarshalPKIXPublicKey(kp.Public)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})), nil
}

// PrivatePEM is the PKCS#8 "PRIVATE KEY" PEM of the signing key (for HMAC,
// the secret itself on one line).
func (kp *KeyPair) PrivatePEM() (string, error) {
	if s, ok := kp.Private.([]byte); ok {
		return string(s) + "\n", nil
	}
	der, err := x509.MarshalPKCS8PrivateKey(kp.Private)
	if err != nil {
		return "", err
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), nil
}

// TokenOptions describe a token to mint. Defaults follow FastMCP's
// RSAKeyPair.create_token.
type TokenOptions struct {
	// Subject is sub. Default: "fastmcp-user".
	Subject string
	// Issuer is iss. Default: "https://fastmcp.example.com".
	Issuer string
	// Audience is aud (a string for one, a list for several); none when empty.
	Audience []string
	// Scopes go into scope, space-separated; none when empty.
	Scopes []string
	// ExpiresIn sets exp from now. Default: 1h. Negative values mint an
	// already expired token (for tests).
	ExpiresIn time.Duration
	// NoExpiry leaves exp out (for tests of the exp requirement).
	NoExpiry bool
	// Claims are added last and override the above.
	Claims map[string]any
	// Header fields are added to the JOSE header (kid, typ, crit, ...).
	Header map[string]any
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// Token mints a signed token with kp.
func (kp *KeyPair) Token(o TokenOptions) (string, error) {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	t0 := now()
	claims := jwt.MapClaims{
		"sub": orDefault(o.Subject, "fastmcp-user"),
		"iss": orDefault(o.Issuer, "https://fastmcp.example.com"),
		"iat": t0.Unix(),
	}
	switch len(o.Audience) {
	case 0:
	case 1:
		claims["aud"] = o.Audience[0]
	default:
		claims["aud"] = o.Audience
	}
	if len(o.Scopes) > 0 {
		claims["scope"] = strings.Join(o.Scopes, " ")
	}
	if !o.NoExpiry {
		ttl := o.ExpiresIn
		if ttl == 0 {
			ttl = time.Hour
		}
		claims["exp"] = t0.Add(ttl).Unix()
	}
	maps.Copy(claims, o.Claims)
	method := jwt.GetSigningMethod(kp.Alg)
	if method == nil {
		return "", fmt.Errorf("unsupported algorithm %q", kp.Alg)
	}
	tok := jwt.NewWithClaims(method, claims)
	if kp.Kid != "" {
		tok.Header["kid"] = kp.Kid
	}
	maps.Copy(tok.Header, o.Header)
	return tok.SignedString(kp.Private)
}

// MustToken is Token for tests; it panics on error.
func (kp *KeyPair) MustToken(o TokenOptions) string {
	s, err := kp.Token(o)
	if err != nil {
		panic(err)
	}
	return s
}

// JWK is the public JWK of the key (RFC 7517), with kid, alg and use=sig.
// HMAC keys are refused: a JWKS is public.
func (kp *KeyPair) JWK() (map[string]any, error) {
	jwk := map[string]any{"kid": kp.Kid, "alg": kp.Alg, "use": "sig"}
	b64 := base64.RawURLEncoding.EncodeToString
	switch k := kp.Public.(type) {
	case *rsa.PublicKey:
		jwk["kty"] = "RSA"
		jwk["n"] = b64(k.N.Bytes())
		jwk["e"] = b64(bigEndian(k.E))
	case *ecdsa.PublicKey:
		size := (k.Curve.Params().BitSize + 7) / 8
		ecdh, err := k.ECDH()
		if err != nil {
			return nil, err
		}
		raw := ecdh.Bytes() // 0x04 || X || Y
		jwk["kty"] = "EC"
		jwk["crv"] = k.Curve.Params().Name
		jwk["x"] = b64(raw[1 : 1+size])
		jwk["y"] = b64(raw[1+size:])
	case ed25519.PublicKey:
		jwk["kty"] = "OKP"
		jwk["crv"] = "Ed25519"
		jwk["x"] = b64(k)
	default:
		return nil, errors.New("an HMAC secret must not be published in a JWKS")
	}
	return jwk, nil
}

func bigEndian(e int) []byte {
	var out []byte
	for ; e > 0; e >>= 8 {
		out = append([]byte{byte(e)}, out...)
	}
	return out
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
