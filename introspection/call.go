package introspection

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/mcptoken/caddy-mcp-token/internal/remote"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// call is one introspection call, shared by every request waiting for the
// same token. It is cancelled when its last waiter has gone.
type call struct {
	done    chan struct{}
	e       entry
	err     error
	waiters int // guarded by Client.mu
	cancel  context.CancelFunc
}

// lookup returns the (possibly cached) introspection result for token.
func (c *Client) lookup(ctx context.Context, token string) (entry, error) {
	if len(token) > verifiers.MaxTokenSize {
		return entry{}, fmt.Errorf("%w: token longer than %d bytes", verifiers.ErrMalformed, verifiers.MaxTokenSize)
	}
	key := sha256.Sum256([]byte(token))
	if e, ok := c.cache.Get(key); ok && c.opts.Now().Before(e.expires) {
		c.hits.Add(1)
		return e, nil
	}
	cl, err := c.join(key, token)
	if err != nil {
		return entry{}, err
	}
	select {
	case <-cl.done:
		return cl.e, cl.err
	case <-ctx.Done():
		c.leave(key, cl)
		return entry{}, fmt.Errorf("%w: gave up waiting for %s: %v", verifiers.ErrUnavailable, c.display, ctx.Err())
	}
}

// join waits on the call in flight for key, or starts one if fewer than
// MaxInFlight are outstanding.
func (c *Client) join(key [sha256.Size]byte, token string) (*call, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if cl, ok := c.flights[key]; ok {
		cl.waiters++
		return cl, nil
	}
	if c.inFlight >= c.opts.MaxInFlight {
		c.rejected.Add(1)
		return nil, fmt.Errorf("%w: %d calls to %s outstanding (max_in_flight)", verifiers.ErrUnavailable, c.inFlight, c.display)
	}
	// Detached from the request: callers sharing this call must not be
	// failed by one of them going away; it ends with its last waiter, or
	// at the timeout.
	cctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
	cl := &call{done: make(chan struct{}), waiters: 1, cancel: cancel}
	c.flights[key] = cl
	c.inFlight++
	go c.run(cctx, key, token, cl)
	return cl, nil
}

// leave drops a waiter that went away; the last one cancels the call and
// takes it out of the flights, so later requests start a fresh one.
func (c *Client) leave(key [sha256.Size]byte, cl *call) {
	c.mu.Lock()
	defer c.mu.Unlock()
	cl.waiters--
	if cl.waiters > 0 {
		return
	}
	if c.flights[key] == cl {
		delete(c.flights, key)
	}
	cl.cancel()
}

// run makes the call (past the shared cache, when there is one) and
// publishes its result.
func (c *Client) run(ctx context.Context, key [sha256.Size]byte, token string, cl *call) {
	var e entry
	var err error
	var sk [sha256.Size]byte
	fromShared := false
	if c.opts.Shared != nil {
		sk = c.sharedKey(token)
		e, fromShared = c.loadShared(ctx, sk)
	}
	if fromShared {
		c.sharedHits.Add(1)
	} else {
		e, err = c.introspect(ctx, token)
	}
	abandoned := err != nil && errors.Is(ctx.Err(), context.Canceled)
	switch {
	case abandoned:
		// Nobody waits: this says nothing about the endpoint.
		c.abandoned.Add(1)
	case err != nil:
		c.failures.Add(1)
		c.streak.Failure(err, zap.String("endpoint", c.display))
	case fromShared:
		c.cache.Add(key, e)
	default:
		c.streak.Success(zap.String("endpoint", c.display))
		if !c.opts.NoCache {
			c.cache.Add(key, e)
		}
	}
	cl.cancel()
	c.mu.Lock()
	if c.flights[key] == cl {
		delete(c.flights, key)
	}
	c.inFlight--
	cl.e, cl.err = e, err
	c.mu.Unlock()
	close(cl.done)
	if c.opts.Shared != nil && err == nil && !fromShared {
		// After the waiters have their answer: none waits on the store.
		c.storeShared(context.Background(), sk, e)
	}
}

// introspect calls the endpoint. Any answer that is not a 2xx JSON object
// with a boolean "active" is a technical failure (ErrUnavailable).
func (c *Client) introspect(ctx context.Context, token string) (entry, error) {
	c.calls.Add(1)
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	if c.opts.AuthMethod == AuthPost {
		form.Set("client_id", c.opts.ClientID)
		form.Set("client_secret", c.opts.ClientSecret)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.opts.URL, strings.NewReader(form.Encode()))
	if err != nil {
		return entry{}, fmt.Errorf("%w: %v", verifiers.ErrUnavailable, remote.Cause(err))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if c.opts.AuthMethod == AuthBasic {
		// RFC 6749 §2.3.1: form-encode the id and secret, then Basic.
		req.SetBasicAuth(url.QueryEscape(c.opts.ClientID), url.QueryEscape(c.opts.ClientSecret))
	}
	resp, err := c.opts.Client.Do(req)
	if err != nil {
		return entry{}, fmt.Errorf("%w: calling %s: %v", verifiers.ErrUnavailable, c.display, remote.Cause(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		remote.Drain(resp)
		return entry{}, fmt.Errorf("%w: %s answered status %d", verifiers.ErrUnavailable, c.display, resp.StatusCode)
	}
	body, err := remote.ReadBody(resp, c.opts.MaxBytes)
	if err != nil {
		return entry{}, fmt.Errorf("%w: %s: %v", verifiers.ErrUnavailable, c.display, err)
	}
	var claims map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil || claims == nil {
		return entry{}, fmt.Errorf("%w: the answer of %s is not a JSON object", verifiers.ErrUnavailable, c.display)
	}
	active, ok := claims["active"].(bool)
	if !ok {
		return entry{}, fmt.Errorf("%w: the answer of %s has no boolean \"active\"", verifiers.ErrUnavailable, c.display)
	}
	now := c.opts.Now()
	if !active {
		return entry{active: false, answered: now, expires: now.Add(c.opts.NegativeCacheTTL)}, nil
	}
	tok := verifiers.FromClaims(claims)
	expires := now.Add(c.opts.CacheTTL)
	if !tok.ExpiresAt.IsZero() && tok.ExpiresAt.Before(expires) {
		expires = tok.ExpiresAt
	}
	return entry{tok: tok, active: true, answered: now, expires: expires}, nil
}

// Status is a client's state for an operator's status page. It holds no
// secret and no token.
type Status struct {
	// URL is the endpoint, without userinfo or query values.
	URL string `json:"url"`
	// InFlight is the number of calls outstanding; MaxInFlight the bound.
	InFlight    int `json:"in_flight"`
	MaxInFlight int `json:"max_in_flight"`
	// CacheLen is the number of cached results.
	CacheLen int `json:"cache_len"`
	// LastSuccess is when a call last got a valid answer (zero: never).
	LastSuccess time.Time `json:"last_success,omitzero"`
	// LastError is the last technical failure, with its time.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// FailureStreak is the number of failed calls since the last success.
	FailureStreak int `json:"failure_streak"`
	// Stats are the counters.
	Stats Stats `json:"stats"`
}

// Status returns the client's state.
func (c *Client) Status() Status {
	c.mu.Lock()
	inFlight := c.inFlight
	c.mu.Unlock()
	st := c.streak.State()
	return Status{URL: c.display, InFlight: inFlight, MaxInFlight: c.opts.MaxInFlight, CacheLen: c.cache.Len(),
		LastSuccess: st.LastSuccess, LastError: st.LastError, LastErrorAt: st.LastErrorAt,
		FailureStreak: st.Failures, Stats: c.Stats()}
}
