package mcptoken

import (
	"cmp"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/hashicorp/golang-lru/v2/simplelru"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mcptoken/caddy-mcp-token/internal/streak"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// Session binding (MCP security best practices: session IDs SHOULD be
// bound to the user). The gateway strips the token, so the backend cannot
// tell who sends a session id; the gateway remembers which principal
// received each Mcp-Session-Id from the backend and refuses that id from
// anyone else, before the backend, for every method (DELETE included).
//
// A request carrying a session id bound to another principal is answered
// 404 Not Found, not 403: for this caller the session does not exist. The
// MCP transport says a client that gets 404 for its Mcp-Session-Id MUST
// start a new session, so a legitimate client whose identity changed (a
// new login as another user) recovers by itself, where a 403 would leave
// it stuck; and a 404 tells a prober nothing about whether the id is live,
// the backend answering the same for unknown ids.
//
// A session id the gateway never saw (a restart, another instance without
// the fleet's store, a binding evicted or expired) passes, logged at
// debug; the backend's answer then binds it to the first principal that
// uses it. With `store redis` every instance sees every binding.

// Session binding defaults.
const (
	DefaultSessionBindings   = 100000
	DefaultSessionBindingTTL = 24 * time.Hour
)

// sessionHeader is the MCP Streamable HTTP session header.
const sessionHeader = "Mcp-Session-Id"

// principalOf identifies who a token speaks for: iss and sub, else iss
// and client_id, else (a token that names nobody) the token itself, hashed
// to a fixed size.
func principalOf(tok *verifiers.AccessToken, token string) [32]byte {
	switch {
	case tok.Subject != "":
		return sha256.Sum256([]byte("sub\x00" + tok.Issuer + "\x00" + tok.Subject))
	case tok.ClientID != "":
		return sha256.Sum256([]byte("client\x00" + tok.Issuer + "\x00" + tok.ClientID))
	}
	return sha256.Sum256([]byte("token\x00" + token))
}

// sessionBinding is one remembered session.
type sessionBinding struct {
	principal [32]byte
	expires   time.Time
}

// sessionStore maps the SHA-256 of session ids to their principal, in a
// bounded LRU whose entries also expire; it lives in a pool, so reloads
// keep it. With the fleet's store (sessions_shared.go) the bindings live
// in Redis and the LRU mirrors them, answering alone while Redis fails.
type sessionStore struct {
	mu  sync.Mutex
	lru *simplelru.LRU[[32]byte, sessionBinding]
	ttl time.Duration
	now func() time.Time

	shared sharedSessions // nil: memory alone
	outage *streak.Logger
}

func newSessionStore(size int, ttl time.Duration) *sessionStore {
	lru, _ := simplelru.NewLRU[[32]byte, sessionBinding](cmp.Or(size, DefaultSessionBindings), nil)
	return &sessionStore{lru: lru, ttl: cmp.Or(ttl, DefaultSessionBindingTTL), now: time.Now}
}

// owner returns the principal a session is bound to, extending the
// binding's life when it is p; ok is false for a session never seen (or
// expired).
func (s *sessionStore) owner(id [32]byte, p [32]byte) (owner [32]byte, ok bool) {
	if owner, ok, done := s.sharedOwner(id, p); done {
		return owner, ok
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.lru.Get(id)
	now := s.now()
	if ok && !now.Before(b.expires) {
		s.lru.Remove(id)
		return owner, false
	}
	if ok && b.principal == p {
		b.expires = now.Add(s.ttl)
		s.lru.Add(id, b)
	}
	return b.principal, ok
}

// bind binds a session to p, unless it is bound to another principal
// already (the first binding stands until it expires).
func (s *sessionStore) bind(id [32]byte, p [32]byte) {
	if s.sharedBind(id, p) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	if b, ok := s.lru.Peek(id); ok && b.principal != p && now.Before(b.expires) {
		return
	}
	s.lru.Add(id, sessionBinding{principal: p, expires: now.Add(s.ttl)})
}

func (s *sessionStore) forget(id [32]byte) {
	s.sharedForget(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lru.Remove(id)
}

func (s *sessionStore) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.Len()
}

// sessionState is what the gate learned about a request's session.
type sessionState struct {
	id      [32]byte // SHA-256 of the request's Mcp-Session-Id
	present bool     // the request names a session
	bound   bool     // bound to the caller already
}

// checkSession refuses a request whose session id is bound to another
// principal (or that names several sessions).
func (c *core) checkSession(r *http.Request, p [32]byte) (sessionState, error) {
	ids := r.Header.Values(sessionHeader)
	switch len(ids) {
	case 0:
		return sessionState{}, nil
	case 1:
	default:
		// The gateway and the backend could read different ones.
		return sessionState{}, fmt.Errorf("%w: %d %s headers", verifiers.ErrBadRequest, len(ids), sessionHeader)
	}
	st := sessionState{id: sha256.Sum256([]byte(ids[0])), present: true}
	owner, ok := c.sessions.owner(st.id, p)
	if ok && owner != p {
		return st, fmt.Errorf("%w: bound to another principal", verifiers.ErrSessionNotFound)
	}
	st.bound = ok
	if !ok {
		if ce := c.logger.Check(zapcore.DebugLevel, "session not seen by the gateway: passed, the answer binds it"); ce != nil {
			ce.Write(zap.String("session_hash", TokenHash(ids[0])))
		}
	}
	return st, nil
}

// watchSession returns the writer to serve an accepted request with: w
// itself when the answer cannot change a binding (a session already bound
// to the caller, other than DELETE), else a writer that reads the
// answer's headers.
func (c *core) watchSession(w http.ResponseWriter, r *http.Request, st sessionState, p [32]byte) http.ResponseWriter {
	del := r.Method == http.MethodDelete
	if c.sessions == nil || (st.bound && !del) {
		return w
	}
	return &sessionWriter{ResponseWriterWrapper: caddyhttp.ResponseWriterWrapper{ResponseWriter: w},
		store: c.sessions, principal: p, request: st.id, delete: del && st.present}
}

// sessionWriter reads the backend's answer headers as they are written:
// a 2xx answer with Mcp-Session-Id binds that session to the caller; a
// 2xx answer to DELETE ends the request's session.
type sessionWriter struct {
	caddyhttp.ResponseWriterWrapper
	store     *sessionStore
	principal [32]byte
	request   [32]byte // the request's session id, hashed
	delete    bool     // a DELETE of the request's session
	seen      bool
}

func (w *sessionWriter) observe(code int) {
	if w.seen || code < 200 {
		return
	}
	w.seen = true
	if code >= 300 {
		return
	}
	if w.delete {
		w.store.forget(w.request)
		return
	}
	if id := w.Header().Get(sessionHeader); id != "" {
		w.store.bind(sha256.Sum256([]byte(id)), w.principal)
	}
}

func (w *sessionWriter) WriteHeader(code int) {
	w.observe(code)
	w.ResponseWriter.WriteHeader(code)
}

func (w *sessionWriter) Write(b []byte) (int, error) {
	w.observe(http.StatusOK)
	return w.ResponseWriter.Write(b)
}

// ReadFrom keeps io.Copy's fast path without skipping observe.
func (w *sessionWriter) ReadFrom(r io.Reader) (int64, error) {
	w.observe(http.StatusOK)
	return w.ResponseWriterWrapper.ReadFrom(r)
}

// FlushError is what http.ResponseController calls; a flush before any
// header write sends a 200.
func (w *sessionWriter) FlushError() error {
	w.observe(http.StatusOK)
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Flush implements http.Flusher for callers that test for it.
func (w *sessionWriter) Flush() { _ = w.FlushError() }

// settings are the session store's size and TTL; on is false when
// binding is off.
func (sc *SessionBindingConfig) settings() (size int, ttl time.Duration, on bool, err error) {
	if sc == nil {
		return DefaultSessionBindings, DefaultSessionBindingTTL, true, nil
	}
	if sc.Disabled {
		return 0, 0, false, nil
	}
	if sc.Size < 0 || sc.TTL < 0 {
		return 0, 0, false, errors.New("bind_sessions: size and ttl must be positive")
	}
	return cmp.Or(sc.Size, DefaultSessionBindings), cmp.Or(time.Duration(sc.TTL), DefaultSessionBindingTTL), true, nil
}
