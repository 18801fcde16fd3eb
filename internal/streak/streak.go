// Package streak logs the failures of a remote dependency once per streak:
// a warning when failures start, debug lines while they go on, and an info
// line when the dependency recovers, so an outage never floods the log. It
// also keeps the state an operator's status page shows.
package streak

import (
	"sync"
	"time"

	"go.uber.org/zap"
)

// Logger tracks one dependency's failure streak. It is safe for concurrent
// use; a nil *Logger records and logs nothing.
type Logger struct {
	log  *zap.Logger
	what string
	now  func() time.Time

	mu    sync.Mutex
	state State
}

// State is a dependency's recent history.
type State struct {
	// Failures is the length of the current failure streak (0: the last
	// attempt succeeded, or none was made).
	Failures int
	// LastSuccess is when the last attempt succeeded (zero: never).
	LastSuccess time.Time
	// LastError is the text of the last failure, empty when none; it
	// stays after a recovery, with LastErrorAt.
	LastError   string
	LastErrorAt time.Time
}

// New returns a streak logger; what names the dependency in messages,
// for example "jwks fetch". now is the clock (nil: time.Now).
func New(log *zap.Logger, what string, now func() time.Time) *Logger {
	if log == nil {
		log = zap.NewNop()
	}
	if now == nil {
		now = time.Now
	}
	return &Logger{log: log, what: what, now: now}
}

// Failure records a failure: WARN at the start of a streak, DEBUG after.
// err's text must hold no secret: it is kept for the status page.
func (s *Logger) Failure(err error, fields ...zap.Field) {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.state.Failures++
	first := s.state.Failures == 1
	s.state.LastError, s.state.LastErrorAt = err.Error(), s.now()
	s.mu.Unlock()
	level := zap.DebugLevel
	if first {
		level = zap.WarnLevel
	}
	if ce := s.log.Check(level, s.what+" failed"); ce != nil {
		ce.Write(append(fields, zap.Error(err))...)
	}
}

// Success records a success, logging the end of a streak at INFO.
func (s *Logger) Success(fields ...zap.Field) {
	if s == nil {
		return
	}
	s.mu.Lock()
	ended := s.state.Failures
	s.state.Failures, s.state.LastSuccess = 0, s.now()
	s.mu.Unlock()
	if ended > 0 {
		s.log.Info(s.what+" recovered", append(fields, zap.Int("failures", ended))...)
	}
}

// State returns the current state.
func (s *Logger) State() State {
	if s == nil {
		return State{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}
