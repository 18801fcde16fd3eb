package store

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcptoken/caddy-mcp-token/internal/testpeers"
)

// silentServer accepts connections and never answers (a hung Redis).
func silentServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

func newTestRedis(t *testing.T, url string, timeout time.Duration) *Redis {
	t.Helper()
	s, err := NewRedis(url, RedisOptions{Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// timed runs f and returns its duration and error.
func timed(f func() error) (time.Duration, error) {
	start := time.Now()
	err := f()
	return time.Since(start), err
}

// TestRedisPausesAfterAnUnansweredCall: against a server that accepts and
// never answers, the first call takes its timeout and pauses the store;
// calls during the pause fail at once with ErrPaused; when the pause ends
// one call tries the server again while a concurrent one still fails at
// once.
func TestRedisPausesAfterAnUnansweredCall(t *testing.T) {
	const timeout = 300 * time.Millisecond
	s := newTestRedis(t, "redis://"+silentServer(t)+"/0", timeout)
	ctx := context.Background()
	took, err := timed(func() error { return s.Ping(ctx) })
	if err == nil || errors.Is(err, ErrPaused) || took < timeout-50*time.Millisecond {
		t.Fatalf("first call: %v after %s, want a timeout after about %s", err, took, timeout)
	}
	pausedAt := time.Now()
	took, err = timed(func() error {
		for i := 0; i < 20; i++ {
			if _, err := s.Seen(ctx, "k", time.Now().Add(time.Minute)); !errors.Is(err, ErrPaused) {
				return err
			}
		}
		return nil
	})
	if err != nil || took > 100*time.Millisecond {
		t.Fatalf("20 calls during the pause: %v, %s; want ErrPaused each, at once", err, took)
	}
	time.Sleep(time.Until(pausedAt.Add(DefaultPause + 50*time.Millisecond)))
	trial := make(chan error, 1)
	var trialTook time.Duration
	go func() {
		var err error
		trialTook, err = timed(func() error { return s.Ping(ctx) })
		trial <- err
	}()
	time.Sleep(100 * time.Millisecond) // the trial is waiting on the server
	took, err = timed(func() error { return s.Ping(ctx) })
	if !errors.Is(err, ErrPaused) || took > 50*time.Millisecond {
		t.Fatalf("a call during the trial: %v after %s, want ErrPaused at once", err, took)
	}
	if err := <-trial; err == nil || errors.Is(err, ErrPaused) || trialTook < timeout-50*time.Millisecond {
		t.Fatalf("the trial: %v after %s, want a timeout after about %s", err, trialTook, timeout)
	}
	if err := s.Ping(ctx); !errors.Is(err, ErrPaused) {
		t.Fatalf("after a failed trial: %v, want a new pause", err)
	}
}

// TestRedisPauseEndsWhenTheServerAnswers: a stopped redis-server pauses
// the store; started again on the same port, the first call after the
// pause reaches it and ends the pause. An error reply is an answer too.
func TestRedisPauseEndsWhenTheServerAnswers(t *testing.T) {
	srv := testpeers.StartRedisServer(t)
	s := newTestRedis(t, srv.URL, 0)
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if err := s.Ping(ctx); err == nil || errors.Is(err, ErrPaused) {
		t.Fatalf("server stopped: %v, want a connection error", err)
	}
	pausedAt := time.Now()
	if err := s.Ping(ctx); !errors.Is(err, ErrPaused) {
		t.Fatalf("during the pause: %v, want ErrPaused", err)
	}
	srv.Start(t)
	if err := s.Ping(ctx); !errors.Is(err, ErrPaused) && time.Since(pausedAt) < DefaultPause {
		t.Fatalf("server back, pause not over: %v, want ErrPaused", err)
	}
	time.Sleep(time.Until(pausedAt.Add(DefaultPause + 50*time.Millisecond)))
	// The trial gets an error reply: an answer, so the pause ends.
	if err := s.client.Do(ctx, "NO-SUCH-COMMAND").Err(); err == nil || errors.Is(err, ErrPaused) {
		t.Fatalf("trial: %v, want an error reply", err)
	}
	if s.breaker.paused() {
		t.Fatal("still paused after an error reply")
	}
	for i := 0; i < 5; i++ {
		if seen, err := s.Seen(ctx, "after", time.Now().Add(time.Minute)); err != nil || seen != (i > 0) {
			t.Fatalf("call %d after recovery: %v %v", i, seen, err)
		}
	}
}

// TestRedisPoolStarvationIsNoOutage: with one connection (?pool_size=1)
// held by a slow call on a healthy server, a call waiting for a
// connection fails (ErrPoolTimeout, within the call timeout) without
// pausing the store: the next call after the slow one reaches the server.
func TestRedisPoolStarvationIsNoOutage(t *testing.T) {
	url, _ := testpeers.StartRedis(t)
	const timeout = 250 * time.Millisecond
	s := newTestRedis(t, url+"?pool_size=1", timeout)
	ctx := context.Background()
	if err := s.Ping(ctx); err != nil {
		t.Fatal(err)
	}
	// BLPOP on an empty list holds the only connection for 600ms, then
	// answers nil (its own read deadline is its timeout plus 10s).
	busy := make(chan error, 1)
	go func() { busy <- s.client.BLPop(ctx, 600*time.Millisecond, "mcp_token:test:empty").Err() }()
	time.Sleep(100 * time.Millisecond) // BLPOP holds the connection
	took, err := timed(func() error { _, err := s.Seen(ctx, "starved", time.Now().Add(time.Minute)); return err })
	if !errors.Is(err, redis.ErrPoolTimeout) || took >= timeout {
		t.Fatalf("a call with no connection free: %v after %s, want redis.ErrPoolTimeout within the call timeout %s", err, took, timeout)
	}
	if err := <-busy; !errors.Is(err, redis.Nil) {
		t.Fatalf("BLPOP: %v, want nil after its timeout", err)
	}
	if s.breaker.paused() {
		t.Fatal("pool starvation paused a healthy store")
	}
	if seen, err := s.Seen(ctx, "after", time.Now().Add(time.Minute)); err != nil || seen {
		t.Fatalf("the call after the busy one: %v %v, want it to reach the server", seen, err)
	}
}

// TestRedisPoolSettings: the pool wait always ends before the call's
// deadline, whatever the URL says; the pool holds at least
// DefaultPoolSize connections unless the URL sets pool_size.
func TestRedisPoolSettings(t *testing.T) {
	for _, tc := range []struct {
		query       string
		wait        time.Duration
		atLeast, is int
	}{
		{"", 125 * time.Millisecond, DefaultPoolSize, 0},
		{"?pool_timeout=5s", 125 * time.Millisecond, DefaultPoolSize, 0},
		{"?pool_timeout=50ms&pool_size=3", 50 * time.Millisecond, 0, 3},
	} {
		s := newTestRedis(t, "redis://127.0.0.1:1/0"+tc.query, 250*time.Millisecond)
		o := s.client.Options()
		if o.PoolTimeout != tc.wait || o.PoolSize < tc.atLeast || (tc.is > 0 && o.PoolSize != tc.is) {
			t.Errorf("%q: pool timeout %s, size %d; want %s, size %d (at least %d)", tc.query, o.PoolTimeout, o.PoolSize, tc.wait, tc.is, tc.atLeast)
		}
	}
}

// TestGoRedisMessagesGoToTheLogger: with a logger set, go-redis's own
// messages ("failed to dial" during an outage) reach it at debug level,
// not stderr.
func TestGoRedisMessagesGoToTheLogger(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	SetLogger(zap.New(core))
	t.Cleanup(func() { SetLogger(nil) })
	srv := testpeers.StartRedisServer(t)
	s := newTestRedis(t, srv.URL, 0)
	srv.Stop()
	_ = s.Ping(context.Background())
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if e := logs.FilterMessage("go-redis").All(); len(e) > 0 {
			if msg := e[0].ContextMap()["message"]; e[0].Level != zapcore.DebugLevel || !strings.Contains(fmt.Sprint(msg), "failed to dial") {
				t.Fatalf("%v %q, want a debug entry about the dial", e[0].Level, msg)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no go-redis message reached the logger: %v", logs.All())
		}
	}
}
