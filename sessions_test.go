package mcptoken

import (
	"context"
	"crypto/sha256"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// identities verifies "alice", "bob" and "svc" as three principals.
type identities struct{}

func (identities) Verify(_ context.Context, token string) (*verifiers.AccessToken, error) {
	switch token {
	case "alice":
		return &verifiers.AccessToken{Issuer: "https://as", Subject: "alice", ClientID: "app"}, nil
	case "bob":
		return &verifiers.AccessToken{Issuer: "https://as", Subject: "bob", ClientID: "app"}, nil
	case "svc":
		return &verifiers.AccessToken{Issuer: "https://as", ClientID: "svc"}, nil
	case "anon1", "anon2":
		return &verifiers.AccessToken{Issuer: "https://as"}, nil
	}
	return nil, verifiers.ErrBadSignature
}

// TestSessionBinding (issue 10 item 13): a session id the backend gave to
// one principal is refused (404) for any other, before the backend and
// whatever the method; its owner keeps using it; a DELETE by the owner
// ends the binding; sessions never seen pass; several session headers are
// refused.
func TestSessionBinding(t *testing.T) {
	c := &core{verifier: identities{}, logger: zap.NewNop(), maxBody: DefaultMaxBody,
		sessions: newSessionStore(100, time.Hour)}
	h := &Handler{module{core: c}}
	backendRuns := 0
	serve := func(method, token string, session ...string) *httptest.ResponseRecorder {
		r := newRequest("Bearer " + token)
		r.Method = method
		for _, s := range session {
			r.Header.Add(sessionHeader, s)
		}
		w := httptest.NewRecorder()
		next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			backendRuns++
			if r.Header.Get(sessionHeader) == "" { // initialize: the backend opens a session
				w.Header().Set(sessionHeader, "sess-"+token)
			}
			w.WriteHeader(http.StatusOK)
			return nil
		})
		if err := h.ServeHTTP(w, r, next); err != nil {
			t.Fatal(err)
		}
		return w
	}
	steps := []struct {
		name    string
		method  string
		token   string
		session []string
		status  int
	}{
		{"alice initializes", "POST", "alice", nil, 200},
		{"alice uses her session", "POST", "alice", []string{"sess-alice"}, 200},
		{"bob replays alice's session", "POST", "bob", []string{"sess-alice"}, 404},
		{"bob opens a stream on it", "GET", "bob", []string{"sess-alice"}, 404},
		{"bob deletes it", "DELETE", "bob", []string{"sess-alice"}, 404},
		{"a client_id-only principal replays it", "POST", "svc", []string{"sess-alice"}, 404},
		{"two session headers", "POST", "alice", []string{"sess-alice", "sess-other"}, 400},
		{"a session never seen passes", "POST", "bob", []string{"sess-from-before-a-restart"}, 200},
		{"alice still has hers", "GET", "alice", []string{"sess-alice"}, 200},
		{"a token naming nobody opens a session", "POST", "anon1", nil, 200},
		{"another token naming nobody cannot use it", "POST", "anon2", []string{"sess-anon1"}, 404},
		{"alice deletes it", "DELETE", "alice", []string{"sess-alice"}, 200},
		{"after the DELETE it is unknown: it passes", "POST", "bob", []string{"sess-alice"}, 200},
	}
	for _, st := range steps {
		before := backendRuns
		w := serve(st.method, st.token, st.session...)
		if w.Code != st.status {
			t.Fatalf("%s: status %d, want %d (%s)", st.name, w.Code, st.status, w.Body)
		}
		if ran := backendRuns > before; ran != (st.status == 200) {
			t.Fatalf("%s: backend ran %v", st.name, ran)
		}
	}
	// Alice's binding ended with her DELETE; the answers to bob's
	// requests named no session, so only anon1's is left.
	if n := c.sessions.len(); n != 1 {
		t.Fatalf("%d bindings left, want 1 (anon1's)", n)
	}
}

// TestSessionStoreExpiry: a binding lives ttl after its last use, the
// first binding stands against another principal, and the store is
// bounded.
func TestSessionStoreExpiry(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	s := newSessionStore(3, time.Hour)
	s.now = func() time.Time { return now }
	id := sha256.Sum256([]byte("s1"))
	alice, bob := sha256.Sum256([]byte("alice")), sha256.Sum256([]byte("bob"))
	s.bind(id, alice)
	s.bind(id, bob) // too late: alice's
	if owner, ok := s.owner(id, bob); !ok || owner != alice {
		t.Fatal("a second binding replaced the first")
	}
	now = now.Add(50 * time.Minute)
	if _, ok := s.owner(id, alice); !ok { // use extends the binding
		t.Fatal("binding gone before its ttl")
	}
	now = now.Add(50 * time.Minute)
	if owner, ok := s.owner(id, bob); !ok || owner != alice {
		t.Fatal("binding gone 50 minutes after its last use")
	}
	now = now.Add(time.Hour)
	if _, ok := s.owner(id, bob); ok {
		t.Fatal("binding outlived its ttl")
	}
	for i := 0; i < 100; i++ {
		s.bind(sha256.Sum256([]byte{byte(i)}), alice)
		if s.len() > 3 {
			t.Fatalf("%d bindings, cap 3", s.len())
		}
	}
}

// TestSessionStoreBoundedMemory: a million sessions through a store of the
// default size keep it at its cap, in bounded memory.
func TestSessionStoreBoundedMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("fills a full-size store")
	}
	s := newSessionStore(DefaultSessionBindings, time.Hour)
	p := sha256.Sum256([]byte("alice"))
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var id [32]byte
	for i := 0; i < 1_000_000; i++ {
		id[0], id[1], id[2] = byte(i), byte(i>>8), byte(i>>16)
		s.bind(id, p)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if n := s.len(); n != DefaultSessionBindings {
		t.Fatalf("%d bindings, cap %d", n, DefaultSessionBindings)
	}
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("1,000,000 sessions: %d kept, heap grew %d KiB (%d B per binding)", s.len(), grown/1024, grown/int64(s.len()))
	if grown > 64<<20 {
		t.Fatalf("heap grew %d bytes for %d bindings", grown, s.len())
	}
}
