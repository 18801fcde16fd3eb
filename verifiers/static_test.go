package verifiers_test

import (
	"context"
	"errors"
	"github.com/mcptoken/caddy-mcp-token/devtools"
	"strings"
	"testing"
	"time"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

func TestStatic(t *testing.T) {
	s, err := verifiers.NewStatic([]verifiers.StaticToken{
		{Token: "dev-alice-token", ClientID: "alice@company.com", Scopes: []string{"read:data", "write:data"}, Subject: "alice"},
		{Token: "dev-old-token", ClientID: "old", ExpiresAt: time.Now().Add(-time.Minute)},
		{Token: "dev-meta", ClientID: "m", Claims: map[string]any{"team": "blue"}},
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := s.Verify(context.Background(), "dev-alice-token")
	if err != nil || tok.ClientID != "alice@company.com" || tok.Subject != "alice" || !tok.HasScopes([]string{"read:data", "write:data"}) {
		t.Fatalf("alice: %+v %v", tok, err)
	}
	if _, err := s.Verify(context.Background(), "dev-alice-tokem"); !errors.Is(err, verifiers.ErrInactive) {
		t.Fatalf("unknown token: %v", err)
	}
	if _, err := s.Verify(context.Background(), "dev-old-token"); !errors.Is(err, verifiers.ErrExpired) {
		t.Fatalf("expired token: %v", err)
	}
	if tok, err := s.Verify(context.Background(), "dev-meta"); err != nil || tok.Claims["team"] != "blue" {
		t.Fatalf("extra claims: %+v %v", tok, err)
	}
}

func TestStaticRefusals(t *testing.T) {
	cases := []struct {
		name   string
		tokens []verifiers.StaticToken
		prod   bool
		want   string
	}{
		{"production", []verifiers.StaticToken{{Token: "t", ClientID: "c"}}, true, "DEVELOPMENT ONLY"},
		{"no client id", []verifiers.StaticToken{{Token: "t"}}, false, "client_id is required"},
		{"empty token", []verifiers.StaticToken{{ClientID: "c"}}, false, "token is empty"},
		{"duplicate", []verifiers.StaticToken{{Token: "t", ClientID: "a"}, {Token: "t", ClientID: "b"}}, false, "duplicate"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := verifiers.NewStatic(tc.tokens, tc.prod)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want %q, got %v", tc.want, err)
			}
		})
	}
}

func TestIsProduction(t *testing.T) {
	for val, want := range map[string]bool{"production": true, "Production ": true, "prod": false, "development": false, "": false} {
		t.Setenv("ENVIRONMENT", val)
		if got := verifiers.IsProduction(); got != want {
			t.Errorf("ENVIRONMENT=%q: %v", val, got)
		}
	}
}

func TestChainRouting(t *testing.T) {
	static, _ := verifiers.NewStatic([]verifiers.StaticToken{{Token: "dev-token", ClientID: "dev", Scopes: []string{"a"}}}, false)
	jwtV := newJWT(t, rsaKey.Public, nil)
	opaque := verifierFunc(func(_ context.Context, tok string) (*verifiers.AccessToken, error) {
		return &verifiers.AccessToken{ClientID: "opaque:" + tok, Scopes: []string{"a"}}, nil
	})
	c := &verifiers.Chain{Static: static, JWT: jwtV, Opaque: opaque, RequiredScopes: []string{"a"}}
	ctx := context.Background()
	if tok, err := c.Verify(ctx, "dev-token"); err != nil || tok.ClientID != "dev" {
		t.Fatalf("static: %+v %v", tok, err)
	}
	if tok, err := c.Verify(ctx, "abc.def"); err != nil || tok.ClientID != "opaque:abc.def" {
		t.Fatalf("opaque: %+v %v", tok, err)
	}
	jwtTok := rsaKey.MustToken(opts(func(o *devtools.TokenOptions) { o.Scopes = []string{"a"} }))
	if tok, err := c.Verify(ctx, jwtTok); err != nil || tok.Subject != "fastmcp-user" {
		t.Fatalf("jwt: %+v %v", tok, err)
	}
	if _, err := c.Verify(ctx, rsaKey.MustToken(opts(nil))); !errors.Is(err, verifiers.ErrInsufficientScope) {
		t.Fatalf("chain scopes: %v", err)
	}
	var se *verifiers.ScopeError
	_, err := c.Verify(ctx, rsaKey.MustToken(opts(nil)))
	if !errors.As(err, &se) || strings.Join(se.Missing, " ") != "a" {
		t.Fatalf("scope error: %v", err)
	}
	// Without an opaque verifier, a non-JWS goes to the JWT verifier and is malformed.
	c2 := &verifiers.Chain{JWT: jwtV}
	if _, err := c2.Verify(ctx, "abc"); !errors.Is(err, verifiers.ErrMalformed) {
		t.Fatalf("no opaque: %v", err)
	}
	if !verifiers.LooksLikeJWS(jwtTok) || verifiers.LooksLikeJWS("a.b.c") || verifiers.LooksLikeJWS("dev-token") {
		t.Fatal("LooksLikeJWS")
	}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		err    error
		status int
		code   string
		desc   string
	}{
		{nil, 200, "", ""},
		{verifiers.ErrMissingToken, 401, "", "Bearer token required"},
		{verifiers.ErrExpired, 401, "invalid_token", "Token has expired"},
		{verifiers.ErrBadSignature, 401, "invalid_token", "Token signature verification failed"},
		{verifiers.ErrBadAudience, 401, "invalid_token", "Invalid audience"},
		{verifiers.ErrBadIssuer, 401, "invalid_token", "Invalid issuer"},
		{&verifiers.ScopeError{Missing: []string{"x"}}, 403, "insufficient_scope", "Insufficient scope"},
		{verifiers.ErrBadRequest, 400, "invalid_request", "Malformed authorization request"},
		{verifiers.ErrUnavailable, 503, "", "Token verification is temporarily unavailable"},
		{errors.New("some bug"), 503, "", "Token verification is temporarily unavailable"},
	}
	for _, tc := range cases {
		o := verifiers.Classify(tc.err)
		if o.Status != tc.status || o.Code != tc.code || o.Description != tc.desc {
			t.Errorf("%v: %+v", tc.err, o)
		}
	}
}

type verifierFunc func(context.Context, string) (*verifiers.AccessToken, error)

func (f verifierFunc) Verify(ctx context.Context, tok string) (*verifiers.AccessToken, error) {
	return f(ctx, tok)
}
