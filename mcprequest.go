package mcptoken

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/mcptoken/caddy-mcp-token/internal/mcprpc"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// Body inspection limits.
const (
	// DefaultMaxBody bounds the JSON-RPC body the handler inspects.
	DefaultMaxBody = 1 << 20
	// MaxMaxBody is the largest max_body allowed: MCP requests are small,
	// and every inspected body is held in memory while it is read.
	MaxMaxBody = 16 << 20
	// BodyBudget bounds the bytes of all bodies being read for inspection
	// at once, in the whole process; a request that would exceed it gets
	// 503 with Retry-After. A body reserves its Content-Length, or
	// max_body when the length is not known.
	BodyBudget = 64 << 20
	// BodyTimeout bounds the time to receive an inspected body; a client
	// slower than that gets 408.
	BodyTimeout = 10 * time.Second
)

// bodyBudget is the process-wide BodyBudget.
var bodyBudget = semaphore.NewWeighted(BodyBudget)

// scopeRules are the per-method and per-name scope requirements: tools
// (tools/call by params.name), prompts (prompts/get by params.name) and
// resources (resources/read by params.uri).
type scopeRules struct {
	method   map[string][]string
	tool     map[string][]string
	prompt   map[string][]string
	resource map[string][]string
}

func (s scopeRules) empty() bool { return len(s.method) == 0 && !s.byName() }

// byName reports a rule on a tool, prompt or resource name.
func (s scopeRules) byName() bool { return len(s.tool)+len(s.prompt)+len(s.resource) > 0 }

// needed is every scope the calls require: the global ones, then each
// method's, then each called tool's, without repeats.
func (s scopeRules) needed(global []string, calls []mcprpc.Call) []string {
	// global itself when the calls add nothing (callers only read it);
	// copied at the first scope added.
	out, owned := global, false
	add := func(scopes []string) {
		for _, sc := range scopes {
			if !slices.Contains(out, sc) {
				if !owned {
					out, owned = slices.Clone(out), true
				}
				out = append(out, sc)
			}
		}
	}
	for _, c := range calls {
		add(s.method[c.Method])
		switch c.Method {
		case "tools/call":
			add(s.tool[c.Name])
		case "prompts/get":
			add(s.prompt[c.Name])
		case "resources/read":
			add(s.resource[c.Name])
		}
	}
	return out
}

// hasBody reports a request that carries a body (or may: chunked).
func hasBody(r *http.Request) bool {
	return r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
}

// inspect reads a POST's JSON-RPC body when the rules or the MCP headers
// need it, checks that Mcp-Method / Mcp-Name agree with it, and returns
// the scopes the request needs beyond the global ones.
//
// The body is read the way every backend reads it or not at all: only
// application/json in UTF-8 without Content-Encoding (else 415), one
// JSON-RPC value and nothing after it (mcprpc.Parse). MCP sends bodies
// with POST only (GET opens a stream, DELETE ends a session), so when
// there are rules to apply, a body on any other method is refused rather
// than left unread for a backend that might execute it.
func (c *core) inspect(w http.ResponseWriter, r *http.Request) ([]string, []mcprpc.Call, error) {
	mh := readMcpHeaders(r.Header)
	hasHeaders := mh.present() || mh.required()
	if c.rules.empty() && c.allow == nil && !hasHeaders {
		return c.requiredScopes, nil, nil
	}
	if r.Method != http.MethodPost {
		if hasBody(r) && (!c.rules.empty() || c.allow != nil) {
			return nil, nil, fmt.Errorf("%w: a body on %s (MCP sends bodies with POST only)", verifiers.ErrBadBody, r.Method)
		}
		return c.requiredScopes, nil, nil
	}
	if err := mcprpc.CheckContentType(r.Header); err != nil {
		return nil, nil, fmt.Errorf("%w: %w", verifiers.ErrUnsupportedMediaType, err)
	}
	body, err := c.readBody(w, r)
	if err != nil {
		return nil, nil, err
	}
	// Arguments are decoded only when an allow_if rule reads them.
	args := c.allow != nil && c.allow.args
	if args {
		argsDecoded.Add(1)
	}
	calls, batch, err := mcprpc.Parse(body, mcprpc.Options{DecodeArguments: args})
	if err != nil {
		if !c.rules.empty() || c.allow != nil {
			return nil, nil, fmt.Errorf("%w: %v", verifiers.ErrBadBody, err)
		}
		return nil, nil, fmt.Errorf("%w: %v", verifiers.ErrHeaderMismatch, err)
	}
	if err := mh.check(calls, batch); err != nil {
		return nil, nil, err
	}
	return c.rules.needed(c.requiredScopes, calls), calls, nil
}

// readBody reads the request body up to max_body bytes and puts it back,
// byte for byte, for the handlers after this one. Reading is bounded in
// time (BodyTimeout, through the connection's read deadline) and in
// memory across requests (BodyBudget), so slow, nearly max_body-sized
// bodies cannot pin the gateway's memory.
func (c *core) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	if r.ContentLength > c.maxBody {
		return nil, fmt.Errorf("%w: Content-Length %d, more than %d bytes", verifiers.ErrBodyTooLarge, r.ContentLength, c.maxBody)
	}
	weight := c.maxBody + 1
	if r.ContentLength >= 0 {
		weight = r.ContentLength + 1
	}
	budget := cmp.Or(c.bodies, bodyBudget)
	if !budget.TryAcquire(weight) {
		return nil, fmt.Errorf("%w: the body budget is in use", verifiers.ErrBusy)
	}
	defer budget.Release(weight)
	rc := http.NewResponseController(w)
	deadline := c.bodyTimeout > 0 && rc.SetReadDeadline(time.Now().Add(c.bodyTimeout)) == nil
	body, err := readAll(r.Body, r.ContentLength, c.maxBody)
	if deadline && err == nil {
		// Lift it for the rest of the exchange (streams); after a failed
		// read it stays, so the connection is not kept waiting for the
		// rest of the body.
		_ = rc.SetReadDeadline(time.Time{})
	}
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, fmt.Errorf("%w: not received within %s", verifiers.ErrBodyTimeout, c.bodyTimeout)
		}
		return nil, fmt.Errorf("%w: reading the body: %v", verifiers.ErrBadRequest, err)
	}
	if int64(len(body)) > c.maxBody {
		return nil, fmt.Errorf("%w: more than %d bytes", verifiers.ErrBodyTooLarge, c.maxBody)
	}
	_ = r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return body, nil
}

// readAll reads at most max+1 bytes of body. With a known length (never
// more than max here) it reads into one buffer of that size plus the one
// byte that proves the body ends where it says, instead of growing one.
func readAll(body io.Reader, length, max int64) ([]byte, error) {
	if length < 0 {
		return io.ReadAll(io.LimitReader(body, max+1))
	}
	buf := make([]byte, length+1)
	n, err := io.ReadFull(body, buf)
	switch {
	case err == io.ErrUnexpectedEOF && int64(n) == length, err == io.EOF && length == 0:
		return buf[:n], nil
	case err != nil:
		return buf[:n], err
	}
	return buf[:n], nil // more than Content-Length: net/http never allows it; refused as too large below if over max
}
