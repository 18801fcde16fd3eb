package mcptoken

import (
	"crypto/sha256"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcptoken/caddy-mcp-token/internal/streak"
	"github.com/mcptoken/caddy-mcp-token/internal/testpeers"
	"github.com/mcptoken/caddy-mcp-token/store"
)

// TestRedisSessionBindings: two instances on one Redis see each other's
// bindings (the first stands, its use extends it, a DELETE ends it in
// Redis, and an instance that still remembers it keeps it for the same
// principal); with Redis down each answers from its memory, where
// sessions it never saw pass, with one WARN per streak.
func TestRedisSessionBindings(t *testing.T) {
	srv := testpeers.StartRedisServer(t)
	core, logs := observer.New(zapcore.InfoLevel)
	const ttl = 400 * time.Millisecond
	instance := func(outage *streak.Logger) *sessionStore {
		r, err := store.NewRedis(srv.URL, store.RedisOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Close() })
		s := newSessionStore(100, ttl)
		s.shared, s.outage = r, outage
		return s
	}
	a, b := instance(nil), instance(streak.New(zap.New(core), "redis sessions", nil))
	alice, mallory := sha256.Sum256([]byte("alice")), sha256.Sum256([]byte("mallory"))
	sess := sha256.Sum256([]byte("session-1"))
	a.bind(sess, alice)
	if owner, ok := b.owner(sess, mallory); !ok || owner != alice {
		t.Fatalf("bound at A, asked at B: %v %x", ok, owner[:4])
	}
	b.bind(sess, mallory) // the first binding stands
	if owner, ok := a.owner(sess, alice); !ok || owner != alice {
		t.Fatalf("a second binding replaced the first: %v %x", ok, owner[:4])
	}
	// Each use by its principal extends the binding past its first TTL.
	for end := time.Now().Add(2 * ttl); time.Now().Before(end); time.Sleep(ttl / 4) {
		if owner, ok := b.owner(sess, alice); !ok || owner != alice {
			t.Fatal("a binding in use expired")
		}
	}
	a.forget(sess)
	if _, ok := a.owner(sess, mallory); ok {
		t.Fatal("a session ended at A still bound at A")
	}
	if owner, ok := b.owner(sess, mallory); !ok || owner != alice {
		t.Fatal("a session ended at A, still remembered by B, was not kept for its principal")
	}
	// Unused, a binding expires.
	other := sha256.Sum256([]byte("session-2"))
	b.bind(other, alice)
	time.Sleep(ttl + 100*time.Millisecond)
	if _, ok := a.owner(other, mallory); ok {
		t.Fatal("an unused binding outlived its TTL")
	}
	// Outage: memory answers. B mirrored the binding it made.
	third, unseen := sha256.Sum256([]byte("session-3")), sha256.Sum256([]byte("session-4"))
	b.bind(third, alice)
	srv.Stop()
	if owner, ok := b.owner(third, mallory); !ok || owner != alice {
		t.Fatal("Redis down: B forgot a binding it mirrored")
	}
	if _, ok := b.owner(unseen, mallory); ok {
		t.Fatal("Redis down: an unseen session did not pass")
	}
	b.bind(unseen, mallory)
	if owner, ok := b.owner(unseen, alice); !ok || owner != mallory {
		t.Fatal("Redis down: a binding made in memory is not kept")
	}
	if n := logs.FilterLevelExact(zapcore.WarnLevel).Len(); n != 1 {
		t.Fatalf("%d WARN lines for one outage, want 1: %v", n, logs.All())
	}
	srv.Start(t)
	deadline := time.Now().Add(5 * time.Second)
	for logs.FilterMessage("redis sessions recovered").Len() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no recovery logged: %v", logs.All())
		}
		b.owner(unseen, mallory)
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRedisSessionBindingMadeDuringAnOutage: a binding made in memory
// while Redis was down is not erased when Redis comes back with no key
// for it: it is written to Redis, so the other principal is refused at
// this instance and at every other, whether it asks first (owner) or the
// backend hands it the session id (bind). Bindings a Redis restarted
// without persistence lost are written back alike.
func TestRedisSessionBindingMadeDuringAnOutage(t *testing.T) {
	srv := testpeers.StartRedisServer(t)
	const pause = 100 * time.Millisecond
	instance := func() *sessionStore {
		r, err := store.NewRedis(srv.URL, store.RedisOptions{Pause: pause})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = r.Close() })
		s := newSessionStore(100, time.Minute)
		s.shared, s.outage = r, streak.New(zap.NewNop(), "redis sessions", nil)
		return s
	}
	a, b := instance(), instance()
	alice, mallory := sha256.Sum256([]byte("alice")), sha256.Sum256([]byte("mallory"))
	asked, handed := sha256.Sum256([]byte("session-asked")), sha256.Sum256([]byte("session-handed"))
	srv.Stop()
	a.bind(asked, alice) // memory only: Redis is down
	a.bind(handed, alice)
	if owner, ok := a.owner(asked, mallory); !ok || owner != alice {
		t.Fatal("Redis down: the binding made in memory is not kept")
	}
	srv.Start(t)
	time.Sleep(2 * pause) // the pause ends; the next call reaches Redis
	if owner, ok := a.owner(asked, mallory); !ok || owner != alice {
		t.Fatalf("Redis back with no key: mallory asked and got %v %x, want alice's binding", ok, owner[:4])
	}
	a.bind(handed, mallory) // the backend's answer to mallory names the session
	for _, id := range [][32]byte{asked, handed} {
		for name, s := range map[string]*sessionStore{"the instance that bound it": a, "another instance": b} {
			if owner, ok := s.owner(id, mallory); !ok || owner != alice {
				t.Fatalf("after recovery, %s: %v %x, want alice", name, ok, owner[:4])
			}
		}
	}
	// Redis restarted, empty: the bindings an instance remembers come back.
	srv.Stop()
	srv.Start(t)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(pause) {
		if owner, ok := b.owner(asked, mallory); !ok || owner != alice {
			t.Fatalf("Redis restarted empty: mallory asked and got %v %x, want alice's binding", ok, owner[:4])
		}
		if b.outage.State().Failures == 0 {
			break // answered by Redis, not by memory
		}
		if time.Now().After(deadline) {
			t.Fatal("Redis restarted: it never answered again")
		}
	}
	if owner, ok := a.owner(asked, mallory); !ok || owner != alice {
		t.Fatalf("Redis restarted empty: after B wrote the binding back, A answered %v %x, want alice", ok, owner[:4])
	}
}
