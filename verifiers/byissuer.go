package verifiers

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
)

// ByIssuer routes each JWT to the verifier configured for its issuer, so
// that only that issuer's keys (and audience, algorithms, scopes) can
// verify it. The iss claim is read before verification only to choose the
// verifier; the chosen verifier then checks iss again with the signature.
type ByIssuer struct {
	byIss map[string]*JWT
}

// NewByIssuer indexes verifiers by their accepted issuers. Every verifier
// must name at least one issuer, and no issuer may belong to two.
func NewByIssuer(vs []*JWT) (*ByIssuer, error) {
	b := &ByIssuer{byIss: map[string]*JWT{}}
	for i, v := range vs {
		if len(v.cfg.Issuers) == 0 {
			return nil, fmt.Errorf("issuer policy %d: with several issuers, each key source must name its issuer", i+1)
		}
		for _, iss := range v.cfg.Issuers {
			if _, dup := b.byIss[iss]; dup {
				return nil, fmt.Errorf("issuer %q is configured twice", iss)
			}
			b.byIss[iss] = v
		}
	}
	return b, nil
}

// Verify implements Verifier.
func (b *ByIssuer) Verify(ctx context.Context, token string) (*AccessToken, error) {
	iss, err := peekIssuer(token)
	if err != nil {
		return nil, err
	}
	v, ok := b.byIss[iss]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownIssuer, iss)
	}
	return v.Verify(ctx, token)
}

// peekIssuer reads iss from a compact JWS payload without verifying it.
func peekIssuer(token string) (string, error) {
	if len(token) > MaxTokenSize {
		return "", fmt.Errorf("%w: token longer than %d bytes", ErrMalformed, MaxTokenSize)
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", fmt.Errorf("%w: not a JWS compact token", ErrMalformed)
	}
	payload, err := base64.RawURLEncoding.Strict().DecodeString(parts[1])
	if err != nil {
		return "", fmt.Errorf("%w: payload: %v", ErrMalformed, err)
	}
	var claims struct {
		Iss any `json:"iss"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", fmt.Errorf("%w: payload is not a JSON object", ErrMalformed)
	}
	iss, ok := claims.Iss.(string)
	if !ok {
		return "", fmt.Errorf("%w: iss missing or not a string", ErrBadIssuer)
	}
	return iss, nil
}
