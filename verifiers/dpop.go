package verifiers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DPoP (RFC 9449) proof checks for a resource server. The checks follow
// §4.3 in order, then §7.1 (ath, and the key bound to the token).

// DefaultDPoPAlgorithms are the proof algorithms accepted when none are
// configured: asymmetric only (RFC 9449 §4.3 check 5).
var DefaultDPoPAlgorithms = []string{"ES256", "ES384", "ES512", "EdDSA", "PS256", "PS384", "PS512", "RS256"}

const (
	// DefaultDPoPWindow is how far a proof's iat may be from now, either
	// way, when no window is configured (RFC 9449 §11.1).
	DefaultDPoPWindow = 5 * time.Minute
	// MaxDPoPWindow bounds a configured window: a wider one keeps proofs
	// replayable elsewhere for longer and the replay cache larger.
	MaxDPoPWindow = time.Hour
	// MaxProofSize bounds the DPoP header a proof is read from.
	MaxProofSize = 8 << 10
	// maxJTI bounds a proof's jti (96 bits of randomness need 16 bytes).
	maxJTI = 256
)

// DPoPOptions configures a DPoPChecker. The zero value is usable: default
// algorithms and window, a memory replay cache, time.Now.
type DPoPOptions struct {
	// Algorithms are the accepted proof algorithms, asymmetric only.
	// Default: DefaultDPoPAlgorithms.
	Algorithms []string
	// Window is how far a proof's iat may be from now, either way.
	// Default: DefaultDPoPWindow; at most MaxDPoPWindow.
	Window time.Duration
	// Replay remembers proof identifiers. Default: a MemoryReplayCache.
	Replay ReplayCache
	// Nonces issues and checks server nonces (RFC 9449 §8); nil: none
	// required.
	Nonces NonceSource
	// Now is the clock. Default: time.Now.
	Now func() time.Time
}

// NonceSource issues the DPoP-Nonce values a server hands out and checks
// the ones proofs carry (RFC 9449 §8).
type NonceSource interface {
	// Nonce returns a fresh nonce to send in a DPoP-Nonce header.
	Nonce() string
	// Valid reports whether a proof's nonce is one this source (or a
	// peer sharing its key) issued and that has not expired.
	Valid(nonce string) bool
	// Renew reports whether a valid nonce is past half its lifetime, so
	// that the server sends a fresh one with its answer (RFC 9449 §8.2).
	Renew(nonce string) bool
}

// DPoPChecker checks DPoP proofs. It is safe for concurrent use.
type DPoPChecker struct {
	algs   []string
	window time.Duration
	replay ReplayCache
	nonces NonceSource
	now    func() time.Time
}

// NewDPoPChecker returns a checker for opts, or an error naming a bad option.
func NewDPoPChecker(opts DPoPOptions) (*DPoPChecker, error) {
	c := &DPoPChecker{algs: opts.Algorithms, window: opts.Window, replay: opts.Replay, nonces: opts.Nonces, now: opts.Now}
	if len(c.algs) == 0 {
		c.algs = DefaultDPoPAlgorithms
	}
	for _, alg := range c.algs {
		if _, ok := algKey[alg]; !ok {
			return nil, fmt.Errorf("dpop algorithm %q: not an asymmetric JWS algorithm this gateway verifies", alg)
		}
	}
	switch {
	case c.window == 0:
		c.window = DefaultDPoPWindow
	case c.window < 0 || c.window > MaxDPoPWindow:
		return nil, fmt.Errorf("dpop window %s: must be between 0 and %s", c.window, MaxDPoPWindow)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.replay == nil {
		c.replay = NewMemoryReplayCache(0, c.now)
	}
	return c, nil
}

// Algorithms returns the accepted proof algorithms, for the DPoP challenge
// and dpop_signing_alg_values_supported.
func (c *DPoPChecker) Algorithms() []string { return slices.Clone(c.algs) }

// Nonces returns the nonce source, nil when none is configured.
func (c *DPoPChecker) Nonces() NonceSource { return c.nonces }

// DPoPRequest is what one request offers for a proof check.
type DPoPRequest struct {
	// Proofs are the values of the request's DPoP headers.
	Proofs []string
	// Method is the request method.
	Method string
	// URL is the request URI as the client used it: scheme, host and
	// path (query and fragment are ignored).
	URL string
	// AccessToken is the access token the proof is presented with.
	AccessToken string
	// JKT is the token's cnf.jkt: the thumbprint the proof key must have.
	JKT string
}

// DPoPProof is a proof that passed every check.
type DPoPProof struct {
	// JKT is the RFC 7638 thumbprint of the proof's key.
	JKT string
	// ID is the proof's jti.
	ID string
	// IssuedAt is the proof's iat.
	IssuedAt time.Time
	// RenewNonce: the proof's server nonce is past half its lifetime; the
	// answer should carry a fresh DPoP-Nonce.
	RenewNonce bool
}

// proofHeader is a proof's JOSE header.
type proofHeader struct {
	Typ  string          `json:"typ"`
	Alg  string          `json:"alg"`
	JWK  json.RawMessage `json:"jwk"`
	Crit json.RawMessage `json:"crit"`
}

// proofClaims is a proof's payload; iat as raw JSON (a number is required).
type proofClaims struct {
	JTI   *string         `json:"jti"`
	HTM   *string         `json:"htm"`
	HTU   *string         `json:"htu"`
	IAT   json.RawMessage `json:"iat"`
	ATH   *string         `json:"ath"`
	Nonce *string         `json:"nonce"`
}

// Check verifies the proof of one request (RFC 9449 §4.3 and §7.1). Every
// error wraps ErrBadProof, ErrUseNonce (a nonce is required and missing or
// stale) or ErrUnavailable (the replay cache failed).
func (c *DPoPChecker) Check(ctx context.Context, req DPoPRequest) (*DPoPProof, error) {
	// 1. exactly one DPoP header, one JWT.
	if len(req.Proofs) != 1 {
		return nil, fmt.Errorf("%w: %d DPoP headers", ErrBadProof, len(req.Proofs))
	}
	proof := req.Proofs[0]
	if len(proof) > MaxProofSize || strings.Count(proof, ".") != 2 || strings.ContainsAny(proof, ", ") {
		return nil, fmt.Errorf("%w: not one compact JWS", ErrBadProof)
	}
	h64, rest, _ := strings.Cut(proof, ".")
	c64, s64, _ := strings.Cut(rest, ".")
	var hdr proofHeader
	var claims proofClaims
	if err := decodeSegment(h64, &hdr); err != nil {
		return nil, fmt.Errorf("%w: header: %w", ErrBadProof, err)
	}
	if err := decodeSegment(c64, &claims); err != nil {
		return nil, fmt.Errorf("%w: claims: %w", ErrBadProof, err)
	}
	// 4. typ; 5. an accepted asymmetric alg; no critical extensions.
	if hdr.Typ != "dpop+jwt" {
		return nil, fmt.Errorf("%w: typ %q", ErrBadProof, hdr.Typ)
	}
	if !slices.Contains(c.algs, hdr.Alg) {
		return nil, fmt.Errorf("%w: alg %q not accepted", ErrBadProof, hdr.Alg)
	}
	if hdr.Crit != nil {
		return nil, fmt.Errorf("%w: crit header", ErrBadProof)
	}
	// 7. a public jwk; 6. the signature by it.
	key, err := parseProofJWK(hdr.JWK, hdr.Alg)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadProof, err)
	}
	sig := b64(s64)
	if sig == nil {
		return nil, fmt.Errorf("%w: signature encoding", ErrBadProof)
	}
	if err := jwt.GetSigningMethod(hdr.Alg).Verify(h64+"."+c64, sig, key.key); err != nil {
		return nil, fmt.Errorf("%w: signature: %w", ErrBadProof, err)
	}
	// 3. the required claims.
	if claims.JTI == nil || *claims.JTI == "" || len(*claims.JTI) > maxJTI ||
		claims.HTM == nil || claims.HTU == nil || len(claims.IAT) == 0 || claims.ATH == nil {
		return nil, fmt.Errorf("%w: jti, htm, htu, iat or ath missing", ErrBadProof)
	}
	// 8. htm; 9. htu.
	if *claims.HTM != req.Method {
		return nil, fmt.Errorf("%w: htm %q is not the request method", ErrBadProof, *claims.HTM)
	}
	want, err := NormalizeHTU(req.URL)
	if err != nil {
		// The request's own URI (its Host) does not parse: no proof can
		// name it, and the client sent it.
		return nil, fmt.Errorf("%w: request URI: %w", ErrBadProof, err)
	}
	if got, err := NormalizeHTU(*claims.HTU); err != nil || got != want {
		return nil, fmt.Errorf("%w: htu is not the request URI", ErrBadProof)
	}
	// 10. the nonce, when the server hands them out.
	if c.nonces != nil && (claims.Nonce == nil || !c.nonces.Valid(*claims.Nonce)) {
		return nil, fmt.Errorf("%w: nonce missing or stale", ErrUseNonce)
	}
	// 11. iat within the window.
	iat, err := strconv.ParseFloat(string(claims.IAT), 64)
	if err != nil || claims.IAT[0] == '"' || math.IsNaN(iat) || math.IsInf(iat, 0) || iat < 0 || iat > 1e12 {
		return nil, fmt.Errorf("%w: iat is not a NumericDate", ErrBadProof)
	}
	issued := time.Unix(int64(iat), 0)
	now := c.now()
	if issued.Before(now.Add(-c.window)) || issued.After(now.Add(c.window)) {
		return nil, fmt.Errorf("%w: iat outside the %s window", ErrBadProof, c.window)
	}
	// 12. ath, the access token's hash; the key bound to the token.
	ath := sha256.Sum256([]byte(req.AccessToken))
	if subtle.ConstantTimeCompare([]byte(*claims.ATH), []byte(base64.RawURLEncoding.EncodeToString(ath[:]))) != 1 {
		return nil, fmt.Errorf("%w: ath is not the access token's hash", ErrBadProof)
	}
	if subtle.ConstantTimeCompare([]byte(key.jkt), []byte(req.JKT)) != 1 {
		return nil, fmt.Errorf("%w: proof key is not the key the token is bound to", ErrBadProof)
	}
	// Last, so a refused proof never fills the cache: the jti, once per
	// key, remembered while its iat is in the window.
	id := sha256.Sum256([]byte(key.jkt + "\x00" + *claims.JTI))
	seen, err := c.replay.Seen(ctx, base64.RawURLEncoding.EncodeToString(id[:]), issued.Add(c.window+time.Second))
	if err != nil {
		return nil, fmt.Errorf("%w: dpop replay cache: %w", ErrUnavailable, err)
	}
	if seen {
		return nil, fmt.Errorf("%w: jti", ErrProofReplayed)
	}
	renew := c.nonces != nil && c.nonces.Renew(*claims.Nonce)
	return &DPoPProof{JKT: key.jkt, ID: *claims.JTI, IssuedAt: issued, RenewNonce: renew}, nil
}

// decodeSegment decodes one base64url JSON object of a JWS, refusing
// trailing data and numbers read as floats.
func decodeSegment(seg string, v any) error {
	raw := b64(seg)
	if raw == nil {
		return errors.New("not base64url")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data")
	}
	return nil
}

// Confirmation returns a token's confirmation claim (RFC 7800 cnf): its
// jkt (RFC 9449 §6) and x5t#S256 (RFC 8705 §3.1) members, empty when
// absent. A cnf that is present but not an object, or whose members are
// not strings, is an error wrapping ErrMissingClaim: a binding that cannot
// be read must not be read as no binding.
func Confirmation(tok *AccessToken) (jkt, x5t string, err error) {
	if tok == nil || tok.Claims == nil {
		return "", "", nil
	}
	raw, ok := tok.Claims["cnf"]
	if !ok {
		return "", "", nil
	}
	cnf, ok := raw.(map[string]any)
	if !ok {
		return "", "", fmt.Errorf("%w: cnf is not an object", ErrMissingClaim)
	}
	// Asked on every request, cache hits included: nothing allocated.
	if jkt, err = cnfMember(cnf, "jkt"); err != nil {
		return "", "", err
	}
	if x5t, err = cnfMember(cnf, "x5t#S256"); err != nil {
		return "", "", err
	}
	return jkt, x5t, nil
}

// cnfMember is the string member name of cnf, "" when absent.
func cnfMember(cnf map[string]any, name string) (string, error) {
	v, present := cnf[name]
	if !present {
		return "", nil
	}
	s, ok := v.(string)
	if !ok || s == "" {
		return "", fmt.Errorf("%w: cnf.%s is not a string", ErrMissingClaim, name)
	}
	return s, nil
}
