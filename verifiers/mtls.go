package verifiers

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"fmt"
)

// CertThumbprint is the x5t#S256 of a certificate: base64url(SHA-256 of
// its DER encoding), as RFC 8705 §3.1 binds a token to it.
func CertThumbprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return base64.RawURLEncoding.EncodeToString(sum[:])
}

// CheckCertBinding checks that a certificate-bound token (cnf x5t#S256,
// RFC 8705 §3) is presented over a connection whose client certificate
// (the first of peer, the leaf) is the one it is bound to. Every failure
// wraps ErrCertMismatch.
func CheckCertBinding(x5t string, peer []*x509.Certificate) error {
	if x5t == "" {
		return fmt.Errorf("%w: token is not certificate-bound", ErrCertMismatch)
	}
	if len(peer) == 0 || peer[0] == nil {
		return fmt.Errorf("%w: no client certificate", ErrCertMismatch)
	}
	if subtle.ConstantTimeCompare([]byte(CertThumbprint(peer[0])), []byte(x5t)) != 1 {
		return fmt.Errorf("%w: x5t#S256 is not the client certificate's", ErrCertMismatch)
	}
	return nil
}
