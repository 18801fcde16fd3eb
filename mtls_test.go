package mcptoken

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/golang-jwt/jwt/v5"
	"go.uber.org/zap"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// testCert is a self-signed certificate with its key.
func testCert(t *testing.T, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, k
}

// certToken is an HS256 token, bound to x5t when it is not empty.
func certToken(t *testing.T, x5t string) string {
	t.Helper()
	claims := jwt.MapClaims{"sub": "s1", "client_id": "c1", "exp": time.Now().Add(time.Hour).Unix()}
	if x5t != "" {
		claims["cnf"] = map[string]any{"x5t#S256": x5t}
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(dpopSecret)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestMTLSBoundGate: the certificate-binding part of step 5, by mode.
func TestMTLSBoundGate(t *testing.T) {
	client, _ := testCert(t, "client")
	other, _ := testCert(t, "other")
	bound, plain := certToken(t, verifiers.CertThumbprint(client)), certToken(t, "")
	tests := []struct {
		name, mode, token string
		peer              *x509.Certificate
		plainHTTP         bool
		want              string // "" accepted, else the error's text
	}{
		{"bound token, its certificate", "allowed", bound, client, false, ""},
		{"bound token, another certificate", "allowed", bound, other, false, "not the client certificate"},
		{"bound token, no certificate", "allowed", bound, nil, false, "no client certificate"},
		{"bound token, plain HTTP", "allowed", bound, nil, true, "not a TLS connection"},
		{"unbound token in allowed mode", "allowed", plain, nil, false, ""},
		{"default mode checks bound tokens", "", bound, other, false, "not the client certificate"},
		{"unbound token in required mode", "required", plain, client, false, "not certificate-bound"},
		{"bound token in required mode", "required", bound, client, false, ""},
		{"bound token with mtls_bound off", "off", bound, client, false, "mtls_bound is off"},
		{"unbound token with mtls_bound off", "off", plain, nil, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			v, err := verifiers.NewJWT(verifiers.JWTConfig{Keys: verifiers.NewStaticKey(dpopSecret), Algorithms: []string{"HS256"}})
			if err != nil {
				t.Fatal(err)
			}
			c := &core{verifier: v, logger: zap.NewNop(), maxBody: DefaultMaxBody, noMetadata: true}
			t.Cleanup(func() { _ = c.release() })
			if err := c.provisionDPoP(&Config{MTLSBound: tc.mode}, nil); err != nil {
				t.Fatal(err)
			}
			r := newRequest("Bearer " + tc.token)
			if !tc.plainHTTP {
				r.TLS = &tls.ConnectionState{}
				if tc.peer != nil {
					r.TLS.PeerCertificates = []*x509.Certificate{tc.peer}
				}
			}
			out := c.authenticate(r, false)
			if tc.want == "" {
				if out.err != nil {
					t.Fatalf("refused: %v", out.err)
				}
				return
			}
			if out.err == nil || !strings.Contains(out.err.Error(), tc.want) || verifiers.Classify(out.err).Reason != "cert_mismatch" {
				t.Fatalf("err = %v, want cert_mismatch: %s", out.err, tc.want)
			}
		})
	}
}

// TestMTLSBoundCaddyfile: mtls_bound parsed and checked at adapt time.
func TestMTLSBoundCaddyfile(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"required", "required", ""},
		{"off", "off", ""},
		{"sometimes", "", `"sometimes"`},
	} {
		t.Run(tc.in, func(t *testing.T) {
			var c Config
			err := c.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mcp_token {\n hmac_secret " + string(dpopSecret) + "\n mtls_bound " + tc.in + "\n}"))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %s", err, tc.err)
				}
				return
			}
			if err != nil || c.MTLSBound != tc.want {
				t.Fatalf("mtls_bound = %q, %v", c.MTLSBound, err)
			}
		})
	}
}
