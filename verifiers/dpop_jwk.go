package verifiers

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net/url"
	"strings"
)

// jwkPrivateMembers are the JWK members that carry private key material
// (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2): a proof's jwk with any of
// them is refused (RFC 9449 §4.3 check 7).
var jwkPrivateMembers = []string{"d", "p", "q", "dp", "dq", "qi", "oth", "k"}

// minRSABits is the smallest RSA modulus accepted in a proof's jwk.
const minRSABits = 2048

// algKey says which key an asymmetric JWS alg needs: kty, and crv for EC
// and OKP keys.
var algKey = map[string]struct{ kty, crv string }{
	"ES256": {"EC", "P-256"}, "ES384": {"EC", "P-384"}, "ES512": {"EC", "P-521"},
	"EdDSA": {"OKP", "Ed25519"}, "Ed25519": {"OKP", "Ed25519"},
	"RS256": {"RSA", ""}, "RS384": {"RSA", ""}, "RS512": {"RSA", ""},
	"PS256": {"RSA", ""}, "PS384": {"RSA", ""}, "PS512": {"RSA", ""},
}

// publicJWK is a proof's jwk header, parsed: the key, and its RFC 7638
// thumbprint.
type publicJWK struct {
	key crypto.PublicKey
	jkt string
}

// parseProofJWK parses the jwk header of a DPoP proof for alg: a public key
// of the type alg needs, with no private members.
func parseProofJWK(raw json.RawMessage, alg string) (*publicJWK, error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil || members == nil {
		return nil, fmt.Errorf("jwk is not a JSON object")
	}
	for _, m := range jwkPrivateMembers {
		if _, ok := members[m]; ok {
			return nil, fmt.Errorf("jwk carries the private member %q", m)
		}
	}
	str := func(name string) string {
		var s string
		if v, ok := members[name]; ok && json.Unmarshal(v, &s) == nil {
			return s
		}
		return ""
	}
	want, ok := algKey[alg]
	if !ok {
		return nil, fmt.Errorf("alg %q has no key type", alg)
	}
	if kty := str("kty"); kty != want.kty {
		return nil, fmt.Errorf("jwk kty %q does not fit alg %s", kty, alg)
	}
	if crv := str("crv"); crv != want.crv {
		return nil, fmt.Errorf("jwk crv %q does not fit alg %s", crv, alg)
	}
	switch want.kty {
	case "EC":
		x, y := b64(str("x")), b64(str("y"))
		curve := map[string]elliptic.Curve{"P-256": elliptic.P256(), "P-384": elliptic.P384(), "P-521": elliptic.P521()}[want.crv]
		size := (curve.Params().BitSize + 7) / 8
		if len(x) != size || len(y) != size {
			return nil, fmt.Errorf("jwk x or y is not %d bytes", size)
		}
		key, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, fmt.Errorf("jwk point: %w", err)
		}
		return &publicJWK{key: key, jkt: thumbprint("crv", want.crv, "kty", "EC", "x", str("x"), "y", str("y"))}, nil
	case "OKP":
		x := b64(str("x"))
		if len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("jwk x is not an Ed25519 public key")
		}
		return &publicJWK{key: ed25519.PublicKey(x), jkt: thumbprint("crv", want.crv, "kty", "OKP", "x", str("x"))}, nil
	default: // RSA
		n, e := b64(str("n")), b64(str("e"))
		if len(n) == 0 || n[0] == 0 || len(e) == 0 || len(e) > 4 || e[0] == 0 {
			return nil, fmt.Errorf("jwk n or e is not a minimal unsigned integer")
		}
		key := &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}
		if key.N.BitLen() < minRSABits || key.E < 3 || key.E%2 == 0 {
			return nil, fmt.Errorf("jwk RSA key too small or bad exponent")
		}
		return &publicJWK{key: key, jkt: thumbprint("e", str("e"), "kty", "RSA", "n", str("n"))}, nil
	}
}

// b64 decodes unpadded base64url; nil when it is not.
func b64(s string) []byte {
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil
	}
	return b
}

// thumbprint is the RFC 7638 JWK thumbprint (SHA-256, base64url) of the
// required members given as name, value pairs in lexicographic order.
func thumbprint(pairs ...string) string {
	var b strings.Builder
	b.WriteByte('{')
	for i := 0; i < len(pairs); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		name, _ := json.Marshal(pairs[i])
		value, _ := json.Marshal(pairs[i+1])
		b.Write(name)
		b.WriteByte(':')
		b.Write(value)
	}
	b.WriteByte('}')
	sum := sha256.Sum256([]byte(b.String()))
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// JWKThumbprint returns the RFC 7638 SHA-256 thumbprint of a public JWK
// (EC, OKP or RSA), as cnf.jkt carries it (RFC 9449 §6.1).
func JWKThumbprint(jwk []byte) (string, error) {
	var h struct {
		Kty string `json:"kty"`
		Crv string `json:"crv"`
	}
	if err := json.Unmarshal(jwk, &h); err != nil {
		return "", fmt.Errorf("jwk: %w", err)
	}
	alg := map[string]string{"P-256": "ES256", "P-384": "ES384", "P-521": "ES512", "Ed25519": "EdDSA"}[h.Crv]
	if h.Kty == "RSA" {
		alg = "RS256"
	}
	k, err := parseProofJWK(jwk, alg)
	if err != nil {
		return "", err
	}
	return k.jkt, nil
}

// defaultPorts are the ports an htu drops (RFC 3986 §6.2.3).
var defaultPorts = map[string]string{"http": "80", "https": "443"}

// NormalizeHTU returns the form in which two HTTP URIs are compared for
// DPoP (RFC 9449 §4.3 check 9, RFC 3986 §6.2.2 and §6.2.3): scheme and
// host lower case, the default port removed, percent-encodings of
// unreserved characters decoded and the others upper case, dot segments
// removed, an empty path as "/", and no query or fragment. Only absolute
// http and https URIs are accepted.
func NormalizeHTU(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("htu: %w", err)
	}
	scheme := strings.ToLower(u.Scheme)
	if (scheme != "http" && scheme != "https") || u.Host == "" || u.Opaque != "" || u.User != nil {
		return "", fmt.Errorf("htu is not an absolute http(s) URI")
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" && port != defaultPorts[scheme] {
		host += ":" + port
	}
	p, err := normalizePath(u.EscapedPath())
	if err != nil {
		return "", err
	}
	return scheme + "://" + host + p, nil
}

// normalizePath applies RFC 3986 §6.2.2 to an escaped path.
func normalizePath(p string) (string, error) {
	var b strings.Builder
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
			return "", fmt.Errorf("htu has a bad percent-encoding")
		}
		v := unhex(p[i+1])<<4 | unhex(p[i+2])
		if isUnreserved(v) {
			b.WriteByte(v)
		} else {
			b.WriteString("%" + strings.ToUpper(p[i+1:i+3]))
		}
		i += 2
	}
	s := b.String()
	if s == "" {
		return "/", nil
	}
	return removeDotSegments(s), nil
}

// removeDotSegments is RFC 3986 §5.2.4 on an absolute, escaped path.
func removeDotSegments(p string) string {
	segs := strings.Split(p, "/")[1:]
	out := make([]string, 0, len(segs))
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			out = append(out, s)
			continue
		}
		if last {
			out = append(out, "") // "/a/." and "/a/b/.." keep their trailing slash
		}
	}
	return "/" + strings.Join(out, "/")
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	default:
		return c - 'a' + 10
	}
}

func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}
