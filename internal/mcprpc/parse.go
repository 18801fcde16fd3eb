// Package mcprpc reads what the gateway needs from an MCP request: the
// JSON-RPC body (Parse), its Content-Type and Content-Encoding
// (CheckContentType), and the 2026-07-28 Mcp-* header values
// (DecodeHeaderValue).
//
// The rule throughout: the gateway decides on the body the backend will
// execute, so whatever two JSON or HTTP readers could read differently is
// refused rather than read one way. Parse is a streaming tokenizer
// (github.com/go-json-experiment/json/jsontext) that builds no Go values
// for what it skips.
package mcprpc

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"unicode"

	"github.com/go-json-experiment/json/jsontext"
)

// ErrMalformed is wrapped by every Parse error: the body is not one
// JSON-RPC message or batch the gateway can read exactly as every backend
// would. The gateway answers 400.
var ErrMalformed = errors.New("malformed JSON-RPC body")

// Call is what the gateway needs from one JSON-RPC message. The byte
// slices alias the body given to Parse: do not modify the body while a
// Call is in use.
type Call struct {
	// Method is method; "" for a response, or when method is null.
	Method string
	// Name is params.name when it is a string or null, else params.uri
	// when it is (null reads as ""), when params is an object; names of
	// other types are ignored.
	Name string
	// ID is the raw JSON text of id (for the id of an error answer); nil
	// when absent.
	ID []byte
	// RawArguments is the raw JSON text of params.arguments, with
	// Options.RawArguments; nil when absent.
	RawArguments []byte
	// Arguments is params.arguments decoded (objects as map[string]any,
	// arrays as []any, numbers as float64), with Options.DecodeArguments;
	// nil when absent or null.
	Arguments any
}

// Options says what Parse keeps beyond method, name and id. The zero
// value keeps nothing else and is the fastest.
type Options struct {
	// RawArguments keeps params.arguments as raw JSON text.
	RawArguments bool
	// DecodeArguments keeps params.arguments decoded.
	DecodeArguments bool
}

// Parse reads a JSON-RPC message (an object) or batch (a non-empty array
// of objects). It returns one Call per message, and whether the body was
// a batch. Its guarantees, each so that the gateway and any backend read
// the same method, name and arguments:
//
//   - The body is one JSON value (RFC 8259) and nothing else: whitespace
//     around it is the JSON kind only (space, tab, CR, LF), and trailing
//     data ({...}}x, [...]{...}) is refused.
//   - Invalid UTF-8, and escapes of lone surrogates, are refused anywhere
//     (encoding/json would read them as U+FFFD, JavaScript as themselves).
//   - A duplicate object member name is refused at every depth, including
//     inside params.arguments (backends keep the last, or the first).
//   - Keys are matched exactly ("METHOD" is not "method"), and a key that
//     equals one the gateway reads under Unicode case folding but not
//     exactly ("METHOD", "Name", "paramſ") is refused: encoding/json-based
//     backends match keys that way and would read it. With arguments
//     requested, names inside arguments that are equal under case folding
//     are refused for the same reason.
//   - A leading byte order mark is refused: RFC 8259 §8.1 forbids sending
//     one; Express (iconv-lite) strips it and Go's encoding/json refuses
//     it, so accepting it would mean siding with one backend; no MCP
//     client sends one.
//   - method must be a string or null, else the message is refused;
//     params that is not an object is ignored; a name or uri that is not
//     a string or null is ignored. (As the gateway read them before.)
//   - Nesting deeper than 10000 is refused (jsontext's limit).
func Parse(body []byte, opts Options) (calls []Call, batch bool, err error) {
	if bytes.HasPrefix(body, []byte("\uFEFF")) {
		return nil, false, fmt.Errorf("%w: not a JSON-RPC message: leading byte order mark", ErrMalformed)
	}
	p := parsers.Get().(*parser)
	defer p.release()
	p.reset(body, opts)

	switch p.dec.PeekKind() {
	case '{':
		c, err := p.message()
		if err != nil {
			return nil, false, err
		}
		calls = []Call{c}
	case '[':
		batch = true
		if _, err := p.dec.ReadToken(); err != nil {
			return nil, true, p.fail("not a JSON-RPC batch", err)
		}
		for p.dec.PeekKind() != ']' {
			c, err := p.message()
			if err != nil {
				return nil, true, err
			}
			calls = append(calls, c)
		}
		if _, err := p.dec.ReadToken(); err != nil {
			return nil, true, p.fail("not a JSON-RPC batch", err)
		}
		if len(calls) == 0 {
			return nil, true, fmt.Errorf("%w: not a JSON-RPC batch: empty", ErrMalformed)
		}
	default:
		if len(bytes.Trim(body, " \t\r\n")) == 0 {
			return nil, false, fmt.Errorf("%w: not a JSON-RPC message: empty body", ErrMalformed)
		}
		if _, err := p.dec.ReadValue(); err != nil {
			return nil, false, p.fail("not a JSON-RPC message", err)
		}
		return nil, false, fmt.Errorf("%w: not a JSON-RPC message: not an object or array", ErrMalformed)
	}
	if tok, err := p.dec.ReadToken(); err != io.EOF {
		if err == nil {
			err = fmt.Errorf("a second value starting with %v", tok.Kind())
		}
		return nil, batch, p.fail("trailing data after the JSON value", err)
	}
	return calls, batch, nil
}

// The names Parse reads, per object.
var (
	messageNames = []string{"jsonrpc", "id", "method", "params"}
	paramsNames  = []string{"name", "uri", "arguments"}
)

type parser struct {
	body    []byte
	opts    Options
	buf     bytes.Buffer
	dec     jsontext.Decoder
	scratch [64]byte
}

var (
	parsers   = sync.Pool{New: func() any { return new(parser) }}
	emptyBody = []byte{}
)

func (p *parser) reset(body []byte, opts Options) {
	p.body, p.opts = body, opts
	p.buf = *bytes.NewBuffer(body)
	p.dec.Reset(&p.buf)
}

// release forgets the body, so the pool does not keep it alive.
func (p *parser) release() {
	p.body = nil
	p.buf = *bytes.NewBuffer(emptyBody)
	p.dec.Reset(&p.buf)
	parsers.Put(p)
}

// fail wraps a decoding error, bounding its text (it may quote the body).
func (p *parser) fail(what string, err error) error {
	if errors.Is(err, ErrMalformed) {
		return err
	}
	msg := err.Error()
	if errors.Is(err, jsontext.ErrDuplicateName) {
		what += ": duplicate key"
	}
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return fmt.Errorf("%w: %s: %s", ErrMalformed, what, msg)
}

// name reads an object member name, unescaped; the result is valid until
// the next read.
func (p *parser) name() ([]byte, error) {
	v, err := p.dec.ReadValue()
	if err != nil {
		return nil, err
	}
	return unquote(v, p.scratch[:0])
}

// value reads a value and returns its raw text as a slice of the body.
func (p *parser) value() ([]byte, error) {
	v, err := p.dec.ReadValue()
	if err != nil {
		return nil, err
	}
	end := int(p.dec.InputOffset())
	return p.body[end-len(v) : end : end], nil
}

// stringOrNull reads a value that counts only when it is a string or null
// (null reads as ""); ok is false, and the value skipped, for any other.
func (p *parser) stringOrNull() (s string, ok bool, err error) {
	switch p.dec.PeekKind() {
	case '"':
		v, err := p.dec.ReadValue()
		if err != nil {
			return "", false, err
		}
		b, err := unquote(v, p.scratch[:0])
		if err != nil {
			return "", false, err
		}
		if known, ok := knownStrings[string(b)]; ok {
			return known, true, nil
		}
		return string(b), true, nil
	case 'n':
		_, err := p.dec.ReadValue()
		return "", err == nil, err
	default:
		return "", false, p.dec.SkipValue()
	}
}

// message reads one JSON-RPC message object.
func (p *parser) message() (Call, error) {
	var c Call
	if p.dec.PeekKind() != '{' {
		if err := p.dec.SkipValue(); err != nil {
			return c, p.fail("not a JSON-RPC message", err)
		}
		return c, fmt.Errorf("%w: not a JSON-RPC message: not an object", ErrMalformed)
	}
	if _, err := p.dec.ReadToken(); err != nil {
		return c, p.fail("not a JSON-RPC message", err)
	}
	for p.dec.PeekKind() != '}' {
		name, err := p.name()
		if err != nil {
			return c, p.fail("not a JSON-RPC message", err)
		}
		switch string(name) {
		case "method":
			method, ok, err := p.stringOrNull()
			if err != nil {
				return c, p.fail("not a JSON-RPC message", err)
			}
			if !ok {
				return c, fmt.Errorf("%w: method is not a string", ErrMalformed)
			}
			c.Method = method
		case "id":
			if c.ID, err = p.value(); err != nil {
				return c, p.fail("not a JSON-RPC message", err)
			}
		case "params":
			if p.dec.PeekKind() == '{' {
				err = p.params(&c)
			} else {
				err = p.dec.SkipValue()
			}
			if err != nil {
				return c, p.fail("params", err)
			}
		default:
			if err := foldCheck(name, messageNames); err != nil {
				return c, err
			}
			if err := p.dec.SkipValue(); err != nil {
				return c, p.fail("not a JSON-RPC message", err)
			}
		}
	}
	if _, err := p.dec.ReadToken(); err != nil {
		return c, p.fail("not a JSON-RPC message", err)
	}
	return c, nil
}

// params reads the params object into c.
func (p *parser) params(c *Call) error {
	if _, err := p.dec.ReadToken(); err != nil {
		return err
	}
	var name, uri string
	var hasName, hasURI bool
	for p.dec.PeekKind() != '}' {
		key, err := p.name()
		if err != nil {
			return err
		}
		switch string(key) {
		case "name":
			if name, hasName, err = p.stringOrNull(); err != nil {
				return err
			}
		case "uri":
			if uri, hasURI, err = p.stringOrNull(); err != nil {
				return err
			}
		case "arguments":
			if err := p.arguments(c); err != nil {
				return err
			}
		default:
			if err := foldCheck(key, paramsNames); err != nil {
				return err
			}
			if err := p.dec.SkipValue(); err != nil {
				return err
			}
		}
	}
	if _, err := p.dec.ReadToken(); err != nil {
		return err
	}
	switch {
	case hasName:
		c.Name = name
	case hasURI:
		c.Name = uri
	}
	return nil
}

// arguments reads params.arguments as the options ask.
func (p *parser) arguments(c *Call) error {
	if !p.opts.RawArguments && !p.opts.DecodeArguments {
		return p.dec.SkipValue()
	}
	start := int(p.dec.InputOffset())
	v, err := p.walk(p.opts.DecodeArguments)
	if err != nil {
		return err
	}
	if p.opts.DecodeArguments {
		c.Arguments = v
	}
	if p.opts.RawArguments {
		end := int(p.dec.InputOffset())
		// Between the name and the value: whitespace and one colon.
		c.RawArguments = bytes.TrimLeft(p.body[start:end:end], " \t\r\n:")
	}
	return nil
}

// walk reads one value, refusing object member names equal under case
// folding; with build, it returns the value decoded.
func (p *parser) walk(build bool) (any, error) {
	tok, err := p.dec.ReadToken()
	if err != nil {
		return nil, err
	}
	switch tok.Kind() {
	case '{':
		var obj map[string]any
		if build {
			obj = map[string]any{}
		}
		var keys foldSet
		for p.dec.PeekKind() != '}' {
			kt, err := p.dec.ReadToken()
			if err != nil {
				return nil, err
			}
			key := kt.String()
			if err := keys.add(key); err != nil {
				return nil, err
			}
			v, err := p.walk(build)
			if err != nil {
				return nil, err
			}
			if build {
				obj[key] = v
			}
		}
		if _, err := p.dec.ReadToken(); err != nil {
			return nil, err
		}
		if build {
			return obj, nil
		}
		return nil, nil
	case '[':
		var arr []any
		if build {
			arr = []any{}
		}
		for p.dec.PeekKind() != ']' {
			v, err := p.walk(build)
			if err != nil {
				return nil, err
			}
			if build {
				arr = append(arr, v)
			}
		}
		if _, err := p.dec.ReadToken(); err != nil {
			return nil, err
		}
		if build {
			return arr, nil
		}
		return nil, nil
	case '"':
		if build {
			return tok.String(), nil
		}
	case '0':
		if build {
			f, err := tok.Float()
			if err != nil {
				return nil, fmt.Errorf("number %s: %w", tok.String(), err)
			}
			return f, nil
		}
	case 't', 'f':
		if build {
			return tok.Bool(), nil
		}
	}
	return nil, nil // null, or not building
}

// foldSet holds an object's member names, to refuse two that are equal
// under Unicode case folding (exact duplicates are refused by jsontext).
type foldSet struct {
	few  []string            // up to 8 names, compared pairwise
	many map[string]struct{} // beyond, by fold key
}

func (s *foldSet) add(name string) error {
	if s.many == nil {
		for _, n := range s.few {
			if strings.EqualFold(n, name) {
				return fmt.Errorf("member names %q and %q differ only in case", short(n), short(name))
			}
		}
		if len(s.few) < 8 {
			s.few = append(s.few, name)
			return nil
		}
		s.many = make(map[string]struct{}, 16)
		for _, n := range s.few {
			s.many[foldKey(n)] = struct{}{}
		}
	}
	k := foldKey(name)
	if _, dup := s.many[k]; dup {
		return fmt.Errorf("member name %q repeats another but for case", short(name))
	}
	s.many[k] = struct{}{}
	return nil
}

// short bounds a name quoted in an error.
func short(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// foldKey maps each rune to the smallest rune of its case-folding orbit,
// so foldKey(a) == foldKey(b) exactly when strings.EqualFold(a, b).
func foldKey(s string) string {
	return strings.Map(func(r rune) rune {
		m := r
		for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
			m = min(m, f)
		}
		return m
	}, s)
}

// foldCheck refuses a name that is not one of names but equals one under
// Unicode case folding (as encoding/json matches keys).
func foldCheck(name []byte, names []string) error {
	for _, n := range names {
		if string(name) != n && bytes.EqualFold(name, []byte(n)) {
			return fmt.Errorf("%w: key %q is %q but for case", ErrMalformed, name, n)
		}
	}
	return nil
}

// unquote returns a JSON string's content, unescaped into scratch when it
// has escapes.
func unquote(v jsontext.Value, scratch []byte) ([]byte, error) {
	if len(v) >= 2 && bytes.IndexByte(v, '\\') < 0 {
		return v[1 : len(v)-1], nil
	}
	return jsontext.AppendUnquote(scratch, v)
}

// knownStrings spares an allocation for the method names clients send
// most.
var knownStrings = map[string]string{}

func init() {
	for _, s := range []string{
		"initialize", "ping", "tools/list", "tools/call", "resources/list", "resources/read",
		"resources/templates/list", "resources/subscribe", "resources/unsubscribe", "prompts/list",
		"prompts/get", "completion/complete", "logging/setLevel", "subscriptions/listen",
		"notifications/initialized", "notifications/cancelled", "notifications/progress",
		"notifications/roots/list_changed",
	} {
		knownStrings[s] = s
	}
}
