package verifiers_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

func selfSigned(t *testing.T, cn string) *x509.Certificate {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// TestCheckCertBinding: RFC 8705 §3 x5t#S256 against the client
// certificate.
func TestCheckCertBinding(t *testing.T) {
	client, other := selfSigned(t, "client"), selfSigned(t, "other")
	sum := sha256.Sum256(client.Raw)
	x5t := base64.RawURLEncoding.EncodeToString(sum[:])
	if got := verifiers.CertThumbprint(client); got != x5t {
		t.Fatalf("CertThumbprint = %s, want %s", got, x5t)
	}
	tests := []struct {
		name   string
		x5t    string
		peer   []*x509.Certificate
		detail string
	}{
		{"bound to the client certificate", x5t, []*x509.Certificate{client}, ""},
		{"leaf first, chain after", x5t, []*x509.Certificate{client, other}, ""},
		{"another certificate", x5t, []*x509.Certificate{other}, "not the client certificate"},
		{"bound certificate only in the chain", x5t, []*x509.Certificate{other, client}, "not the client certificate"},
		{"no client certificate", x5t, nil, "no client certificate"},
		{"token not bound", "", []*x509.Certificate{client}, "not certificate-bound"},
		{"thumbprint in padded base64", x5t + "=", []*x509.Certificate{client}, "not the client certificate"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := verifiers.CheckCertBinding(tc.x5t, tc.peer)
			if tc.detail == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, verifiers.ErrCertMismatch) || !strings.Contains(err.Error(), tc.detail) {
				t.Fatalf("err = %v, want ErrCertMismatch: %s", err, tc.detail)
			}
		})
	}
}
