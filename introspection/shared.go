package introspection

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"time"

	"go.uber.org/zap"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// SharedCache is a cache that several gateway instances share (the
// fleet's store), so a token introspected by one is not introspected
// again by the others. Keys are hashes: no token is ever a key or a
// value. Values expire after ttl.
type SharedCache interface {
	Load(ctx context.Context, key [sha256.Size]byte) (value []byte, ok bool, err error)
	Store(ctx context.Context, key [sha256.Size]byte, value []byte, ttl time.Duration) error
}

// sharedEntry is an entry as the shared cache holds it: the answer's
// claims (the token is never among them), when the endpoint gave it and
// the writer's expiry. A reader keeps it no longer than its own TTL from
// the endpoint's answer: instances with a shorter cache_ttl share the
// entry without inheriting the writer's longer one.
type sharedEntry struct {
	Active   bool            `json:"active"`
	Answered int64           `json:"answered"` // Unix milliseconds
	Expires  int64           `json:"expires"`  // Unix milliseconds
	Claims   json.RawMessage `json:"claims,omitempty"`
}

// sharedKey names a token's answer in the shared cache: the SHA-256 of
// the endpoint, the client id and the token, so two endpoints, or two
// clients of one endpoint (whose answers may differ), never share one.
func (c *Client) sharedKey(token string) [sha256.Size]byte {
	h := sha256.New()
	for _, part := range []string{c.opts.URL, c.opts.ClientID, token} {
		h.Write([]byte(part))
		h.Write([]byte{0})
	}
	var k [sha256.Size]byte
	h.Sum(k[:0])
	return k
}

// loadShared looks the token up in the shared cache; a failure or a
// malformed value is a miss (the endpoint answers). The entry expires at
// the earliest of the writer's expiry, this client's TTL counted from the
// endpoint's answer (and from now, should the writer's clock be ahead),
// and the token's exp.
func (c *Client) loadShared(ctx context.Context, key [sha256.Size]byte) (entry, bool) {
	raw, ok, err := c.opts.Shared.Load(ctx, key)
	if err != nil && errors.Is(ctx.Err(), context.Canceled) {
		// Every waiter left and the flight was cancelled: this says
		// nothing about the store.
		return entry{}, false
	}
	c.sharedOutcome(err)
	if err != nil || !ok {
		return entry{}, false
	}
	var se sharedEntry
	if json.Unmarshal(raw, &se) != nil || se.Answered <= 0 {
		return entry{}, false
	}
	ttl := c.opts.NegativeCacheTTL
	if se.Active {
		ttl = c.opts.CacheTTL
	}
	now := c.opts.Now()
	answered := time.UnixMilli(se.Answered)
	e := entry{active: se.Active, answered: answered,
		expires: earliest(time.UnixMilli(se.Expires), answered.Add(ttl), now.Add(ttl))}
	if se.Active {
		var claims map[string]any
		dec := json.NewDecoder(bytes.NewReader(se.Claims))
		dec.UseNumber()
		if dec.Decode(&claims) != nil || claims == nil {
			return entry{}, false
		}
		e.tok = verifiers.FromClaims(claims)
		if !e.tok.ExpiresAt.IsZero() {
			e.expires = earliest(e.expires, e.tok.ExpiresAt)
		}
	}
	if !now.Before(e.expires) {
		return entry{}, false
	}
	return e, true
}

// earliest returns the earliest of ts.
func earliest(t time.Time, ts ...time.Time) time.Time {
	for _, u := range ts {
		if u.Before(t) {
			t = u
		}
	}
	return t
}

// storeShared puts a fresh answer in the shared cache until the local
// entry expires.
func (c *Client) storeShared(ctx context.Context, key [sha256.Size]byte, e entry) {
	ttl := e.expires.Sub(c.opts.Now())
	if ttl < time.Millisecond {
		return
	}
	se := sharedEntry{Active: e.active, Answered: e.answered.UnixMilli(), Expires: e.expires.UnixMilli()}
	if e.active {
		claims, err := json.Marshal(e.tok.Claims)
		if err != nil {
			return
		}
		se.Claims = claims
	}
	raw, err := json.Marshal(se)
	if err != nil {
		return
	}
	c.sharedOutcome(c.opts.Shared.Store(ctx, key, raw, ttl))
}

// sharedOutcome logs the shared cache's failures once per streak.
func (c *Client) sharedOutcome(err error) {
	if err != nil {
		c.sharedStreak.Failure(err, zap.String("answer", "the local cache and the endpoint answer"))
	} else {
		c.sharedStreak.Success()
	}
}
