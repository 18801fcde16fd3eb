package mcptoken

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// sharedSessions keeps session bindings that every gateway instance sees
// (store.Redis): session:<SHA-256 of the id> → the principal's hash. The
// first binding stands; its principal's use extends it.
type sharedSessions interface {
	SessionOwner(ctx context.Context, id, p [32]byte, ttl time.Duration) (owner [32]byte, ok bool, err error)
	BindSession(ctx context.Context, id, p [32]byte, ttl time.Duration) (owner [32]byte, err error)
	ForgetSession(ctx context.Context, id [32]byte) error
}

// The memory rule while the store fails: a session this instance never
// saw passes, as without the store.
var sessionOutageAnswer = zap.String("answer", "session bindings from this instance's memory (sessions it never saw pass)")

// sharedOwner asks the store; done is false when there is none or it
// failed (memory answers then). The answer is mirrored in memory. A live
// binding memory holds and the store lacks (made while the store failed,
// or lost by a store restarted without persistence) is written to the
// store, never erased: the store's "none" would otherwise let anyone take
// the session over. (A binding ended at another instance comes back this
// way, bound to the same principal: the backend has ended the session.)
func (s *sessionStore) sharedOwner(id, p [32]byte) (owner [32]byte, ok, done bool) {
	if s.shared == nil {
		return owner, false, false
	}
	owner, ok, err := s.shared.SessionOwner(context.Background(), id, p, s.ttl)
	if err == nil && !ok {
		held, live := s.remembered(id)
		if !live {
			s.outage.Success()
			return owner, false, true
		}
		owner, err = s.shared.BindSession(context.Background(), id, held, s.ttl)
	}
	if err != nil {
		s.outage.Failure(err, sessionOutageAnswer)
		return owner, false, false
	}
	s.outage.Success()
	s.mirror(id, owner)
	return owner, true, true
}

// sharedBind binds in the store; false when there is none or it failed.
// A live binding in memory (one the store lacks, see sharedOwner) is the
// first one: it is what gets bound, whoever asks.
func (s *sessionStore) sharedBind(id, p [32]byte) bool {
	if s.shared == nil {
		return false
	}
	if held, live := s.remembered(id); live {
		p = held
	}
	owner, err := s.shared.BindSession(context.Background(), id, p, s.ttl)
	if err != nil {
		s.outage.Failure(err, sessionOutageAnswer)
		return false
	}
	s.outage.Success()
	s.mirror(id, owner)
	return true
}

// sharedForget ends the binding in the store too.
func (s *sessionStore) sharedForget(id [32]byte) {
	if s.shared == nil {
		return
	}
	if err := s.shared.ForgetSession(context.Background(), id); err != nil {
		s.outage.Failure(err, sessionOutageAnswer)
		return
	}
	s.outage.Success()
}

// mirror records the store's binding in memory, the answer of an outage.
func (s *sessionStore) mirror(id, owner [32]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lru.Add(id, sessionBinding{principal: owner, expires: s.now().Add(s.ttl)})
}

// remembered returns the live binding memory holds for id, if any.
func (s *sessionStore) remembered(id [32]byte) (p [32]byte, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.lru.Peek(id)
	if !ok || !s.now().Before(b.expires) {
		return p, false
	}
	return b.principal, true
}
