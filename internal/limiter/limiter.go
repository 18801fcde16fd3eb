// Package limiter counts failed authentication attempts per client address
// in fixed windows, in bounded memory.
package limiter

import (
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

type window struct {
	start    time.Time
	failures int
}

// Limiter refuses an address that failed MaxAttempts times within the
// window that began at its first failure, until that window ends. It
// tracks at most a fixed number of addresses, forgetting the least
// recently seen first, so a flood of distinct addresses cannot grow it.
type Limiter struct {
	max    int
	window time.Duration
	addrs  int
	mu     sync.Mutex
	lru    *simplelru.LRU[string, window]
	now    func() time.Time
}

// New returns a limiter; zero arguments mean the defaults.
func New(maxAttempts int, win time.Duration, maxAddresses int) *Limiter {
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
	return &Limiter{max: maxAttempts, window: win, addrs: maxAddresses, lru: lru, now: time.Now}
}

// SetClock replaces the clock (tests).
func (l *Limiter) SetClock(now func() time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.now = now
}

// Limited reports whether addr must wait, and for how long. It records
// nothing.
func (l *Limiter) Limited(addr string) (bool, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	w, ok := l.lru.Peek(addr)
	if !ok {
		return false, 0
	}
	end := w.start.Add(l.window)
	now := l.now()
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
func (l *Limiter) Fail(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	w, ok := l.lru.Get(addr)
	if !ok || !now.Before(w.start.Add(l.window)) {
		w = window{start: now}
	}
	w.failures++
	l.lru.Add(addr, w)
}

// Len is the number of addresses tracked.
func (l *Limiter) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}

// Status is a limiter's state for an operator's status page: counts and
// settings, never an address.
type Status struct {
	// Tracked is the number of addresses with a recorded failure;
	// Limited those of them refused until their window ends.
	Tracked int `json:"tracked"`
	Limited int `json:"limited"`
	// The settings.
	MaxAttempts  int    `json:"max_attempts"`
	Window       string `json:"window"`
	MaxAddresses int    `json:"max_addresses"`
}

// Status counts the tracked and limited addresses (one pass over at most
// MaxAddresses entries).
func (l *Limiter) Status() Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := Status{Tracked: l.lru.Len(), MaxAttempts: l.max, Window: l.window.String(), MaxAddresses: l.addrs}
	now := l.now()
	for _, w := range l.lru.Values() {
		if w.failures >= l.max && now.Before(w.start.Add(l.window)) {
			st.Limited++
		}
	}
	return st
}
