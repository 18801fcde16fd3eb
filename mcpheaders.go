package mcptoken

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/mcptoken/caddy-mcp-token/internal/mcprpc"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// The request headers of MCP 2026-07-28 (basic/transports/streamable-http,
// "Standard Headers", SEP-2243): a client mirrors the JSON-RPC method in
// Mcp-Method and the tool or prompt name or resource URI in Mcp-Name, so
// intermediaries can route without reading the body. A gateway that
// decides on the body must hold the two to agree, or a backend routing on
// the headers would run what the gateway did not judge. Mcp-Param-*
// headers are the backend's to check; the gateway passes them unchanged.

// ProtocolVersionHeader carries the MCP revision the client speaks.
const ProtocolVersionHeader = "Mcp-Protocol-Version"

// headersRequiredFrom is the first revision whose requests must carry
// Mcp-Method (and Mcp-Name for the named methods): the revision's servers
// "MUST reject" a request missing a required standard header.
const headersRequiredFrom = "2026-07-28"

// CodeHeaderMismatch is the JSON-RPC error code of MCP 2026-07-28 for a
// request whose standard headers are missing, malformed or disagree with
// the body, answered with HTTP 400.
const CodeHeaderMismatch = -32020

// mcpHeaders are the standard MCP request headers, read once.
type mcpHeaders struct {
	method, name []string
	version      string // MCP-Protocol-Version, "" when absent
}

func readMcpHeaders(h http.Header) mcpHeaders {
	// Canonical keys read from the map directly, as net/http stores them
	// (Values and Get would canonicalize the key again on every request).
	m := mcpHeaders{method: h["Mcp-Method"], name: h["Mcp-Name"]}
	if v := h[ProtocolVersionHeader]; len(v) > 0 {
		m.version = v[0]
	}
	return m
}

// present reports whether the request carries Mcp-Method or Mcp-Name.
func (m mcpHeaders) present() bool { return len(m.method) > 0 || len(m.name) > 0 }

// required reports whether the request's revision requires the headers:
// MCP-Protocol-Version is a date (YYYY-MM-DD) no earlier than 2026-07-28.
// Requests of older revisions (and without the header) are judged as
// before: the headers are compared when present.
func (m mcpHeaders) required() bool {
	v := m.version
	if len(v) != len("2006-01-02") || v[4] != '-' || v[7] != '-' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if i != 4 && i != 7 && (v[i] < '0' || v[i] > '9') {
			return false
		}
	}
	return v >= headersRequiredFrom
}

// namedMethods are the methods whose Mcp-Name is required from 2026-07-28.
func namedMethod(method string) bool {
	return method == "tools/call" || method == "prompts/get" || method == "resources/read"
}

// check compares the headers with the parsed body. Every failure is a
// *headerError (HTTP 400, JSON-RPC -32020).
func (m mcpHeaders) check(calls []mcprpc.Call, batch bool) error {
	fail := func(format string, args ...any) error {
		var id json.RawMessage
		if !batch && validID(calls[0].ID) {
			id = calls[0].ID
		}
		return &headerError{id: id, detail: fmt.Sprintf(format, args...)}
	}
	required := m.required()
	if !m.present() && !required {
		return nil
	}
	if batch {
		if m.present() {
			return fail("Mcp-Method or Mcp-Name on a batch")
		}
		return nil
	}
	call := calls[0]
	if len(m.method) > 1 || len(m.name) > 1 {
		return fail("Mcp-Method or Mcp-Name given more than once")
	}
	switch {
	case len(m.method) == 1 && m.method[0] != call.Method:
		return fail("Mcp-Method %q, body method %q", m.method[0], call.Method)
	case len(m.method) == 0 && (len(m.name) > 0 || (required && call.Method != "")):
		return fail("missing required Mcp-Method header")
	}
	if len(m.name) == 0 {
		if required && namedMethod(call.Method) {
			return fail("missing required Mcp-Name header for %s", call.Method)
		}
		return nil
	}
	name, err := decodeHeaderValue(m.name[0])
	if err != nil {
		return fail("Mcp-Name: %v", err)
	}
	if name != call.Name {
		return fail("Mcp-Name %q, body name %q", name, call.Name)
	}
	return nil
}

// headerError is a refusal of the MCP headers: ErrHeaderMismatch, with
// the id of the request for the JSON-RPC error answer.
type headerError struct {
	id     json.RawMessage // the request's id; nil: null
	detail string
}

func (e *headerError) Error() string        { return "MCP headers: " + e.detail }
func (e *headerError) Is(target error) bool { return target == verifiers.ErrHeaderMismatch }

// writeHeaderError answers a refused header check as MCP 2026-07-28 asks
// (streamable-http, "Standard Headers": HTTP 400 Bad Request with a
// JSON-RPC error whose code is -32020), with the request's id (null when
// it has none, or for a batch). The message is fixed text: the body and
// the header values are the client's, and are not echoed.
func writeHeaderError(w http.ResponseWriter, r *http.Request, err error) {
	var id json.RawMessage
	if he, ok := err.(*headerError); ok && he.id != nil {
		id = he.id
	} else {
		id = json.RawMessage("null")
	}
	body := make([]byte, 0, 160)
	body = append(body, `{"jsonrpc":"2.0","id":`...)
	body = append(body, id...)
	body = append(body, `,"error":{"code":-32020,"message":"MCP request headers (Mcp-Method, Mcp-Name) are missing, malformed or do not match the JSON-RPC body"}}`...)
	hdr := w.Header()
	if r.Header.Get("Origin") != "" {
		hdr.Set("Access-Control-Allow-Origin", "*") // browser clients read the error
	}
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusBadRequest)
	_, _ = w.Write(body)
}

// validID reports an id a JSON-RPC error answer may echo: a string or a
// number (null, objects and arrays are answered with null).
func validID(id []byte) bool {
	return len(id) > 0 && (id[0] == '"' || id[0] == '-' || ('0' <= id[0] && id[0] <= '9'))
}

// decodeHeaderValue reads an Mcp-Name value as MCP 2026-07-28 sends it
// (streamable-http, "Value Encoding"): a value that cannot be a plain
// ASCII header value is sent as "=?base64?" + standard Base64 of its
// UTF-8 + "?=" (lowercase markers), and servers must decode it before
// comparing it with the body. Malformed Base64, invalid UTF-8 and control
// characters (in either form) are refused.
//
// A plain value of UTF-8 bytes (no control characters) is read as it is:
// the official Go SDK (v1.8.0) sends a non-ASCII name that way, and its
// server compares it so; what must agree with the body is then the bytes
// themselves. internal/mcprpc.DecodeHeaderValue, meant to replace this
// function, refuses such values: keep this leniency when merging, or the
// Go SDK client cannot call a non-ASCII tool through the gateway.
func decodeHeaderValue(v string) (string, error) {
	enc, ok := strings.CutPrefix(v, "=?base64?")
	if ok {
		enc, ok = strings.CutSuffix(enc, "?=")
	}
	if !ok {
		return v, checkText(v, "the value")
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(enc)
	if err != nil || strings.ContainsAny(enc, "\r\n") {
		return "", fmt.Errorf("malformed Base64")
	}
	s := string(raw)
	return s, checkText(s, "the decoded value")
}

// checkText refuses invalid UTF-8 and control characters (C0, DEL, C1).
func checkText(s, what string) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("%s is not UTF-8", what)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Errorf("control character %U in %s", r, what)
		}
	}
	return nil
}
