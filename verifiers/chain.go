package verifiers

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
)

// Chain routes each token to the verifier that can judge it:
//  1. a configured static (development) token goes to Static;
//  2. with both JWT and Opaque configured, a token shaped like a JWS
//     (see LooksLikeJWS) goes to JWT and anything else to Opaque;
//  3. with only one of them, every other token goes to it.
//
// A token goes to one verifier only, so a failure is reported as that
// verifier saw it, and a JWT is never sent to a remote endpoint.
// The accepted token's scopes are then expanded by Implies, once, and the
// scope rules checked against the result: RequiredScopes for every token,
// IssuerScopes for JWTs of that issuer, OpaqueScopes for introspected
// tokens. Keeping every scope check here, after the expansion, is what
// makes a scope hierarchy apply to all of them alike.
type Chain struct {
	Static         *Static
	JWT            Verifier
	Opaque         Verifier
	RequiredScopes []string
	// IssuerScopes are the scopes JWTs of an issuer must carry on top of
	// RequiredScopes (a JWT's iss is checked by the verifier that accepted it).
	IssuerScopes map[string][]string
	// OpaqueScopes are the scopes introspected tokens must carry on top of
	// RequiredScopes.
	OpaqueScopes []string
	// Implies expands every accepted token's scopes (nil: no hierarchy).
	Implies *ScopeHierarchy
}

// Verifier kinds reported by VerifyKind.
const (
	KindStatic        = "static"
	KindJWT           = "jwt"
	KindIntrospection = "introspection"
	KindNone          = "none"
)

// Verify implements Verifier.
func (c *Chain) Verify(ctx context.Context, token string) (*AccessToken, error) {
	tok, _, err := c.VerifyKind(ctx, token)
	return tok, err
}

// VerifyKind verifies like Verify and also says which verifier judged the
// token (for metrics and logs).
func (c *Chain) VerifyKind(ctx context.Context, token string) (*AccessToken, string, error) {
	v, kind := c.route(token)
	if v == nil {
		return nil, kind, fmt.Errorf("%w: unknown token", ErrInactive)
	}
	tok, err := v.Verify(ctx, token)
	if err != nil {
		return tok, kind, err
	}
	tok = c.Implies.Apply(tok)
	if err := RequireScopes(tok, c.required(kind, tok)); err != nil {
		return tok, kind, err
	}
	return tok, kind, nil
}

// required is every scope an accepted token of kind must carry.
func (c *Chain) required(kind string, tok *AccessToken) []string {
	var extra []string
	switch kind {
	case KindJWT:
		extra = c.IssuerScopes[tok.Issuer]
	case KindIntrospection:
		extra = c.OpaqueScopes
	}
	if len(extra) == 0 {
		return c.RequiredScopes
	}
	out := slices.Clone(c.RequiredScopes)
	for _, s := range extra {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

func (c *Chain) route(token string) (Verifier, string) {
	if c.Static != nil && c.Static.Has(token) {
		return c.Static, KindStatic
	}
	switch {
	case c.JWT != nil && (c.Opaque == nil || LooksLikeJWS(token)):
		return c.JWT, KindJWT
	case c.Opaque != nil:
		return c.Opaque, KindIntrospection
	}
	return nil, KindNone
}

// LooksLikeJWS reports whether token has the shape of a JWS compact
// serialization: three dot-separated parts, the first of them a base64url
// JSON object. It proves nothing about the token.
func LooksLikeJWS(token string) bool {
	header, _, ok := strings.Cut(token, ".")
	if !ok || strings.Count(token, ".") != 2 || len(header) > MaxTokenSize {
		return false
	}
	b, err := base64.RawURLEncoding.DecodeString(header)
	if err != nil {
		return false
	}
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{'
}
