// Package limiter counts failed authentication attempts per client address
// in fixed windows: in bounded memory (Local), or in a store several
// gateway instances share (Shared), with memory as its fallback.
package limiter

import (
	"net/netip"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/simplelru"
)

// Defaults.
const (
	DefaultMaxAttempts  = 10
	DefaultWindow       = 60 * time.Second
	DefaultMaxAddresses = 10000
)

// Counter is the request path's view of a limiter.
type Counter interface {
	// Limited reports whether addr must wait, and for how long. It
	// records nothing.
	Limited(addr string) (bool, time.Duration)
	// Fail records a failed attempt by addr.
	Fail(addr string)
	// Status is the limiter's state for an operator's status page.
	Status() Status
}

type window struct {
	start    time.Time
	failures int
}

// Local refuses an address that failed MaxAttempts times within the
// window that began at its first failure, until that window ends.
//
// Memory is bounded twice. Addresses that are counting but not locked
// live in an LRU of MaxAddresses entries, so a flood of distinct addresses
// forgets the least recently seen first. An address that reaches the
// limit moves to a separate set of locked addresses (also of at most
// MaxAddresses entries) that nothing evicts: a lock only ends with its
// window, so flooding the LRU with made-up addresses cannot free a locked
// address early. When the locked set is full of unexpired locks, a newly
// locked address stays in the LRU (still refused while it is there).
type Local struct {
	max    int
	cap    int
	window time.Duration
	mu     sync.Mutex
	lru    *simplelru.LRU[string, window]
	locked map[string]time.Time // address → end of its lock
	// nextUnlock is the earliest end in locked, so a full set is only
	// scanned when a lock can have ended.
	nextUnlock time.Time
	now        func() time.Time
}

// New returns a limiter; zero arguments mean the defaults.
func New(maxAttempts int, win time.Duration, maxAddresses int) *Local {
	if maxAttempts <= 0 {
		maxAttempts = DefaultMaxAttempts
	}
	if win <= 0 {
		win = DefaultWindow
	}
	if maxAddresses <= 0 {
		maxAddresses = DefaultMaxAddresses
	}
	lru, _ := simplelru.NewLRU[string, window](maxAddresses, nil)
	return &Local{max: maxAttempts, cap: maxAddresses, window: win, lru: lru,
		locked: map[string]time.Time{}, now: time.Now}
}

// Key is the limiter's key for a client IP: an IPv4 address (IPv4-mapped
// IPv6 unmapped) as is, an IPv6 address by its /64, the smallest block a
// client is usually given, so one client cannot spread its failures over
// an unlimited supply of addresses. Anything else is used as is.
func Key(ip string) string {
	addr, err := netip.ParseAddr(ip)
	if err != nil {
		return ip
	}
	addr = addr.WithZone("").Unmap()
	if addr.Is4() {
		return addr.String()
	}
	p, _ := addr.Prefix(64)
	return p.String()
}

// SetClock replaces the clock (tests).
func (l *Local) SetClock(now func() time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.now = now
}

// Limited reports whether addr must wait, and for how long. It records
// nothing.
func (l *Local) Limited(addr string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if until, ok := l.locked[addr]; ok {
		if now.Before(until) {
			return true, until.Sub(now)
		}
		delete(l.locked, addr)
	}
	w, ok := l.lru.Peek(addr)
	if !ok {
		return false, 0
	}
	end := w.start.Add(l.window)
	if !now.Before(end) {
		l.lru.Remove(addr)
		return false, 0
	}
	if w.failures >= l.max {
		return true, end.Sub(now)
	}
	return false, 0
}

// Fail records a failed attempt by addr.
func (l *Local) Fail(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if until, ok := l.locked[addr]; ok && now.Before(until) {
		return // locked already; its window does not move
	}
	w, ok := l.lru.Get(addr)
	if !ok || !now.Before(w.start.Add(l.window)) {
		w = window{start: now}
	}
	w.failures++
	if w.failures >= l.max && l.lock(addr, w.start.Add(l.window), now) {
		l.lru.Remove(addr)
		return
	}
	l.lru.Add(addr, w)
}

// lockFor refuses addr for d from now on: a limit reached in the fleet's
// count, remembered so the next requests from addr cost no store call.
func (l *Local) lockFor(addr string, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if until, ok := l.locked[addr]; ok && !until.Before(now.Add(d)) {
		return
	}
	if l.lock(addr, now.Add(d), now) {
		l.lru.Remove(addr)
	}
}

// lock puts addr in the locked set until until; false when the set is
// full of unexpired locks.
func (l *Local) lock(addr string, until, now time.Time) bool {
	if len(l.locked) >= l.cap {
		if now.Before(l.nextUnlock) {
			return false
		}
		l.nextUnlock = time.Time{}
		for a, u := range l.locked {
			if !now.Before(u) {
				delete(l.locked, a)
			} else if l.nextUnlock.IsZero() || u.Before(l.nextUnlock) {
				l.nextUnlock = u
			}
		}
		if len(l.locked) >= l.cap {
			return false
		}
	}
	l.locked[addr] = until
	if l.nextUnlock.IsZero() || until.Before(l.nextUnlock) {
		l.nextUnlock = until
	}
	return true
}

// Len is the number of addresses tracked, counting and locked.
func (l *Local) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len() + len(l.locked)
}

// Status is a limiter's state for an operator's status page: counts and
// settings, never an address.
type Status struct {
	// Tracked is the number of addresses with a failure in their current
	// window; Limited those of them refused until their window ends.
	Tracked int `json:"tracked"`
	Limited int `json:"limited"`
	// The settings.
	MaxAttempts  int    `json:"max_attempts"`
	Window       string `json:"window"`
	MaxAddresses int    `json:"max_addresses"`
	// Store is where the windows are shared: empty for this instance's
	// memory alone, "redis" for the fleet's store (the counts above are
	// then this instance's memory, its fallback).
	Store string `json:"store,omitempty"`
}

// Status counts the tracked and limited addresses (one pass over at most
// twice MaxAddresses entries).
func (l *Local) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := Status{MaxAttempts: l.max, Window: l.window.String(), MaxAddresses: l.cap}
	now := l.now()
	for _, until := range l.locked {
		if now.Before(until) {
			st.Tracked++
			st.Limited++
		}
	}
	for _, w := range l.lru.Values() {
		if !now.Before(w.start.Add(l.window)) {
			continue // expired, not yet swept
		}
		st.Tracked++
		if w.failures >= l.max {
			st.Limited++
		}
	}
	return st
}

// Interface guard
var _ Counter = (*Local)(nil)
