package mcptoken

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mcptoken/caddy-mcp-token/internal/mcprpc"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// Lists shaped by the caller: the answer to tools/list, prompts/list,
// resources/list and resources/templates/list keeps only the entries the
// caller's token may use under the same rules that judge tools/call,
// prompts/get and resources/read (method_scopes, tool_scopes,
// prompt_scopes, resource_scopes, after scope_implies). A hidden entry is
// still refused when called.
//
// Only the responses to list requests are wrapped; every other response
// goes to the client untouched, unbuffered. A JSON list response is read
// whole (up to max_body), filtered, and sent with its new Content-Length.
// An event stream is read event by event: the event that carries a list
// result is filtered, every other event is passed on, and flushed, as soon
// as it is complete. What cannot be filtered (larger than max_body, not
// JSON, compressed) is never passed on: 502, with a log line.

// listKind is one list method and what its result holds.
type listKind struct {
	method string // the list method, such as tools/list
	call   string // the method whose rules decide, such as tools/call
	key    string // the result member holding the list
	field  string // the member of an entry that names it
}

var listKinds = [...]listKind{
	{"tools/list", "tools/call", "tools", "name"},
	{"prompts/list", "prompts/get", "prompts", "name"},
	{"resources/list", "resources/read", "resources", "uri"},
	{"resources/templates/list", "resources/read", "resourceTemplates", "uriTemplate"},
}

// listKinds returns the list methods among calls whose results are
// filtered; nil when filtering is off or there are none.
func (c *core) listKinds(calls []mcprpc.Call) []listKind {
	if !c.filterLists {
		return nil
	}
	var out []listKind
	for _, call := range calls {
		for _, k := range listKinds {
			if call.Method == k.method && !containsKind(out, k) {
				out = append(out, k)
			}
		}
	}
	return out
}

func containsKind(ks []listKind, k listKind) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

// listAllows reports whether tok may use the entry named name of a list
// of kind k: the rules of k.call for that name (resource templates are
// matched by their uriTemplate text), and the allow_if rules, one of which
// must be true for this caller calling it with any arguments (policy.go).
// r is the list request.
func (c *core) listAllows(tok *verifiers.AccessToken, r *http.Request, k listKind, name string) bool {
	if !tok.HasScopes(c.rules.method[k.call]) {
		return false
	}
	return tok.HasScopes(c.rules.byKind(k)[name]) && c.allow.allowsListed(tok, r, k.call, name)
}

// listAllowsAll reports whether tok passes every rule that could hide an
// entry of these lists: then nothing is hidden, and the response is not
// read at all. With allow_if rules, entries are always judged one by one.
func (c *core) listAllowsAll(tok *verifiers.AccessToken, kinds []listKind) bool {
	if c.allow != nil {
		return false
	}
	for _, k := range kinds {
		if !tok.HasScopes(c.rules.method[k.call]) {
			return false
		}
		for _, scopes := range c.rules.byKind(k) {
			if !tok.HasScopes(scopes) {
				return false
			}
		}
	}
	return true
}

// byKind is the per-name rules of the method that decides a list's entries.
func (s scopeRules) byKind(k listKind) map[string][]string {
	switch k.call {
	case "prompts/get":
		return s.prompt
	case "resources/read":
		return s.resource
	}
	return s.tool
}

// errListUnfilterable: a list response the gateway cannot filter.
var errListUnfilterable = errors.New("list response cannot be filtered")

// listWriter filters the response to one list request.
type listWriter struct {
	http.ResponseWriter
	c     *core
	tok   *verifiers.AccessToken
	r     *http.Request // the list request (for allow_if rules)
	kinds []listKind
	max   int

	mode   writerMode
	status int
	buf    []byte // JSON: the body so far; SSE: the event being read
	sent   bool   // SSE: the status line was sent
	err    error  // why the response cannot be filtered
}

type writerMode uint8

const (
	modeUndecided writerMode = iota
	modePass                 // not a list result: untouched
	modeJSON                 // buffered, filtered at the end
	modeSSE                  // filtered event by event
	modeFailed               // refused (502 when nothing was sent)
)

// filterList wraps w for a request whose list results are filtered; nil
// when there are none. The request asks the upstream for an identity
// encoding so that the body can be read.
func (c *core) filterList(w http.ResponseWriter, r *http.Request, out outcome) *listWriter {
	if len(out.lists) == 0 || c.listAllowsAll(out.accepted.Token, out.lists) {
		return nil
	}
	r.Header.Del("Accept-Encoding")
	return &listWriter{ResponseWriter: w, c: c, tok: out.accepted.Token, r: r, kinds: out.lists, max: int(c.maxBody)}
}

// WriteHeader decides how the response is handled from its status and
// headers. 1xx responses pass.
func (lw *listWriter) WriteHeader(status int) {
	if lw.mode != modeUndecided || status < 200 {
		if lw.mode == modePass || status < 200 {
			lw.ResponseWriter.WriteHeader(status)
		}
		return
	}
	lw.status = status
	h := lw.Header()
	ct, _, _ := mime.ParseMediaType(h.Get("Content-Type"))
	switch {
	case status != http.StatusOK || (ct != "application/json" && ct != "text/event-stream"):
		lw.mode = modePass // no list result a client would read
		lw.ResponseWriter.WriteHeader(status)
		return
	case h.Get("Content-Encoding") != "" && h.Get("Content-Encoding") != "identity":
		lw.fail(fmt.Errorf("%w: Content-Encoding %q", errListUnfilterable, h.Get("Content-Encoding")))
		return
	case ct == "application/json":
		lw.mode = modeJSON
	default:
		lw.mode = modeSSE
	}
	h.Del("Content-Length")
}

func (lw *listWriter) Write(p []byte) (int, error) {
	if lw.mode == modeUndecided {
		lw.WriteHeader(http.StatusOK)
	}
	switch lw.mode {
	case modePass:
		return lw.ResponseWriter.Write(p)
	case modeJSON:
		if len(lw.buf)+len(p) > lw.max {
			lw.fail(fmt.Errorf("%w: larger than max_body (%d bytes)", errListUnfilterable, lw.max))
			return len(p), nil
		}
		lw.buf = append(lw.buf, p...)
		return len(p), nil
	case modeSSE:
		lw.buf = append(lw.buf, p...)
		if err := lw.events(false); err != nil && lw.mode != modeFailed {
			return 0, err // the client went away
		}
		return len(p), nil
	}
	// Failed: the rest is read and dropped, never passed on. No error:
	// reverse_proxy would abort the whole response, 502 included.
	return len(p), nil
}

// Flush sends what is complete: in pass and event-stream modes at once,
// never in JSON mode (the body is sent whole).
func (lw *listWriter) Flush() {
	switch lw.mode {
	case modePass:
	case modeSSE:
		if !lw.sent {
			return
		}
	default:
		return
	}
	if f, ok := lw.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the connection.
func (lw *listWriter) Unwrap() http.ResponseWriter { return lw.ResponseWriter }

// finish completes the response after the next handler returned nextErr.
func (lw *listWriter) finish(nextErr error) error {
	switch lw.mode {
	case modeJSON:
		if nextErr != nil {
			return nextErr // an incomplete body: nothing was sent, Caddy answers
		}
		out, err := lw.filterBody(lw.buf)
		if err != nil {
			lw.fail(err)
			break
		}
		lw.Header().Set("Content-Length", strconv.Itoa(len(out)))
		lw.ResponseWriter.WriteHeader(lw.status)
		_, _ = lw.ResponseWriter.Write(out)
		return nil
	case modeSSE:
		if nextErr != nil {
			return nextErr
		}
		if err := lw.events(true); err == nil {
			lw.Flush()
			return nil
		}
	}
	if lw.mode == modeFailed && !lw.sent {
		lw.refuse()
		return nil
	}
	return nextErr
}

// fail records why the response cannot be filtered; it is never passed on.
func (lw *listWriter) fail(err error) {
	if lw.mode == modeFailed {
		return
	}
	lw.mode, lw.err, lw.buf = modeFailed, err, nil
	if ce := lw.c.logger.Check(zapcore.WarnLevel, "list response refused: it cannot be filtered"); ce != nil {
		ce.Write(zap.Error(err), zap.String("client_id", lw.tok.ClientID))
	}
}

// refuse answers 502 with a JSON-RPC error, in place of the list.
func (lw *listWriter) refuse() {
	h := lw.Header()
	for _, k := range []string{"Content-Encoding", "Content-Length", "Content-Type", "Etag", "Last-Modified"} {
		h.Del(k) // the upstream's description of the body it sent
	}
	body := []byte(`{"jsonrpc":"2.0","id":null,"error":{"code":-32603,"message":"the gateway could not filter the list response"}}`)
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	lw.ResponseWriter.WriteHeader(http.StatusBadGateway)
	_, _ = lw.ResponseWriter.Write(body)
}

// parseOnOff reads `<option> on|off`.
func parseOnOff(d *caddyfile.Dispenser) (*bool, error) {
	name := d.Val()
	v, err := singleArg(d)
	if err != nil {
		return nil, err
	}
	if v != "on" && v != "off" {
		return nil, d.Errf("%s: %q, want on or off", name, v)
	}
	on := v == "on"
	return &on, nil
}
