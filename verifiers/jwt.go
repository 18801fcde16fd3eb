package verifiers

import (
	"context"
	"crypto"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Clock-skew limits, applied to exp, nbf and iat.
const (
	DefaultClockSkew = 60 * time.Second
	MaxClockSkew     = 120 * time.Second
)

// MaxTokenSize bounds the bearer tokens a verifier looks at, in bytes.
const MaxTokenSize = 16 << 10

// KeySource finds the key that verifies a token. A static key, an HMAC
// secret and a JWKS cache are key sources.
type KeySource interface {
	// Key returns the key for a token signed with alg whose header names
	// kid ("" when it names none). Errors wrap ErrUnknownKey when no key
	// fits, or ErrUnavailable when keys cannot be had right now.
	Key(ctx context.Context, alg *Algorithm, kid string) (any, error)
}

// StaticKey is a KeySource holding one key (a public key or an HMAC
// secret) that verifies every token whatever its kid.
type StaticKey struct{ key any }

// NewStaticKey wraps a crypto.PublicKey or an HMAC secret ([]byte).
func NewStaticKey(key any) StaticKey { return StaticKey{key: key} }

// Key returns the static key.
func (s StaticKey) Key(context.Context, *Algorithm, string) (any, error) { return s.key, nil }

// JWTConfig configures a JWT verifier. Its zero values are safe defaults
// except where said.
type JWTConfig struct {
	// Issuers lists the accepted iss values; empty accepts any iss.
	Issuers []string
	// Audiences lists the accepted aud values (any-of); empty accepts any.
	Audiences []string
	// Algorithms is the allow-list. Default: the algorithm of a static
	// public key, HS256 for a secret, else RS256.
	Algorithms []string
	// Keys finds verification keys. Required.
	Keys KeySource
	// ClockSkew is the leeway on exp, nbf and iat; 0 means none; at most
	// MaxClockSkew.
	ClockSkew time.Duration
	// TokenType, when set to "at+jwt", requires the RFC 9068 typ header
	// (at+jwt or application/at+jwt), refusing ID tokens.
	TokenType string
	// RequiredScopes must all be present (else a *ScopeError).
	RequiredScopes []string
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// JWT verifies signed JWTs (JWS compact serialization).
type JWT struct {
	cfg       JWTConfig
	algs      map[string]*Algorithm
	parser    *jwt.Parser // signature and structure only
	validator *jwt.Validator
}

// NewJWT checks cfg and returns a verifier. It refuses algorithm
// confusion (HMAC with a public key, or an asymmetric algorithm with a
// secret), short HMAC secrets, keys that do not fit the algorithms, and a
// clock skew above MaxClockSkew.
func NewJWT(cfg JWTConfig) (*JWT, error) {
	if cfg.Keys == nil {
		return nil, errors.New("a key source is required (public key, HMAC secret or JWKS)")
	}
	if cfg.ClockSkew < 0 || cfg.ClockSkew > MaxClockSkew {
		return nil, fmt.Errorf("clock skew %s out of range (0 to %s)", cfg.ClockSkew, MaxClockSkew)
	}
	if cfg.TokenType != "" && !strings.EqualFold(cfg.TokenType, "at+jwt") {
		return nil, fmt.Errorf("token type %q not supported (only at+jwt)", cfg.TokenType)
	}
	static, isStatic := cfg.Keys.(StaticKey)
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = defaultAlgorithms(static.key)
	}
	v := &JWT{cfg: cfg, algs: make(map[string]*Algorithm, len(cfg.Algorithms))}
	for _, name := range cfg.Algorithms {
		alg, err := LookupAlgorithm(name)
		if err != nil {
			return nil, err
		}
		v.algs[alg.Name] = alg
	}
	if err := checkFamilies(v.algs); err != nil {
		return nil, err
	}
	if isStatic {
		for _, alg := range v.algs {
			if err := checkStaticKey(alg, static.key); err != nil {
				return nil, err
			}
		}
	} else if hs, ok := cfg.Keys.(interface{ AllowsHMAC() bool }); !ok || !hs.AllowsHMAC() {
		for _, alg := range v.algs {
			if alg.IsHMAC() {
				return nil, fmt.Errorf("algorithm confusion: HMAC algorithms cannot be used with JWKS endpoints (%s)", alg.Name)
			}
		}
	}
	if cfg.Now == nil {
		v.cfg.Now = time.Now
	}
	// The claims are validated after the parse (see Verify), so that the
	// range of the time claims is checked before golang-jwt converts them.
	v.parser = jwt.NewParser(
		jwt.WithValidMethods(slices.Sorted(maps.Keys(v.algs))),
		jwt.WithStrictDecoding(),
		jwt.WithoutClaimsValidation(),
	)
	v.validator = jwt.NewValidator(
		jwt.WithExpirationRequired(),
		jwt.WithIssuedAt(),
		jwt.WithLeeway(cfg.ClockSkew),
		jwt.WithTimeFunc(func() time.Time { return v.cfg.Now() }),
	)
	return v, nil
}

func defaultAlgorithms(key any) []string {
	switch k := key.(type) {
	case []byte:
		return []string{"HS256"}
	case crypto.PublicKey:
		if algs := AlgorithmsForKey(k); algs != nil {
			return algs
		}
	}
	return []string{"RS256"}
}

// checkFamilies refuses an allow-list that mixes HMAC with asymmetric
// algorithms: one key source must never serve both.
func checkFamilies(algs map[string]*Algorithm) error {
	var hmac, asym []string
	for name, a := range algs {
		if a.IsHMAC() {
			hmac = append(hmac, name)
		} else {
			asym = append(asym, name)
		}
	}
	if len(hmac) > 0 && len(asym) > 0 {
		slices.Sort(hmac)
		slices.Sort(asym)
		return fmt.Errorf("algorithm confusion: HMAC algorithms (%s) cannot be allowed together with asymmetric ones (%s)",
			strings.Join(hmac, " "), strings.Join(asym, " "))
	}
	return nil
}

func checkStaticKey(alg *Algorithm, key any) error {
	secret, isSecret := key.([]byte)
	switch {
	case alg.IsHMAC() && !isSecret:
		return fmt.Errorf("algorithm confusion: %s needs an HMAC secret, not a public key", alg.Name)
	case !alg.IsHMAC() && isSecret:
		return fmt.Errorf("algorithm confusion: %s needs a public key, not an HMAC secret", alg.Name)
	case isSecret:
		return CheckHMACSecret(alg, secret)
	}
	if err := alg.CheckKey(key); err != nil {
		return fmt.Errorf("public key (%s) cannot verify %s; set algorithms to match the key", KeyType(key), alg.Name)
	}
	return nil
}

// Algorithms returns the allow-list in use.
func (v *JWT) Algorithms() []string { return slices.Sorted(maps.Keys(v.algs)) }

// Verify checks the token's structure, header, signature and claims.
func (v *JWT) Verify(ctx context.Context, token string) (*AccessToken, error) {
	if len(token) > MaxTokenSize {
		return nil, fmt.Errorf("%w: token longer than %d bytes", ErrMalformed, MaxTokenSize)
	}
	var (
		kid     string
		usedAlg *Algorithm
		usedKey any
	)
	claims := jwt.MapClaims{}
	parsed, err := v.parser.ParseWithClaims(token, claims, func(t *jwt.Token) (any, error) {
		alg, key, k, err := v.resolveKey(ctx, t.Header)
		if err != nil {
			return nil, err
		}
		kid, usedAlg, usedKey = k, alg, key
		// Verify with our method, not the library's global registry entry
		// (strict PSS salt length).
		t.Method = alg.method
		return key, nil
	})
	if err != nil {
		if parsed != nil && parsed.Method != nil && v.algs[parsed.Method.Alg()] == nil {
			// Refused by WithValidMethods before the key func ran.
			return nil, fmt.Errorf("%w: %q", ErrUnsupportedAlgorithm, parsed.Method.Alg())
		}
		err = classifyJWTError(err)
		if errors.Is(err, ErrBadSignature) || errors.Is(err, ErrUnknownKey) {
			if iss, ok := v.foreignIssuer(token); ok {
				return nil, fmt.Errorf("%w: %q (%v)", ErrUnknownIssuer, iss, err)
			}
		}
		return nil, err
	}
	// The signature is verified. A time claim out of range is malformed
	// (golang-jwt would convert nbf 1e300 to a date in the past).
	if err := CheckTimeClaims(claims); err != nil {
		return nil, err
	}
	if err := v.validator.Validate(claims); err != nil {
		return nil, classifyJWTError(err)
	}
	tok, err := v.checkClaims(claims, kid)
	if err != nil {
		return tok, err
	}
	tok.binding = &keyBinding{keys: v.cfg.Keys, alg: usedAlg, kid: kid, key: usedKey}
	if nbf, ok := NumericDate(claims["nbf"]); ok {
		tok.binding.notBefore = nbf.Add(-v.cfg.ClockSkew)
	}
	if !tok.ExpiresAt.IsZero() {
		tok.binding.notAfter = tok.ExpiresAt.Add(v.cfg.ClockSkew)
	}
	return tok, nil
}

// foreignIssuer reports the unverified iss of a token that failed its
// signature check when issuers are configured and it names none of them:
// the signature failed because the token is for someone else. Only for
// the reason in logs and metrics; nothing else trusts it.
func (v *JWT) foreignIssuer(token string) (string, bool) {
	if len(v.cfg.Issuers) == 0 {
		return "", false
	}
	iss, err := peekIssuer(token)
	if err != nil || slices.Contains(v.cfg.Issuers, iss) {
		return "", false
	}
	return iss, true
}

// resolveKey applies the header rules and finds the key: alg on the
// allow-list, crit and typ (see checkHeader), kid a string, and a key of
// the algorithm's type from the key source. The header never chooses the
// key source: jku, x5u, jwk and x5c are ignored.
func (v *JWT) resolveKey(ctx context.Context, h map[string]any) (*Algorithm, any, string, error) {
	name, _ := h["alg"].(string)
	alg, ok := v.algs[name]
	if !ok {
		return nil, nil, "", fmt.Errorf("%w: %q", ErrUnsupportedAlgorithm, name)
	}
	if err := checkHeader(h, v.cfg.TokenType); err != nil {
		return nil, nil, "", err
	}
	var kid string
	if raw, present := h["kid"]; present {
		if kid, ok = raw.(string); !ok {
			return nil, nil, "", fmt.Errorf("%w: kid is not a string", ErrMalformed)
		}
	}
	key, err := v.cfg.Keys.Key(ctx, alg, kid)
	if err != nil {
		return nil, nil, "", err
	}
	if err := alg.CheckKey(key); err != nil {
		return nil, nil, "", err
	}
	return alg, key, kid, nil
}

// VerifySignature checks a compact JWS's structure, header and signature
// with the same rules as Verify, but not its payload, which need not be a
// JSON claim set. It is for conformance tests and tools; requests go
// through Verify. It returns the decoded payload.
func (v *JWT) VerifySignature(ctx context.Context, token string) ([]byte, error) {
	if len(token) > MaxTokenSize {
		return nil, fmt.Errorf("%w: token longer than %d bytes", ErrMalformed, MaxTokenSize)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, fmt.Errorf("%w: %d parts, want 3", ErrMalformed, len(parts))
	}
	enc := base64.RawURLEncoding.Strict()
	headerJSON, err := enc.DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("%w: header: %v", ErrMalformed, err)
	}
	var header map[string]any
	if err := json.Unmarshal(headerJSON, &header); err != nil || header == nil {
		return nil, fmt.Errorf("%w: header is not a JSON object", ErrMalformed)
	}
	payload, err := enc.DecodeString(parts[1])
	if err != nil {
		return nil, fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	sig, err := enc.DecodeString(parts[2])
	if err != nil {
		return nil, fmt.Errorf("%w: signature: %v", ErrMalformed, err)
	}
	alg, key, _, err := v.resolveKey(ctx, header)
	if err != nil {
		return nil, err
	}
	if err := alg.method.Verify(parts[0]+"."+parts[1], sig, key); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	return payload, nil
}

// checkHeader applies the header rules that golang-jwt leaves out: crit
// (RFC 7515 §4.1.11: we understand no extension, so any crit is refused)
// and typ (RFC 9068 §4, when required).
func checkHeader(h map[string]any, wantType string) error {
	if _, present := h["crit"]; present {
		return fmt.Errorf("%w: %v", ErrCritical, h["crit"])
	}
	if wantType != "" {
		typ, _ := h["typ"].(string)
		if !strings.EqualFold(typ, "at+jwt") && !strings.EqualFold(typ, "application/at+jwt") {
			return fmt.Errorf("%w: typ %q, want at+jwt", ErrBadType, typ)
		}
	}
	return nil
}

func (v *JWT) checkClaims(claims jwt.MapClaims, kid string) (*AccessToken, error) {
	// The signature is verified: the identity is returned with a refusal
	// too, for the rejection log line.
	tok := FromClaims(claims)
	tok.KeyID = kid
	if len(v.cfg.Issuers) > 0 && !slices.Contains(v.cfg.Issuers, tok.Issuer) {
		return tok, fmt.Errorf("%w: %q", ErrBadIssuer, tok.Issuer)
	}
	if len(v.cfg.Audiences) > 0 && !MatchAudience(tok.Audience, v.cfg.Audiences) {
		return tok, fmt.Errorf("%w: %q", ErrBadAudience, tok.Audience)
	}
	if err := RequireScopes(tok, v.cfg.RequiredScopes); err != nil {
		return tok, err
	}
	return tok, nil
}

// jwtErrors maps golang-jwt's sentinels to ours; the first match wins, and
// our own sentinels (returned from the key func) are checked before these.
var jwtErrors = []struct{ from, to error }{
	{jwt.ErrTokenMalformed, ErrMalformed},
	{jwt.ErrTokenExpired, ErrExpired},
	{jwt.ErrTokenNotValidYet, ErrNotYetValid},
	{jwt.ErrTokenUsedBeforeIssued, ErrNotYetValid},
	{jwt.ErrTokenRequiredClaimMissing, ErrMissingClaim},
	{jwt.ErrTokenSignatureInvalid, ErrBadSignature},
	{jwt.ErrTokenUnverifiable, ErrUnsupportedAlgorithm},
	{jwt.ErrTokenInvalidClaims, ErrMissingClaim},
}

func classifyJWTError(err error) error {
	if isSentinel(err) {
		return err // already one of ours, from the key func
	}
	for _, m := range jwtErrors {
		if errors.Is(err, m.from) {
			return fmt.Errorf("%w: %v", m.to, err)
		}
	}
	return fmt.Errorf("%w: %v", ErrMalformed, err)
}
