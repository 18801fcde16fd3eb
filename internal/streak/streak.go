// Package streak logs the failures of a remote dependency once per streak:
// a warning when failures start, debug lines while they go on, and an info
// line when the dependency recovers, so an outage never floods the log.
package streak

import (
	"sync/atomic"

	"go.uber.org/zap"
)

// Logger tracks one dependency's failure streak. A nil *Logger logs
// nothing.
type Logger struct {
	log     *zap.Logger
	what    string
	failing atomic.Bool
}

// New returns a streak logger; what names the dependency in messages,
// for example "jwks fetch".
func New(log *zap.Logger, what string) *Logger {
	if log == nil {
		log = zap.NewNop()
	}
	return &Logger{log: log, what: what}
}

// Failure records a failure: WARN at the start of a streak, DEBUG after.
func (s *Logger) Failure(err error, fields ...zap.Field) {
	if s == nil {
		return
	}
	level := zap.DebugLevel
	if !s.failing.Swap(true) {
		level = zap.WarnLevel
	}
	if ce := s.log.Check(level, s.what+" failed"); ce != nil {
		ce.Write(append(fields, zap.Error(err))...)
	}
}

// Success records a success, logging the end of a streak at INFO.
func (s *Logger) Success(fields ...zap.Field) {
	if s != nil && s.failing.Swap(false) {
		s.log.Info(s.what+" recovered", fields...)
	}
}
