package store

import (
	"context"
	"fmt"
	"log"
	"os"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// go-redis writes its own messages through one process-wide logger, by
// default to stderr: during an outage "failed to dial" about once a
// second, past Caddy's logs (the store's WARN per failure streak already
// says it). Installed once here, before any client exists (go-redis reads
// it unguarded), the logger hands them to the zap logger set by SetLogger
// at debug level; until one is set they go to stderr as before, so a
// process that never configures the store sees no change.
func init() { redis.SetLogger(goRedisLog{}) }

// goRedisLogger is where go-redis's messages go; nil: stderr.
var goRedisLogger atomic.Pointer[zap.Logger]

// SetLogger sends go-redis's own messages (every client in the process)
// to l at debug level; nil sends them to stderr again.
func SetLogger(l *zap.Logger) { goRedisLogger.Store(l) }

var goRedisStderr = log.New(os.Stderr, "redis: ", log.LstdFlags|log.Lshortfile)

type goRedisLog struct{}

func (goRedisLog) Printf(_ context.Context, format string, v ...any) {
	l := goRedisLogger.Load()
	if l == nil {
		_ = goRedisStderr.Output(2, fmt.Sprintf(format, v...))
		return
	}
	if ce := l.Check(zapcore.DebugLevel, "go-redis"); ce != nil {
		ce.Write(zap.String("message", fmt.Sprintf(format, v...)))
	}
}
