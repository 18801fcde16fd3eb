package jwks

import (
	"time"

	"github.com/mcptoken/caddy-mcp-token/internal/remote"
)

// Status is a cache's state for an operator's status page. It holds no
// secret: URLs are shown without userinfo or query values.
type Status struct {
	// Source is the JWKS URL, or "discovery from <issuer>".
	Source string `json:"source"`
	// JWKSURL is the URL discovery found, when it did.
	JWKSURL string `json:"jwks_url,omitempty"`
	// Ready says whether a key set is loaded; Kids lists its key ids (keys
	// without a kid are counted in Keys only).
	Ready bool     `json:"ready"`
	Kids  []string `json:"kids"`
	Keys  int      `json:"keys"`
	// Stale says the last fetch failed: the set served is the last good one.
	Stale bool `json:"stale"`
	// LastSuccess is when a fetch last succeeded (zero: never).
	LastSuccess time.Time `json:"last_success,omitzero"`
	// LastError is the last fetch failure, with its time.
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// FailureStreak is the number of failed fetches since the last success.
	FailureStreak int `json:"failure_streak"`
	// InFlight is 1 while a fetch is under way (fetches are shared).
	InFlight int `json:"in_flight"`
	// Stats are the counters.
	Stats Stats `json:"stats"`
}

// Status returns the cache's state.
func (c *Cache) Status() Status {
	st := Status{Source: c.display, Kids: []string{}, Stats: c.Stats()}
	c.mu.Lock()
	if c.opts.URL == "" && c.jwksURL != "" {
		st.JWKSURL = remote.Redact(c.jwksURL)
	}
	st.Stale = c.lastFailed
	if c.inflight {
		st.InFlight = 1
	}
	c.mu.Unlock()
	if set := c.set.Load(); set != nil {
		st.Ready, st.Kids, st.Keys = true, set.Kids(), set.Len()
	}
	s := c.streak.State()
	st.LastSuccess, st.LastError, st.LastErrorAt, st.FailureStreak = s.LastSuccess, s.LastError, s.LastErrorAt, s.Failures
	return st
}
