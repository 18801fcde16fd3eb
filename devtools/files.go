package devtools

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// ParseSigningKey reads a signing key file as written by keygen: a PEM
// private key (PKCS#8, PKCS#1 RSA or SEC 1 EC), or else an HMAC secret (the
// file's text, one trailing newline removed). alg, when empty, follows the
// key: RS256 for RSA, ES256/384/512 by curve, EdDSA, HS256 for a secret.
// A key that cannot sign alg (another type or curve, a short RSA modulus
// or secret) is refused with a message naming what would fit.
func ParseSigningKey(data []byte, alg string) (*KeyPair, error) {
	kp, err := parseSigningKey(data, alg)
	if err != nil {
		return nil, err
	}
	if err := checkFit(kp); err != nil {
		return nil, err
	}
	return kp, nil
}

// checkFit refuses a key that cannot sign kp.Alg.
func checkFit(kp *KeyPair) error {
	a, err := verifiers.LookupAlgorithm(kp.Alg)
	if err != nil {
		return err
	}
	if secret, ok := kp.Public.([]byte); ok {
		return verifiers.CheckHMACSecret(a, secret)
	}
	if a.CheckKey(kp.Public) == nil {
		return nil
	}
	kind := verifiers.KeyType(kp.Public)
	if rk, ok := kp.Public.(*rsa.PublicKey); ok && rk.N.BitLen() < verifiers.MinRSABits &&
		(a.Family == verifiers.FamilyRSA || a.Family == verifiers.FamilyRSAPSS) {
		return fmt.Errorf("the key is %s: mcp_token refuses RSA keys under %d bits; make one with: caddy mcp-token keygen --alg %s",
			kind, verifiers.MinRSABits, kp.Alg)
	}
	fits := verifiers.AlgorithmsForKey(kp.Public)
	if _, isRSA := kp.Public.(*rsa.PublicKey); isRSA {
		fits = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}
	}
	return fmt.Errorf("the key is %s, which cannot sign %s; use %s, or a key made with: caddy mcp-token keygen --alg %s",
		kind, kp.Alg, strings.Join(fits, ", "), kp.Alg)
}

func parseSigningKey(data []byte, alg string) (*KeyPair, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		secret := bytes.TrimSuffix(bytes.TrimSuffix(data, []byte("\n")), []byte("\r"))
		if len(secret) == 0 {
			return nil, errors.New("the key file is empty")
		}
		if alg == "" {
			alg = "HS256"
		}
		if !strings.HasPrefix(alg, "HS") {
			return nil, fmt.Errorf("the key file is not PEM, so it is read as an HMAC secret, which cannot sign %s", alg)
		}
		return &KeyPair{Alg: alg, Private: secret, Public: secret}, nil
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("unsupported PEM block %q: a private key is needed to sign", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parsing %s: %w", block.Type, err)
	}
	kp := &KeyPair{Alg: alg, Private: key}
	switch k := key.(type) {
	case *rsa.PrivateKey:
		kp.Public = &k.PublicKey
		if alg == "" {
			kp.Alg = "RS256"
		}
	case *ecdsa.PrivateKey:
		kp.Public = &k.PublicKey
		if alg == "" {
			kp.Alg = map[string]string{"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}[k.Curve.Params().Name]
		}
	case ed25519.PrivateKey:
		kp.Public = k.Public()
		if alg == "" {
			kp.Alg = "EdDSA"
		}
	default:
		return nil, fmt.Errorf("unsupported key type %T", key)
	}
	if kp.Alg == "" {
		return nil, errors.New("cannot tell the algorithm for this key; give one")
	}
	return kp, nil
}

// JWKSDocument is the public JWKS of the given keys.
func JWKSDocument(keys ...*KeyPair) ([]byte, error) {
	jwks := make([]any, 0, len(keys))
	for _, k := range keys {
		jwk, err := k.JWK()
		if err != nil {
			return nil, err
		}
		jwks = append(jwks, jwk)
	}
	return json.MarshalIndent(map[string]any{"keys": jwks}, "", "  ")
}

// Decode splits a compact JWS and decodes its header and claims WITHOUT
// verifying anything.
func Decode(token string) (header, claims map[string]any, err error) {
	parts := strings.Split(strings.TrimSpace(token), ".")
	if len(parts) != 3 {
		return nil, nil, fmt.Errorf("not a compact JWS: %d parts, want 3", len(parts))
	}
	for i, into := range []*map[string]any{&header, &claims} {
		raw, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil {
			return nil, nil, fmt.Errorf("part %d is not base64url: %w", i+1, err)
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		if err := dec.Decode(into); err != nil {
			return nil, nil, fmt.Errorf("part %d is not a JSON object: %w", i+1, err)
		}
	}
	return header, claims, nil
}
