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
// failed (memory answers then). The answer is mirrored in memory.
func (s *sessionStore) sharedOwner(id, p [32]byte) (owner [32]byte, ok, done bool) {
	if s.shared == nil {
		return owner, false, false
	}
	owner, ok, err := s.shared.SessionOwner(context.Background(), id, p, s.ttl)
	if err != nil {
		s.outage.Failure(err, sessionOutageAnswer)
		return owner, false, false
	}
	s.outage.Success()
	s.mirror(id, owner, ok)
	return owner, ok, true
}

// sharedBind binds in the store; false when there is none or it failed.
func (s *sessionStore) sharedBind(id, p [32]byte) bool {
	if s.shared == nil {
		return false
	}
	owner, err := s.shared.BindSession(context.Background(), id, p, s.ttl)
	if err != nil {
		s.outage.Failure(err, sessionOutageAnswer)
		return false
	}
	s.outage.Success()
	s.mirror(id, owner, true)
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

// mirror records the store's answer in memory, the answer of an outage.
func (s *sessionStore) mirror(id, owner [32]byte, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !ok {
		s.lru.Remove(id)
		return
	}
	s.lru.Add(id, sessionBinding{principal: owner, expires: s.now().Add(s.ttl)})
}
