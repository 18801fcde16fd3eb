package store

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mcptoken/caddy-mcp-token/internal/limiter"
)

// Failed-attempt windows: one counter per key, expiring when its window
// ends. The window opens at the first failure (INCR, then PEXPIRE when the
// count is 1, in one script so no counter is left without an expiry) and
// does not move with later failures.
var (
	addFailure = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
local left = redis.call('PTTL', KEYS[1])
if n == 1 or left < 0 then
	redis.call('PEXPIRE', KEYS[1], ARGV[1])
	left = tonumber(ARGV[1])
end
return {n, left}`)
	failures = redis.NewScript(`
local n = redis.call('GET', KEYS[1])
if not n then return {0, 0} end
return {tonumber(n), redis.call('PTTL', KEYS[1])}`)
)

// Failures implements limiter.Store.
func (s *Redis) Failures(ctx context.Context, key string) (int64, time.Duration, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	return window(failures.Run(ctx, s.client, []string{s.prefix + "limit:" + key}).Int64Slice())
}

// AddFailure implements limiter.Store.
func (s *Redis) AddFailure(ctx context.Context, key string, win time.Duration) (int64, time.Duration, error) {
	ctx, cancel := s.call(ctx)
	defer cancel()
	ms := max(win.Milliseconds(), 1)
	return window(addFailure.Run(ctx, s.client, []string{s.prefix + "limit:" + key}, ms).Int64Slice())
}

// window reads a script's {count, milliseconds left}.
func window(v []int64, err error) (int64, time.Duration, error) {
	if err != nil {
		return 0, 0, fmt.Errorf("redis failed-attempt window: %w", err)
	}
	if len(v) != 2 {
		return 0, 0, fmt.Errorf("redis failed-attempt window: %d values, want 2", len(v))
	}
	return v[0], time.Duration(max(v[1], 0)) * time.Millisecond, nil
}

// Interface guard
var _ limiter.Store = (*Redis)(nil)
