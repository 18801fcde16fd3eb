package store

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrPaused is the answer of every call while the store is paused: a
// recent call got no answer from the server, so calls fail at once
// instead of each waiting for its own timeout.
var ErrPaused = errors.New("redis store paused after a call got no answer")

// DefaultPause is how long the store stays paused after a call that got
// no answer.
const DefaultPause = time.Second

// breaker is a go-redis hook that pauses the client after a call the
// server did not answer (connection refused or reset, timed out). During
// the pause every call fails with ErrPaused. When the pause ends, one
// call (the trial) goes through while the others keep failing; any answer
// from the server, even an error reply, ends the pause, and no answer
// starts a new one. A server that hangs costs one timeout per pause, not
// one per call.
type breaker struct {
	pause time.Duration
	now   func() time.Time

	mu     sync.Mutex
	until  time.Time // end of the pause; zero when not paused
	trying bool      // the trial call is under way
}

// admitted marks the context of a call the breaker let through: the calls
// go-redis makes inside it (the handshake of a new connection: HELLO,
// AUTH, SELECT, through the same hooks) are part of it, neither refused
// nor counted; without the mark the trial's own handshake would be
// refused as a second call during the pause.
type admitted struct{}

func newBreaker(pause time.Duration, now func() time.Time) *breaker {
	if pause <= 0 {
		pause = DefaultPause
	}
	if now == nil {
		now = time.Now
	}
	return &breaker{pause: pause, now: now}
}

// admit decides whether a call may go to the server; trial is true for the
// one call let through when a pause has ended.
func (b *breaker) admit() (trial bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.until.IsZero():
		return false, nil
	case b.trying || b.now().Before(b.until):
		return false, ErrPaused
	}
	b.trying = true
	return true, nil
}

// record learns from a call's outcome.
func (b *breaker) record(err error, trial bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case answered(err):
		b.until, b.trying = time.Time{}, false
	case unanswered(err):
		b.until, b.trying = b.now().Add(b.pause), false
	case trial:
		b.trying = false // says nothing of the server: the next call tries
	}
}

// paused reports whether the store is paused (a trial may be under way).
func (b *breaker) paused() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return !b.until.IsZero()
}

// answered is true when the server answered: a value, nil, or an error
// reply.
func answered(err error) bool {
	var reply redis.Error
	return err == nil || errors.As(err, &reply)
}

// unanswered is true for a call the server did not answer. A call its
// caller cancelled, a client closed or a connection pool exhausted by this
// process's own load say nothing about the server.
func unanswered(err error) bool {
	switch {
	case answered(err), errors.Is(err, ErrPaused), errors.Is(err, context.Canceled),
		errors.Is(err, redis.ErrClosed), errors.Is(err, redis.ErrPoolTimeout):
		return false
	}
	return true
}

// guard runs one call (or pipeline) under the breaker.
func (b *breaker) guard(ctx context.Context, call func(context.Context) error) error {
	if ctx.Value(admitted{}) != nil {
		return call(ctx) // inside an admitted call
	}
	trial, err := b.admit()
	if err != nil {
		return err
	}
	err = call(context.WithValue(ctx, admitted{}, true))
	b.record(err, trial)
	return err
}

// DialHook dials: go-redis dials in a goroutine of its own, detached from
// the call that needs the connection, which the breaker already admitted
// (or refused); dials for the pool's own upkeep are left alone.
func (b *breaker) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook guards one command.
func (b *breaker) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := b.guard(ctx, func(ctx context.Context) error { return next(ctx, cmd) })
		if errors.Is(err, ErrPaused) {
			cmd.SetErr(err)
		}
		return err
	}
}

// ProcessPipelineHook guards a pipeline as one call.
func (b *breaker) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := b.guard(ctx, func(ctx context.Context) error { return next(ctx, cmds) })
		if errors.Is(err, ErrPaused) {
			for _, cmd := range cmds {
				cmd.SetErr(err)
			}
		}
		return err
	}
}

// Interface guard
var _ redis.Hook = (*breaker)(nil)
