// Package remote holds what every call to an authorization server's
// endpoints (JWKS, discovery, introspection) shares: a client with its own
// bounded connection pool that never follows redirects, bounded reading of
// answers, and URLs fit for logs.
package remote

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"
)

// IdleConnTimeout is how long an idle connection to an endpoint is kept.
const IdleConnTimeout = 90 * time.Second

// NewTransport returns a transport of its own (never shared with another
// endpoint or with http.DefaultTransport) holding at most maxConns
// connections per host, active or idle, and keeping up to maxConns of them
// idle, so a busy endpoint reuses connections instead of opening one per
// call. maxConns < 1 means 1.
func NewTransport(maxConns int) *http.Transport {
	maxConns = max(maxConns, 1)
	return &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxConnsPerHost:       maxConns,
		MaxIdleConnsPerHost:   maxConns,
		MaxIdleConns:          2 * maxConns, // discovery and JWKS may sit on two hosts
		IdleConnTimeout:       IdleConnTimeout,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// NewClient returns an HTTP client on a new transport (see NewTransport)
// with a total timeout per request, that does not follow redirects (a
// redirect is answered as a failure by the caller, never followed to a host
// nobody configured). Call its CloseIdleConnections when it is no longer
// used.
func NewClient(timeout time.Duration, maxConns int) *http.Client {
	return &http.Client{
		Timeout:   timeout,
		Transport: NewTransport(maxConns),
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

// Redact returns u fit for logs and status pages: no userinfo, and the
// values of query parameters replaced (a URL resolved from a placeholder
// may carry a key there). A URL that does not parse is replaced whole.
func Redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	p.User = nil
	if p.RawQuery != "" {
		q := p.Query()
		for k := range q {
			q[k] = []string{"REDACTED"}
		}
		p.RawQuery = q.Encode()
	}
	p.Fragment, p.RawFragment = "", ""
	return p.String()
}

// Cause returns the reason inside an *url.Error (the client's error repeats
// the method and the full URL, which callers name themselves, redacted).
func Cause(err error) error {
	if ue, ok := err.(*url.Error); ok {
		return ue.Err
	}
	return err
}
