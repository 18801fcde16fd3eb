package store

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Session bindings: session:<SHA-256 of the session id> holds the hex
// SHA-256 of the principal it is bound to. The first binding stands until
// it expires; using it (by its principal) extends its life.
var (
	sessionOwner = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v and v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return v`)
	sessionBind = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if not v then
	redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
	return ARGV[1]
end
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return v`)
)

func (s *Redis) sessionKey(id [32]byte) string {
	return s.prefix + "session:" + hex.EncodeToString(id[:])
}

// SessionOwner returns the principal the session id is bound to (ok false
// when none), extending the binding by ttl when it is p.
func (s *Redis) SessionOwner(ctx context.Context, id, p [32]byte, ttl time.Duration) (owner [32]byte, ok bool, err error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	v, err := sessionOwner.Run(ctx, s.client, []string{s.sessionKey(id)}, hex.EncodeToString(p[:]), max(ttl.Milliseconds(), 1)).Text()
	if errors.Is(err, redis.Nil) {
		return owner, false, nil
	}
	return principal(v, err)
}

// BindSession binds the session id to p for ttl unless it is bound to
// another principal already; it returns the principal bound.
func (s *Redis) BindSession(ctx context.Context, id, p [32]byte, ttl time.Duration) (owner [32]byte, err error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	owner, _, err = principal(sessionBind.Run(ctx, s.client, []string{s.sessionKey(id)}, hex.EncodeToString(p[:]), max(ttl.Milliseconds(), 1)).Text())
	return owner, err
}

// ForgetSession ends a session's binding.
func (s *Redis) ForgetSession(ctx context.Context, id [32]byte) error {
	ctx, cancel := s.call(ctx)
	defer cancel()
	if err := s.client.Del(ctx, s.sessionKey(id)).Err(); err != nil {
		return fmt.Errorf("redis session bindings: %w", err)
	}
	return nil
}

// principal decodes a stored principal.
func principal(v string, err error) (p [32]byte, ok bool, _ error) {
	if err != nil {
		return p, false, fmt.Errorf("redis session bindings: %w", err)
	}
	if len(v) != hex.EncodedLen(len(p)) {
		return p, false, errors.New("redis session bindings: a stored principal is not a hex SHA-256")
	}
	if _, err := hex.Decode(p[:], []byte(v)); err != nil {
		return p, false, errors.New("redis session bindings: a stored principal is not a hex SHA-256")
	}
	return p, true, nil
}
