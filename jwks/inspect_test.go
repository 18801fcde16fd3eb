package jwks

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/mcptoken/caddy-mcp-token/devtools"
)

// weakRSAJWK is the public JWK of a fresh 1024-bit RSA key.
func weakRSAJWK(t *testing.T, kid string) map[string]any {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.RawURLEncoding.EncodeToString
	return map[string]any{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
		"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

// mixedJWKSServer publishes one good key and three the module refuses,
// and, withOct, an HMAC key (which makes the module refuse the whole set).
func mixedJWKSServer(t *testing.T, withOct bool) (*devtools.JWKSServer, *devtools.KeyPair) {
	t.Helper()
	good := newKey(t, "ES256", "good")
	srv := devtools.NewJWKSServer(good)
	t.Cleanup(srv.Close)
	enc := newKey(t, "RS256", "enc")
	encJWK, _ := enc.JWK()
	encJWK["use"] = "enc"
	srv.AddRaw(weakRSAJWK(t, "weak"))
	if withOct {
		srv.AddRaw(map[string]any{"kty": "oct", "kid": "hmac", "alg": "HS256", "k": base64.RawURLEncoding.EncodeToString([]byte(strings.Repeat("s", 32)))})
	}
	srv.AddRaw(encJWK)
	srv.AddRaw(map[string]any{"kty": "PQC", "kid": "future", "alg": "ML-DSA-65", "pub": "AAAA"})
	return srv, good
}

type wantKey struct {
	kid, kty, reason string
	accepted         bool
}

func TestInspectKeyByKey(t *testing.T) {
	srv, _ := mixedJWKSServer(t, false)
	in, err := Inspect(context.Background(), Options{URL: srv.JWKSURL()})
	if err != nil {
		t.Fatal(err)
	}
	checkReports(t, in, []wantKey{
		{"good", "EC", "", true},
		{"weak", "RSA", "RSA key has 1024 bits, at least 2048 are required", false},
		{"enc", "RSA", `use "enc" is not sig`, false},
		{"future", "PQC", "unsupported key: PQC (kty)", false},
	})
	if in.Usable != 1 || in.SetError != "" || in.JWKSURL != srv.JWKSURL() || in.Issuer != "" {
		t.Fatalf("summary: %+v", in)
	}
}

// TestInspectOctKeyRefusesTheSet: an HMAC key in a fetched set is refused,
// and with it the whole set, as the module does: no key is usable.
func TestInspectOctKeyRefusesTheSet(t *testing.T) {
	srv, _ := mixedJWKSServer(t, true)
	in, err := Inspect(context.Background(), Options{URL: srv.JWKSURL()})
	if err != nil {
		t.Fatal(err)
	}
	checkReports(t, in, []wantKey{
		{"good", "EC", "the whole set is refused: JWKS mixes symmetric and asymmetric keys", false},
		{"weak", "RSA", "RSA key has 1024 bits", false},
		{"hmac", "oct", "symmetric (oct) keys are never taken from a JWKS", false},
		{"enc", "RSA", `use "enc" is not sig`, false},
		{"future", "PQC", "unsupported key: PQC (kty)", false},
	})
	if in.Usable != 0 || !strings.Contains(in.SetError, "mixes symmetric and asymmetric keys") {
		t.Fatalf("summary: %+v", in)
	}
}

func checkReports(t *testing.T, in *Inspection, want []wantKey) {
	t.Helper()
	if len(in.Keys) != len(want) {
		t.Fatalf("got %d key reports, want %d: %+v", len(in.Keys), len(want), in.Keys)
	}
	for i, w := range want {
		got := in.Keys[i]
		t.Run(w.kid, func(t *testing.T) {
			if got.Index != i || got.Kid != w.kid || got.Kty != w.kty || got.Accepted != w.accepted {
				t.Fatalf("report %+v, want kid %s kty %s accepted %v", got, w.kid, w.kty, w.accepted)
			}
			if !w.accepted && (got.Reason == "" || !strings.Contains(got.Reason, w.reason)) {
				t.Fatalf("reason %q, want it to contain %q", got.Reason, w.reason)
			}
			if w.accepted && (got.Reason != "" || got.Key != "EC P-256") {
				t.Fatalf("accepted key reported as %+v", got)
			}
		})
	}
}

func TestInspectDiscovery(t *testing.T) {
	keys, _ := mixedJWKSServer(t, false)
	var iss string
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]string{"issuer": iss, "jwks_uri": keys.JWKSURL()})
	})
	idp := httptest.NewServer(mux)
	defer idp.Close()
	iss = idp.URL

	in, err := Inspect(context.Background(), Options{Issuer: iss})
	if err != nil {
		t.Fatal(err)
	}
	if in.Issuer != iss || in.JWKSURL != keys.JWKSURL() || in.Usable != 1 || len(in.Keys) != 4 {
		t.Fatalf("discovered inspection: %+v", in)
	}

	// Another issuer in the metadata: refused, as by the cache.
	_, err = Inspect(context.Background(), Options{Issuer: iss + "/other"})
	if err == nil || !strings.Contains(err.Error(), "discovering jwks_uri") {
		t.Fatalf("discovery with the wrong issuer: %v", err)
	}
}

func TestInspectWholeSetRefused(t *testing.T) {
	for _, tc := range []struct {
		name, doc, setError, err string
	}{
		{"no usable key", `{"keys":[{"kty":"oct","kid":"h","alg":"HS256","k":"c2VjcmV0"}]}`, "no usable key", ""},
		{"not a JWKS", `{"issuer":"x"}`, "", `no "keys" member`},
		{"not JSON", `<html>`, "", "not a JWKS document"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(tc.doc)) }))
			defer srv.Close()
			in, err := Inspect(context.Background(), Options{URL: srv.URL})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || in.Usable != 0 || !strings.Contains(in.SetError, tc.setError) {
				t.Fatalf("inspection %+v, %v; want set error %q", in, err, tc.setError)
			}
		})
	}
}
