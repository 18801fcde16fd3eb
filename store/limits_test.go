package store_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcptoken/caddy-mcp-token/internal/limiter"
	"github.com/mcptoken/caddy-mcp-token/internal/streak"
	"github.com/mcptoken/caddy-mcp-token/internal/testpeers"
)

// TestRedisFailedAttemptWindows: a window opens at the first failure,
// does not move with later ones, and ends at its time.
func TestRedisFailedAttemptWindows(t *testing.T) {
	url, _ := startRedis(t)
	s := newRedis(t, url, nil)
	ctx := context.Background()
	const win = 400 * time.Millisecond
	if n, left, err := s.Failures(ctx, "ns:10.0.0.1"); err != nil || n != 0 || left != 0 {
		t.Fatalf("no failure yet: %d %s %v", n, left, err)
	}
	var firstLeft time.Duration
	for i := int64(1); i <= 3; i++ {
		n, left, err := s.AddFailure(ctx, "ns:10.0.0.1", win)
		if err != nil || n != i || left <= 0 || left > win {
			t.Fatalf("failure %d: %d %s %v", i, n, left, err)
		}
		if i == 1 {
			firstLeft = left
		} else if left > firstLeft {
			t.Fatalf("failure %d moved the window: %s left, %s after the first", i, left, firstLeft)
		}
	}
	if n, left, err := s.Failures(ctx, "ns:10.0.0.1"); err != nil || n != 3 || left <= 0 || left > win {
		t.Fatalf("after 3 failures: %d %s %v", n, left, err)
	}
	if n, _, err := s.Failures(ctx, "ns:10.0.0.2"); err != nil || n != 0 {
		t.Fatalf("another address: %d %v", n, err)
	}
	time.Sleep(win + 100*time.Millisecond)
	if n, left, err := s.Failures(ctx, "ns:10.0.0.1"); err != nil || n != 0 || left != 0 {
		t.Fatalf("after the window: %d %s %v", n, left, err)
	}
	if n, _, err := s.AddFailure(ctx, "ns:10.0.0.1", win); err != nil || n != 1 {
		t.Fatalf("a new window: %d %v", n, err)
	}
}

// TestSharedLimiterAcrossInstances: two instances (each its own memory
// and Redis client) with a limit of 4: 2 failures at A and 2 at B reach
// the limit at both.
func TestSharedLimiterAcrossInstances(t *testing.T) {
	url, _ := startRedis(t)
	instance := func() *limiter.Shared {
		return limiter.NewShared(limiter.New(4, time.Minute, 0), newRedis(t, url, nil), "cfg1:", nil)
	}
	a, b := instance(), instance()
	a.Fail("192.0.2.1")
	a.Fail("192.0.2.1")
	b.Fail("192.0.2.1")
	for name, l := range map[string]*limiter.Shared{"A": a, "B": b} {
		if limited, _ := l.Limited("192.0.2.1"); limited {
			t.Fatalf("3 failures: limited at %s", name)
		}
	}
	b.Fail("192.0.2.1")
	for name, l := range map[string]*limiter.Shared{"A": a, "B": b} {
		limited, retry := l.Limited("192.0.2.1")
		if !limited || retry <= 0 || retry > time.Minute {
			t.Fatalf("4 failures (2 at A, 2 at B): at %s limited %v, retry %s", name, limited, retry)
		}
		if limited, _ := l.Limited("192.0.2.2"); limited {
			t.Fatalf("another address limited at %s", name)
		}
		// The fleet's limit is remembered in memory: no store call needed.
		if limited, _ := l.Local().Limited("192.0.2.1"); !limited {
			t.Fatalf("the limit is not remembered at %s", name)
		}
	}
	// Another configuration (namespace) counts apart.
	other := limiter.NewShared(limiter.New(4, time.Minute, 0), newRedis(t, url, nil), "cfg2:", nil)
	if limited, _ := other.Limited("192.0.2.1"); limited {
		t.Fatal("another configuration's limiter shares the count")
	}
	if st := a.Status(); st.Store != "redis" || st.Tracked != 1 {
		t.Fatalf("status %+v", st)
	}
}

// TestSharedFallsBackToMemory: with Redis down, each instance counts in
// its own memory (a refusal only by its own count, never by the outage),
// with one WARN for the streak and an INFO when Redis answers again.
func TestSharedFallsBackToMemory(t *testing.T) {
	srv := testpeers.StartRedisServer(t)
	core, logs := observer.New(zapcore.InfoLevel)
	outage := streak.New(zap.New(core), "redis limits", nil)
	a := limiter.NewShared(limiter.New(3, time.Minute, 0), newRedis(t, srv.URL, nil), "cfg:", outage)
	b := limiter.NewShared(limiter.New(3, time.Minute, 0), newRedis(t, srv.URL, nil), "cfg:", nil)
	a.Fail("198.51.100.7") // counted in Redis and in A's memory
	srv.Stop()
	start := time.Now()
	if limited, _ := a.Limited("203.0.113.9"); limited {
		t.Fatal("Redis down: a fresh address refused")
	}
	a.Fail("198.51.100.7")
	if limited, _ := a.Limited("198.51.100.7"); limited {
		t.Fatal("2 failures in memory, limit 3: refused")
	}
	a.Fail("198.51.100.7")
	if limited, retry := a.Limited("198.51.100.7"); !limited || retry <= 0 {
		t.Fatal("Redis down: 3 failures in A's memory did not limit")
	}
	if limited, _ := b.Limited("198.51.100.7"); limited {
		t.Fatal("Redis down: B refused an address it never saw fail")
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("calls with Redis down took %s", took)
	}
	if n := logs.FilterLevelExact(zapcore.WarnLevel).Len(); n != 1 {
		t.Fatalf("%d WARN lines for one outage, want 1: %v", n, logs.All())
	}
	srv.Start(t)
	deadline := time.Now().Add(5 * time.Second)
	for logs.FilterMessage("redis limits recovered").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no recovery logged: %v", logs.All())
		}
		a.Limited("203.0.113.9")
		time.Sleep(50 * time.Millisecond)
	}
	// Redis came back empty (no persistence): the count starts again there.
	a.Fail("203.0.113.9")
	if n, _, err := newRedis(t, srv.URL, nil).Failures(context.Background(), "cfg:203.0.113.9"); err != nil || n != 1 {
		t.Fatalf("after recovery: %d %v", n, err)
	}
}

// BenchmarkFailedAttempt: one failed attempt on the request path
// (Limited, then Fail), in memory vs in Redis (loopback).
func BenchmarkFailedAttempt(b *testing.B) {
	url, _ := startRedis(b)
	counters := []struct {
		name string
		c    limiter.Counter
	}{
		{"memory", limiter.New(1<<30, time.Minute, 0)},
		{"redis", limiter.NewShared(limiter.New(1<<30, time.Minute, 0), newRedis(b, url, nil), "bench:", nil)},
	}
	addrs := make([]string, 1000)
	for i := range addrs {
		addrs[i] = "10.0." + strconv.Itoa(i/256) + "." + strconv.Itoa(i%256)
	}
	for _, c := range counters {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				addr := addrs[i%len(addrs)]
				if limited, _ := c.c.Limited(addr); limited {
					b.Fatal("limited")
				}
				c.c.Fail(addr)
			}
		})
	}
}
