package mcptoken

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/caddyserver/caddy/v2"
)

// The CLI's provisioning context and its plain stderr log writer module.

// cliContext is a Caddy context for provisioning mcp_token outside a
// server: its logs (the config's warnings, JWKS trouble) are plain lines
// on w, WARN and above, without timestamps or stack traces. (A context with
// no config would log through zap's development logger, which adds a Go
// stack trace to every warning.) Like loading any config, this replaces
// Caddy's default logger.
func cliContext(w io.Writer) (caddy.Context, context.CancelFunc, error) {
	cliLogs.set(w)
	var logging caddy.Logging
	const cfg = `{"logs": {"default": {"level": "WARN", "writer": {"output": "mcp_token_cli"},
		"encoder": {"format": "console", "time_key": "", "caller_key": "", "stacktrace_key": "", "level_format": "upper"}}}}`
	if err := json.Unmarshal([]byte(cfg), &logging); err != nil {
		return caddy.Context{}, nil, err
	}
	base, err := caddy.ProvisionContext(&caddy.Config{Logging: &logging})
	if err != nil {
		return caddy.Context{}, nil, fmt.Errorf("setting up logs: %w", err)
	}
	ctx, cancel := caddy.NewContext(base)
	return ctx, func() { cancel(); cliLogs.set(nil) }, nil
}

func init() {
	caddy.RegisterModule(CLILogWriter{})
}

// CLILogWriter writes logs to the standard error of the running
// `caddy mcp-token` command (to the process's stderr otherwise). It exists
// for the CLI's own logs: configs have no use for it.
type CLILogWriter struct{}

// CaddyModule returns the Caddy module information.
func (CLILogWriter) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.logging.writers.mcp_token_cli",
		New: func() caddy.Module { return new(CLILogWriter) },
	}
}

func (CLILogWriter) String() string { return "mcp-token command stderr" }

// WriterKey is the key of Caddy's stderr writer, the place this one
// writes to when no command runs: Caddy announces, at INFO, a change of
// the default log's writer key, which would be noise in the CLI's output.
func (CLILogWriter) WriterKey() string { return "std:err" }

// OpenWriter returns the writer; closing it does nothing.
func (CLILogWriter) OpenWriter() (io.WriteCloser, error) { return &cliLogs, nil }

// cliLogs is the destination of CLILogWriter, set while a command runs.
var cliLogs cliLogTarget

type cliLogTarget struct {
	mu sync.Mutex
	w  io.Writer
}

func (t *cliLogTarget) set(w io.Writer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.w = w
}

func (t *cliLogTarget) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.w == nil {
		return os.Stderr.Write(p)
	}
	return t.w.Write(p)
}

func (*cliLogTarget) Close() error { return nil }

// Interface guard
var _ caddy.WriterOpener = CLILogWriter{}
