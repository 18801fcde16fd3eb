// Package remote holds what every call to an authorization server's
// endpoints (JWKS, discovery, introspection) shares: a client that never
// follows redirects and bounded reading of answers.
package remote

import (
	"fmt"
	"io"
	"net/http"
	"time"
)

// NewClient returns an HTTP client with a total timeout per request that
// does not follow redirects (a redirect is answered as a failure by the
// caller, never followed to a host nobody configured).
func NewClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout: timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// ReadBody reads at most max bytes of resp's body; a longer body is an error.
func ReadBody(resp *http.Response, max int64) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(resp.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("reading the answer: %w", err)
	}
	if int64(len(body)) > max {
		return nil, fmt.Errorf("answer larger than %d bytes", max)
	}
	return body, nil
}

// Drain discards up to 4 KiB of an unwanted body so the connection can be
// reused.
func Drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
}
