package mcptoken

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

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
func (c *core) listKinds(calls []rpcCall) []listKind {
	if !c.filterLists {
		return nil
	}
	var out []listKind
	for _, call := range calls {
		for _, k := range listKinds {
			if call.method == k.method && !containsKind(out, k) {
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
// matched by their uriTemplate text).
func (c *core) listAllows(tok *verifiers.AccessToken, k listKind, name string) bool {
	if !tok.HasScopes(c.rules.method[k.call]) {
		return false
	}
	return tok.HasScopes(c.rules.byKind(k)[name])
}

// listAllowsAll reports whether tok passes every rule that could hide an
// entry of these lists: then nothing is hidden, and the response is not
// read at all.
func (c *core) listAllowsAll(tok *verifiers.AccessToken, kinds []listKind) bool {
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
	return &listWriter{ResponseWriter: w, c: c, tok: out.accepted.Token, kinds: out.lists, max: int(c.maxBody)}
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

// events passes on every complete event in lw.buf (and, at the end, what
// remains), filtering those that carry a list result.
func (lw *listWriter) events(end bool) error {
	for {
		n, next := eventEnd(lw.buf)
		if n < 0 {
			if len(lw.buf) > lw.max {
				lw.fail(fmt.Errorf("%w: an event larger than max_body (%d bytes)", errListUnfilterable, lw.max))
				return lw.err
			}
			if !end || len(bytes.TrimSpace(lw.buf)) == 0 {
				return nil
			}
			n, next = len(lw.buf), len(lw.buf)
		}
		if n > lw.max {
			lw.fail(fmt.Errorf("%w: an event larger than max_body (%d bytes)", errListUnfilterable, lw.max))
			return lw.err
		}
		event, err := lw.filterEvent(lw.buf[:n], lw.buf[n:next])
		if err != nil {
			lw.fail(err)
			return lw.err
		}
		if !lw.sent {
			lw.ResponseWriter.WriteHeader(lw.status)
			lw.sent = true
		}
		if _, err := lw.ResponseWriter.Write(event); err != nil {
			return err
		}
		lw.buf = lw.buf[:copy(lw.buf, lw.buf[next:])]
		lw.Flush()
	}
}

// eventEnd finds the blank line that ends the first event of an SSE
// stream: n is where that blank line starts (after the event's last line
// and its line ending), next where the next event starts; n is -1 when no
// event is complete. Lines end in CRLF, LF or CR.
func eventEnd(b []byte) (n, next int) {
	for i := 0; i < len(b); i++ {
		if b[i] != '\n' && b[i] != '\r' {
			continue
		}
		j := i + 1
		if b[i] == '\r' && j < len(b) && b[j] == '\n' {
			j++
		} else if b[i] == '\r' && j == len(b) {
			return -1, -1 // a CR at the end may be half of a CRLF
		}
		if j < len(b) && (b[j] == '\n' || b[j] == '\r') {
			k := j + 1
			if b[j] == '\r' {
				if k == len(b) {
					return -1, -1
				}
				if b[k] == '\n' {
					k++
				}
			}
			return j, k
		}
		i = j - 1
	}
	return -1, -1
}

// filterEvent returns the event (its lines, and sep, the blank line after
// them) with a list result in its data filtered; the event as it was when
// it carries none.
func (lw *listWriter) filterEvent(event, sep []byte) ([]byte, error) {
	var data [][]byte
	var other [][]byte
	for _, line := range splitLines(event) {
		if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			data = append(data, bytes.TrimPrefix(v, []byte(" ")))
		} else {
			other = append(other, line)
		}
	}
	out := append(append([]byte(nil), event...), sep...)
	payload := bytes.Join(data, []byte("\n"))
	if len(bytes.TrimSpace(payload)) == 0 {
		return out, nil // no message (a priming event, a comment)
	}
	filtered, err := lw.filterBody(payload) // notifications and errors come back as they were
	if err != nil {
		return nil, err
	}
	if bytes.Equal(filtered, payload) {
		return out, nil
	}
	var b bytes.Buffer
	for _, line := range other {
		b.Write(line)
		b.WriteByte('\n')
	}
	b.WriteString("data: ")
	b.Write(filtered) // compact JSON: no line breaks
	b.WriteString("\n\n")
	return b.Bytes(), nil
}

func splitLines(b []byte) [][]byte {
	var lines [][]byte
	for len(b) > 0 {
		i := bytes.IndexAny(b, "\r\n")
		if i < 0 {
			lines = append(lines, b)
			break
		}
		lines = append(lines, b[:i])
		if b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n' {
			i++
		}
		b = b[i+1:]
	}
	return lines
}

// filterBody filters a JSON-RPC response or batch of responses: in each
// result, the lists of the requested kinds keep only the entries the
// token allows. A body that is not JSON is an error (never passed on).
func (lw *listWriter) filterBody(body []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var msgs []json.RawMessage
		if err := json.Unmarshal(trimmed, &msgs); err != nil {
			return nil, fmt.Errorf("%w: not JSON: %v", errListUnfilterable, err)
		}
		changed := false
		for i, m := range msgs {
			f, err := lw.filterMessage(m)
			if err != nil {
				return nil, err
			}
			if f != nil {
				msgs[i], changed = f, true
			}
		}
		if !changed {
			return body, nil
		}
		return joinArray(msgs), nil
	}
	f, err := lw.filterMessage(trimmed)
	if err != nil || f == nil {
		return body, err
	}
	return f, nil
}

// filterMessage filters one JSON-RPC message; nil when it is unchanged.
func (lw *listWriter) filterMessage(msg []byte) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(msg, &obj); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object: %v", errListUnfilterable, err)
	}
	resKey, ok := member(obj, "result")
	if !ok {
		return nil, fmt.Errorf("%w: result given twice", errListUnfilterable)
	}
	var result map[string]json.RawMessage
	if resKey == "" || json.Unmarshal(obj[resKey], &result) != nil {
		return nil, nil // an error answer, a notification, or no list result
	}
	changed := false
	for _, k := range lw.kinds {
		// Go clients match member names without regard to case: so does
		// the filter, for every member that may be read as the list.
		for key, raw := range result {
			if !strings.EqualFold(key, k.key) {
				continue
			}
			b, err := lw.filterEntries(k, raw)
			if err != nil {
				return nil, err
			}
			if b != nil {
				result[key], changed = b, true
			}
		}
	}
	if !changed {
		return nil, nil
	}
	obj[resKey] = joinObject(result)
	return joinObject(obj), nil
}

// filterEntries filters one list; nil when every entry is kept. An entry
// without one readable name is hidden.
func (lw *listWriter) filterEntries(k listKind, raw json.RawMessage) ([]byte, error) {
	var entries []json.RawMessage
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, fmt.Errorf("%w: %s is not a list", errListUnfilterable, k.key)
	}
	kept := entries[:0]
	for _, e := range entries {
		var named map[string]json.RawMessage
		if json.Unmarshal(e, &named) != nil {
			continue
		}
		key, ok := member(named, k.field)
		var name string
		if ok && key != "" && json.Unmarshal(named[key], &name) == nil && lw.c.listAllows(lw.tok, k, name) {
			kept = append(kept, e)
		}
	}
	if len(kept) == len(entries) {
		return nil, nil
	}
	return joinArray(kept), nil
}

// joinArray writes a JSON array of values that a decoder already checked.
func joinArray(vals []json.RawMessage) []byte {
	n := 2
	for _, v := range vals {
		n += len(v) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, v := range vals {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, v...)
	}
	return append(b, ']')
}

// joinObject writes a JSON object of members whose values a decoder
// already checked (in Go's map order: JSON objects are unordered).
func joinObject(m map[string]json.RawMessage) []byte {
	n := 2
	for k, v := range m {
		n += len(k) + len(v) + 4
	}
	b := make([]byte, 0, n)
	b = append(b, '{')
	first := true
	for k, v := range m {
		if !first {
			b = append(b, ',')
		}
		first = false
		key, _ := json.Marshal(k) // escapes the name as JSON requires
		b = append(append(append(b, key...), ':'), v...)
	}
	return append(b, '}')
}

// member finds the member of obj named name, matched without regard to
// case as Go's encoding/json does: key is "" when there is none, and ok is
// false when several members match (a reader could take either).
func member(obj map[string]json.RawMessage, name string) (key string, ok bool) {
	for k := range obj {
		if strings.EqualFold(k, name) {
			if key != "" {
				return "", false
			}
			key = k
		}
	}
	return key, true
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
