package jwks

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// Key implements verifiers.KeySource. It never waits for the network
// longer than MaxWait, and tells a bad token from a key source that cannot
// answer:
//   - no key set loaded yet: a request starts a fetch (at most one per
//     NoKeysRetry, shared) or joins the one in flight, and waits for it up
//     to MaxWait; otherwise ErrUnavailable.
//   - an unknown kid: a refetch if none was started within Throttle, or the
//     one in flight, waited for up to MaxWait. ErrUnknownKey only when a
//     successful, current key set lacks the kid (after the refetch, or
//     within the throttle window after a successful fetch); when the
//     refetch fails, is cancelled or outlasts MaxWait, or when the last
//     fetch failed (the set may be stale), ErrUnavailable.
//
// A token without a kid is judged by the current set alone (see Set.Key).
func (c *Cache) Key(ctx context.Context, alg *verifiers.Algorithm, kid string) (any, error) {
	set := c.set.Load()
	if set == nil {
		if !c.mayFetchNoKeys() {
			return nil, fmt.Errorf("%w: no JWKS loaded yet from %s%s", verifiers.ErrUnavailable, c.display, c.lastErrorSuffix())
		}
		if err := c.wait(ctx); err != nil {
			return nil, fmt.Errorf("%w: no JWKS loaded yet from %s: %v", verifiers.ErrUnavailable, c.display, err)
		}
		if set = c.set.Load(); set == nil {
			return nil, fmt.Errorf("%w: no JWKS loaded yet from %s", verifiers.ErrUnavailable, c.display)
		}
	}
	key, err := set.Key(ctx, alg, kid)
	if err == nil || kid == "" || !errors.Is(err, verifiers.ErrUnknownKey) {
		return key, err
	}
	switch c.mayRefetch() {
	case refetchNo:
		return nil, err
	case refetchStale:
		return nil, fmt.Errorf("%w: kid %q is not in the key set from %s, whose last fetch failed%s",
			verifiers.ErrUnavailable, kid, c.display, c.lastErrorSuffix())
	}
	if ferr := c.wait(ctx); ferr != nil {
		return nil, fmt.Errorf("%w: kid %q is unknown and the refetch from %s did not complete: %v",
			verifiers.ErrUnavailable, kid, c.display, ferr)
	}
	return c.set.Load().Key(ctx, alg, kid)
}

// CurrentKey returns the key the current key set gives for (alg, kid) by
// the rules of Key, without any fetch or wait; false when no key set is
// loaded or none fits.
func (c *Cache) CurrentKey(alg *verifiers.Algorithm, kid string) (any, bool) {
	set := c.set.Load()
	if set == nil {
		return nil, false
	}
	return set.CurrentKey(alg, kid)
}

// WaitReady returns nil once a key set is loaded. It starts a fetch at
// once (or joins the one in flight) and, while fetches fail, retries every
// NoKeysRetry until ctx ends; then the error names the source and the last
// fetch error. It returns at once when a key set is already loaded.
func (c *Cache) WaitReady(ctx context.Context) error {
	for c.set.Load() == nil {
		err := c.refresh(ctx)
		if err == nil {
			continue
		}
		if c.ctx.Err() != nil {
			return fmt.Errorf("%w: the key source for %s is closed", verifiers.ErrUnavailable, c.display)
		}
		if ctx.Err() == nil {
			c.mu.Lock()
			next := c.lastStart.Add(NoKeysRetry)
			c.mu.Unlock()
			t := time.NewTimer(time.Until(next))
			select {
			case <-t.C:
				continue
			case <-ctx.Done():
				t.Stop()
			}
		}
		last := c.lastErrorSuffix()
		if last == "" {
			last = ": the first fetch had not completed"
		}
		return fmt.Errorf("%w: no key set from %s before the deadline (%v)%s", verifiers.ErrUnavailable, c.display, ctx.Err(), last)
	}
	return nil
}

// wait starts or joins a fetch and waits for it at most MaxWait (or ctx).
// The fetch itself is detached: it goes on for everyone when a waiter
// stops waiting.
func (c *Cache) wait(ctx context.Context) error {
	wctx, cancel := context.WithTimeout(ctx, c.opts.MaxWait)
	defer cancel()
	err := c.refresh(wctx)
	if err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) && wctx.Err() != nil {
		return fmt.Errorf("still fetching after %s (max wait)", c.opts.MaxWait)
	}
	return err
}

// lastErrorSuffix is ": <last fetch error>", or "" when the last fetch
// succeeded or none completed.
func (c *Cache) lastErrorSuffix() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lastErr == nil {
		return ""
	}
	return ": " + c.lastErr.Error()
}

type refetch int

const (
	refetchNo    refetch = iota // throttled; the current set is fresh
	refetchStale                // throttled; the last fetch failed
	refetchYes                  // start or join a fetch
)

// mayRefetch decides on an unknown-kid refetch: join one in flight, start
// one if none was started within Throttle, or say why not.
func (c *Cache) mayRefetch() refetch {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inflight {
		return refetchYes
	}
	now := c.now()
	if !c.lastUnknown.IsZero() && now.Sub(c.lastUnknown) < c.opts.Throttle {
		if c.lastFailed {
			return refetchStale
		}
		return refetchNo
	}
	c.lastUnknown = now
	return refetchYes
}

// mayFetchNoKeys allows a request to start (or join) a fetch while no key
// set is loaded: at most one start per NoKeysRetry.
func (c *Cache) mayFetchNoKeys() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.inflight {
		return true
	}
	now := c.now()
	if !c.lastStart.IsZero() && now.Sub(c.lastStart) < NoKeysRetry {
		return false
	}
	c.lastStart = now
	return true
}
