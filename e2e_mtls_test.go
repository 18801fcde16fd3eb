package mcptoken

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// TestE2EMTLSBound: Caddy with tls client_auth and mtls_bound required: a
// token bound to the client certificate (cnf x5t#S256) passes over a
// connection presenting it; over a connection with another certificate,
// or an unbound token, it is refused and never reaches the backend.
func TestE2EMTLSBound(t *testing.T) {
	clientCert, clientKey := testCert(t, "mcp-client")
	otherCert, otherKey := testCert(t, "other-client")
	trust := filepath.Join(t.TempDir(), "clients.pem")
	var pems []byte
	for _, c := range []*x509.Certificate{clientCert, otherCert} {
		pems = append(pems, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(trust, pems, 0o600); err != nil {
		t.Fatal(err)
	}
	rec, backend := startBackend(t)
	t.Setenv("MCP_E2E_MTLS_SECRET", string(dpopSecret))
	serverCert, serverKey := writeServerCert(t)
	startCaddy(t, caddyGlobal+fmt.Sprintf(`
https://localhost:9443 {
	tls %[4]s %[5]s {
		client_auth {
			mode require_and_verify
			trust_pool file %[1]s
		}
	}
	mcp_token /mcp* {
		hmac_secret {env.MCP_E2E_MTLS_SECRET}
		authorization_servers https://as.example.com
		mtls_bound required
	}
	handle /mcp* {
		reverse_proxy %[3]s
	}
}
`, trust, "", backend, serverCert, serverKey), "caddyfile")
	remember(string(dpopSecret))
	clientFor := func(cert *x509.Certificate, key any) *http.Client {
		return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: &tls.Config{
			InsecureSkipVerify: true, // a throwaway server certificate; the client certificate is what is tested
			Certificates:       []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}},
		}}}
	}
	bound, plain := certToken(t, verifiers.CertThumbprint(clientCert)), certToken(t, "")
	remember(bound, plain)
	call := `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"bound by certificate"}}}`
	tests := []struct {
		name   string
		client *http.Client
		token  string
		status int
	}{
		{"bound token over its certificate", clientFor(clientCert, clientKey), bound, 200},
		{"bound token over another certificate", clientFor(otherCert, otherKey), bound, 401},
		{"unbound token (mtls_bound required)", clientFor(clientCert, clientKey), plain, 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := rec.Ran("")
			req, _ := http.NewRequest(http.MethodPost, "https://localhost:9443/mcp", strings.NewReader(call))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			req.Header.Set("Authorization", "Bearer "+tc.token)
			resp, err := tc.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			www := resp.Header.Get("WWW-Authenticate")
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d (%s), want %d", resp.StatusCode, www, tc.status)
			}
			ran := rec.Ran("") - before
			if tc.status == 200 && ran != 1 || tc.status != 200 && (ran != 0 || !strings.Contains(www, `error="invalid_token"`)) {
				t.Fatalf("backend ran %d tools; challenge %q", ran, www)
			}
		})
	}
}

// writeServerCert writes a self-signed certificate for localhost and its
// key, for Caddy's tls directive (no CA to wait for).
func writeServerCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "server-cert.pem"), filepath.Join(dir, "server-key.pem") // not *.key/*.crt: caddytest rewrites those paths
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
