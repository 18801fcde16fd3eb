package limiter

import (
	"context"
	"time"

	"go.uber.org/zap"

	"github.com/mcptoken/caddy-mcp-token/internal/streak"
)

// Store keeps failure windows that several gateway instances share, so
// failures at any of them add up to one limit. Keys are opaque strings;
// the store bounds each call's time.
type Store interface {
	// Failures returns the failures counted under key in its current
	// window and the time left in it (0, 0 when none is open).
	Failures(ctx context.Context, key string) (n int64, left time.Duration, err error)
	// AddFailure counts a failure under key, opening a window of the
	// given length when none is open, atomically; it returns the count
	// and the time left in the window.
	AddFailure(ctx context.Context, key string, window time.Duration) (n int64, left time.Duration, err error)
}

// Shared is a limiter whose windows live in a Store. Every failure is
// also counted in the instance's own memory (a Local), which answers alone
// while the store fails: the store never causes a refusal.
type Shared struct {
	local     *Local
	store     Store
	namespace string
	outage    *streak.Logger
}

// NewShared returns a limiter counting in st under keys namespace+address,
// with local as its memory and fallback; outage logs the store's failures
// once per streak (nil: not logged).
func NewShared(local *Local, st Store, namespace string, outage *streak.Logger) *Shared {
	return &Shared{local: local, store: st, namespace: namespace, outage: outage}
}

// Limited implements Counter: limited in memory, or in the store. A limit
// the store reports is remembered in memory until its window ends, so an
// address the fleet limits costs no store call while it stays limited.
func (s *Shared) Limited(addr string) (bool, time.Duration) {
	if limited, retry := s.local.Limited(addr); limited {
		return limited, retry
	}
	n, left, err := s.store.Failures(context.Background(), s.namespace+addr)
	if !s.ok(err) {
		return false, 0
	}
	if n >= int64(s.local.max) && left > 0 {
		s.local.lockFor(addr, left)
		return true, left
	}
	return false, 0
}

// Fail implements Counter: counted in memory and in the store.
func (s *Shared) Fail(addr string) {
	s.local.Fail(addr)
	n, left, err := s.store.AddFailure(context.Background(), s.namespace+addr, s.local.window)
	if s.ok(err) && n >= int64(s.local.max) && left > 0 {
		s.local.lockFor(addr, left)
	}
}

// ok records the outcome of a store call.
func (s *Shared) ok(err error) bool {
	if err != nil {
		s.outage.Failure(err, zap.String("answer", "failed-attempt limits counted in this instance's memory alone"))
		return false
	}
	s.outage.Success()
	return true
}

// Status implements Counter: the memory's counts, Store "redis".
func (s *Shared) Status() Status {
	st := s.local.Status()
	st.Store = "redis"
	return st
}

// Local returns the limiter's memory (tests set its clock).
func (s *Shared) Local() *Local { return s.local }

// Interface guard
var _ Counter = (*Shared)(nil)
