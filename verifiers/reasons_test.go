package verifiers_test

import (
	"context"
	"errors"
	"testing"

	"github.com/mcptoken/caddy-mcp-token/devtools"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// TestRefusalReasons: logs and metrics name the real reason of a refused
// signature (a token for another issuer; an unknown kid), while the client
// description stays uninformative where saying more would help an
// attacker probe the configuration.
func TestRefusalReasons(t *testing.T) {
	ours, theirs := devtools.MustGenerateKey("ES256"), devtools.MustGenerateKey("ES256")
	v, err := verifiers.NewJWT(verifiers.JWTConfig{Issuers: []string{issuer}, Audiences: []string{audience},
		Keys: verifiers.NewStaticKey(ours.Public), Now: fixedNow})
	if err != nil {
		t.Fatal(err)
	}
	opts := func(iss string) devtools.TokenOptions {
		return devtools.TokenOptions{Issuer: iss, Audience: []string{audience}, Now: fixedNow}
	}
	cases := []struct {
		name, token string
		want        error
		reason      string
		description string
	}{
		{"another issuer's token", theirs.MustToken(opts("https://elsewhere.example")), verifiers.ErrUnknownIssuer, "unknown_issuer", "Invalid issuer"},
		{"our issuer, another key", theirs.MustToken(opts(issuer)), verifiers.ErrBadSignature, "bad_signature", "Token signature verification failed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tc.token)
			out := verifiers.Classify(err)
			if !errors.Is(err, tc.want) || out.Reason != tc.reason || out.Description != tc.description || out.Status != 401 {
				t.Fatalf("err %v, outcome %+v", err, out)
			}
		})
	}
	if d := verifiers.Classify(verifiers.ErrUnknownKey); d.Reason != "unknown_key" || d.Description != "Token signature verification failed" {
		t.Fatalf("unknown kid: %+v", d)
	}
}
