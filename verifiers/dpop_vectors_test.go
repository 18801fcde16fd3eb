package verifiers_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// rfc9449Proof is the DPoP proof of RFC 9449 §5, Figure 5 (a token
// request: no ath), signed by the key of Figure 3.
const rfc9449Proof = "eyJ0eXAiOiJkcG9wK2p3dCIsImFsZyI6IkVTMjU2IiwiandrIjp7Imt0eSI6Ik" +
	"VDIiwieCI6Imw4dEZyaHgtMzR0VjNoUklDUkRZOXpDa0RscEJoRjQyVVFVZldWQVdCR" +
	"nMiLCJ5IjoiOVZFNGpmX09rX282NHpiVFRsY3VOSmFqSG10NnY5VERWclUwQ2R2R1JE" +
	"QSIsImNydiI6IlAtMjU2In19.eyJqdGkiOiItQndDM0VTYzZhY2MybFRjIiwiaHRtIj" +
	"oiUE9TVCIsImh0dSI6Imh0dHBzOi8vc2VydmVyLmV4YW1wbGUuY29tL3Rva2VuIiwia" +
	"WF0IjoxNTYyMjYyNjE2fQ.2-GxA6T8lP4vfrg8v-FdWP0A0zdrj8igiMLvqRMUvwnQg" +
	"4PtFLbdLXiOSsX0x7NVY-FNyJK70nfbV37xRZT3Lg"

// TestRFC9449Examples: the RFC's own proof, thumbprint and ath.
func TestRFC9449Examples(t *testing.T) {
	t.Run("Figure 5 proof verifies up to its missing ath", func(t *testing.T) {
		c := newChecker(t, verifiers.DPoPOptions{Now: func() time.Time { return time.Unix(1562262616, 0) }})
		_, err := c.Check(context.Background(), verifiers.DPoPRequest{
			Proofs: []string{rfc9449Proof}, Method: "POST", URL: "https://server.example.com/token"})
		// Signature, typ, alg, jwk, htm, htu and iat pass; a resource
		// server then requires ath, which a token request proof lacks.
		if !errors.Is(err, verifiers.ErrBadProof) || !strings.Contains(err.Error(), "ath missing") {
			t.Fatalf("err = %v, want the missing ath", err)
		}
	})
	t.Run("Figure 5 proof with a changed signature", func(t *testing.T) {
		c := newChecker(t, verifiers.DPoPOptions{Now: func() time.Time { return time.Unix(1562262616, 0) }})
		bad := rfc9449Proof[:len(rfc9449Proof)-4] + "AAAA"
		_, err := c.Check(context.Background(), verifiers.DPoPRequest{
			Proofs: []string{bad}, Method: "POST", URL: "https://server.example.com/token"})
		if !errors.Is(err, verifiers.ErrBadProof) || !strings.Contains(err.Error(), "signature") {
			t.Fatalf("err = %v, want a signature failure", err)
		}
	})
	t.Run("§6.1 jkt of the Figure 3 key", func(t *testing.T) {
		jkt, err := verifiers.JWKThumbprint([]byte(`{"kty":"EC","x":"l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",` +
			`"y":"9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA","crv":"P-256"}`))
		if err != nil || jkt != "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I" {
			t.Fatalf("jkt = %q, %v", jkt, err)
		}
	})
	t.Run("RFC 7638 §3.1 RSA thumbprint", func(t *testing.T) {
		jkt, err := verifiers.JWKThumbprint([]byte(`{"kty":"RSA","e":"AQAB","alg":"RS256","kid":"2011-04-29","n":"` +
			"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn6" +
			"4tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n9" +
			"1CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw" + `"}`))
		if err != nil || jkt != "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs" {
			t.Fatalf("jkt = %q, %v", jkt, err)
		}
	})
	t.Run("§7.1 ath of the example token", func(t *testing.T) {
		if got := athOf("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"); got != "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo" {
			t.Fatalf("ath = %s", got)
		}
	})
}

// TestNormalizeHTU: RFC 3986 §6.2.2 and §6.2.3 normalisation, no query or
// fragment, absolute http(s) URIs only.
func TestNormalizeHTU(t *testing.T) {
	tests := []struct{ in, want, err string }{
		{in: "https://server.example.com/token", want: "https://server.example.com/token"},
		{in: "HTTPS://Server.Example.COM/token", want: "https://server.example.com/token"},
		{in: "https://server.example.com:443/token", want: "https://server.example.com/token"},
		{in: "http://server.example.com:80/token", want: "http://server.example.com/token"},
		{in: "https://server.example.com:8443/token", want: "https://server.example.com:8443/token"},
		{in: "http://server.example.com:443/token", want: "http://server.example.com:443/token"},
		{in: "https://server.example.com", want: "https://server.example.com/"},
		{in: "https://server.example.com/a/%7euser/%41", want: "https://server.example.com/a/~user/A"},
		{in: "https://server.example.com/a%2fb%3f", want: "https://server.example.com/a%2Fb%3F"},
		{in: "https://server.example.com/a/./b/../c", want: "https://server.example.com/a/c"},
		{in: "https://server.example.com/a/b/..", want: "https://server.example.com/a/"},
		{in: "https://server.example.com/mcp?x=1#frag", want: "https://server.example.com/mcp"},
		{in: "https://[::1]:443/mcp", want: "https://[::1]/mcp"},
		{in: "/mcp", err: "absolute"},
		{in: "ftp://server.example.com/x", err: "absolute"},
		{in: "https://user@server.example.com/x", err: "absolute"},
		{in: "https://server.example.com/%zz", err: "htu"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := verifiers.NormalizeHTU(tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("NormalizeHTU = %q, %v; want an error naming %q", got, err, tc.err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("NormalizeHTU = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

// TestMemoryReplayCache: bounded, entries expire, a full cache drops the
// oldest and counts it.
func TestMemoryReplayCache(t *testing.T) {
	now := time.Unix(1000, 0)
	c := verifiers.NewMemoryReplayCache(2, func() time.Time { return now })
	ctx := context.Background()
	seen := func(key string, ttl time.Duration) bool {
		s, err := c.Seen(ctx, key, now.Add(ttl))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if seen("a", time.Minute) || !seen("a", time.Minute) {
		t.Fatal("a: first not new or second not seen")
	}
	if seen("b", time.Minute) {
		t.Fatal("b seen before")
	}
	if seen("c", time.Minute) || c.Len() != 2 || c.Evicted() != 1 {
		t.Fatalf("after c: len %d evicted %d, want 2 and 1", c.Len(), c.Evicted())
	}
	if !seen("b", time.Minute) || !seen("c", time.Minute) {
		t.Fatal("b or c forgotten")
	}
	now = now.Add(time.Minute)
	if c.Len() != 0 {
		t.Fatalf("len %d after expiry", c.Len())
	}
	if seen("b", time.Minute) || c.Evicted() != 1 {
		t.Fatalf("expired b still seen, or expiry counted as eviction (%d)", c.Evicted())
	}
}

// TestConfirmation: cnf.jkt and cnf.x5t#S256 read, a malformed cnf refused.
func TestConfirmation(t *testing.T) {
	tests := []struct {
		name     string
		claims   map[string]any
		jkt, x5t string
		err      bool
	}{
		{"no cnf", map[string]any{"sub": "a"}, "", "", false},
		{"jkt", map[string]any{"cnf": map[string]any{"jkt": "abc"}}, "abc", "", false},
		{"x5t#S256", map[string]any{"cnf": map[string]any{"x5t#S256": "def"}}, "", "def", false},
		{"cnf not an object", map[string]any{"cnf": "abc"}, "", "", true},
		{"jkt a number", map[string]any{"cnf": map[string]any{"jkt": 1.0}}, "", "", true},
		{"jkt empty", map[string]any{"cnf": map[string]any{"jkt": ""}}, "", "", true},
		{"both", map[string]any{"cnf": map[string]any{"jkt": "abc", "x5t#S256": "def"}}, "abc", "def", false},
		{"x5t#S256 not a string", map[string]any{"cnf": map[string]any{"jkt": "abc", "x5t#S256": []any{}}}, "", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			jkt, x5t, err := verifiers.Confirmation(&verifiers.AccessToken{Claims: tc.claims})
			if (err != nil) != tc.err || jkt != tc.jkt || x5t != tc.x5t {
				t.Fatalf("Confirmation = %q, %q, %v", jkt, x5t, err)
			}
			if err != nil && !errors.Is(err, verifiers.ErrMissingClaim) {
				t.Fatalf("err = %v, want ErrMissingClaim", err)
			}
			if err == nil {
				// Asked on every request, cache hits included.
				tok := &verifiers.AccessToken{Claims: tc.claims}
				if n := testing.AllocsPerRun(100, func() { _, _, _ = verifiers.Confirmation(tok) }); n != 0 {
					t.Fatalf("Confirmation allocates %v times", n)
				}
			}
		})
	}
}
