package verifiers

import (
	"container/list"
	"context"
	"sync"
	"time"
)

// ReplayCache remembers DPoP proof identifiers until they expire, so that a
// proof is accepted once (RFC 9449 §11.1). Implementations that must agree
// across instances (a fleet) share a store; the memory one is per process.
type ReplayCache interface {
	// Seen records key until the given time and reports whether it was
	// already recorded and not yet expired. An error is a technical
	// failure: the caller refuses the request as unavailable, never as a
	// pass.
	Seen(ctx context.Context, key string, until time.Time) (bool, error)
}

// DefaultReplayEntries bounds a MemoryReplayCache made with max <= 0.
const DefaultReplayEntries = 100_000

// MemoryReplayCache is a bounded in-process ReplayCache: entries expire at
// their time, and when the cache is full the entry that expires first is
// dropped. Proof lifetimes are all the same window, so insertion order is
// expiry order up to clock noise; the cache keeps entries in a list ordered
// by insertion and evicts from its front.
//
// A full cache drops an entry that may not have expired yet: a proof
// presented again after DefaultReplayEntries newer proofs within one window
// would pass the replay check. Size the cache above the proofs one window
// sees (the iat window bounds how long an entry is needed).
type MemoryReplayCache struct {
	mu      sync.Mutex
	max     int
	now     func() time.Time
	order   *list.List // of *replayEntry, oldest first
	entries map[string]*list.Element
	evicted uint64
}

type replayEntry struct {
	key   string
	until time.Time
}

// NewMemoryReplayCache returns a memory cache holding at most max entries
// (DefaultReplayEntries when max <= 0); now is the clock (time.Now when nil).
func NewMemoryReplayCache(max int, now func() time.Time) *MemoryReplayCache {
	if max <= 0 {
		max = DefaultReplayEntries
	}
	if now == nil {
		now = time.Now
	}
	return &MemoryReplayCache{max: max, now: now, order: list.New(), entries: make(map[string]*list.Element)}
}

// Seen implements ReplayCache.
func (c *MemoryReplayCache) Seen(_ context.Context, key string, until time.Time) (bool, error) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(now)
	if el, ok := c.entries[key]; ok {
		e := el.Value.(*replayEntry)
		if now.Before(e.until) {
			return true, nil
		}
		c.order.Remove(el)
		delete(c.entries, key)
	}
	for c.order.Len() >= c.max {
		c.removeFront()
		c.evicted++
	}
	c.entries[key] = c.order.PushBack(&replayEntry{key: key, until: until})
	return false, nil
}

// expire drops expired entries from the front (a few per call: entries
// later in the list expire later, up to clock noise).
func (c *MemoryReplayCache) expire(now time.Time) {
	for el := c.order.Front(); el != nil; el = c.order.Front() {
		if now.Before(el.Value.(*replayEntry).until) {
			return
		}
		c.removeFront()
	}
}

func (c *MemoryReplayCache) removeFront() {
	el := c.order.Front()
	c.order.Remove(el)
	delete(c.entries, el.Value.(*replayEntry).key)
}

// Len returns the number of unexpired entries held.
func (c *MemoryReplayCache) Len() int {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.expire(now)
	return c.order.Len()
}

// Evicted returns how many unexpired entries were dropped because the
// cache was full.
func (c *MemoryReplayCache) Evicted() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.evicted
}
