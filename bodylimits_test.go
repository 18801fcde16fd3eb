package mcptoken

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"golang.org/x/sync/semaphore"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

func rulesCore() *core {
	return &core{verifier: fakeVerifier{tok: &verifiers.AccessToken{ClientID: "c1", Scopes: []string{"deploy:write"}}},
		logger: zap.NewNop(), maxBody: DefaultMaxBody, bodies: semaphore.NewWeighted(BodyBudget),
		rules: scopeRules{tool: map[string][]string{"deploy": {"deploy:write"}}}}
}

// TestInspectReadsWhatBackendsRead (issue 10 items 1 and 12, wired): a
// body the gateway inspects must be application/json in UTF-8 without
// Content-Encoding (415 otherwise), and one JSON-RPC value with nothing
// after it.
func TestInspectReadsWhatBackendsRead(t *testing.T) {
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deploy"}}`
	cases := []struct {
		name, contentType, encoding, body string
		err                               error
	}{
		{"utf-8", "application/json; charset=UTF-8", "", call, nil},
		{"no charset", "application/json", "", call, nil},
		{"utf-7 charset", "application/json; charset=utf-7", "", call, verifiers.ErrUnsupportedMediaType},
		{"utf-16 charset", "application/json; charset=utf-16le", "", call, verifiers.ErrUnsupportedMediaType},
		{"gzip", "application/json", "gzip", call, verifiers.ErrUnsupportedMediaType},
		{"text/plain", "text/plain", "", call, verifiers.ErrUnsupportedMediaType},
		{"no Content-Type", "", "", call, verifiers.ErrUnsupportedMediaType},
		{"trailing brace and data", "application/json", "", call + "}x", verifiers.ErrBadBody},
		{"array then object", "application/json", "", "[" + call + "]" + call, verifiers.ErrBadBody},
		{"byte order mark", "application/json", "", "\uFEFF" + call, verifiers.ErrBadBody},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(tc.body))
			if tc.contentType != "" {
				r.Header.Set("Content-Type", tc.contentType)
			}
			if tc.encoding != "" {
				r.Header.Set("Content-Encoding", tc.encoding)
			}
			_, _, err := rulesCore().inspect(httptest.NewRecorder(), r)
			if !errors.Is(err, tc.err) && !(err == nil && tc.err == nil) {
				t.Fatalf("inspect: %v, want %v", err, tc.err)
			}
			if status := verifiers.Classify(err).Status; tc.err == verifiers.ErrUnsupportedMediaType && status != 415 {
				t.Fatalf("status %d, want 415", status)
			}
		})
	}
}

// TestPreflightAndMethodBodies (issue 10 item 5): a CORS preflight is
// answered by the gateway and never reaches the backend, body or not; a
// body on a method MCP does not send bodies with is refused when rules
// exist.
func TestPreflightAndMethodBodies(t *testing.T) {
	h := &Handler{module{core: func() *core { c := rulesCore(); c.corsPreflight = true; return c }()}}
	serve := func(r *http.Request) (*httptest.ResponseRecorder, bool) {
		w := httptest.NewRecorder()
		reached := false
		_ = h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { reached = true; return nil }))
		return w, reached
	}
	pre := newRequest()
	pre.Method = http.MethodOptions
	pre.Body = io.NopCloser(strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deploy"}}`))
	pre.ContentLength = 70
	pre.Header.Set("Origin", "https://app.example")
	pre.Header.Set("Access-Control-Request-Method", "POST")
	pre.Header.Set("Access-Control-Request-Headers", "authorization, content-type, mcp-session-id")
	w, reached := serve(pre)
	if reached || w.Code != http.StatusNoContent {
		t.Fatalf("preflight: status %d, reached the backend %v", w.Code, reached)
	}
	if w.Header().Get("Access-Control-Allow-Methods") != corsMethods ||
		w.Header().Get("Access-Control-Allow-Headers") != "authorization, content-type, mcp-session-id" {
		t.Fatalf("preflight headers %v", w.Header())
	}
	for _, method := range []string{http.MethodDelete, http.MethodGet, http.MethodPut, http.MethodPatch} {
		r := newRequest("Bearer abc")
		r.Method = method
		r.Header.Set("Content-Type", "application/json")
		if w, reached := serve(r); reached || w.Code != 400 {
			t.Fatalf("%s with a body: status %d, reached %v", method, w.Code, reached)
		}
	}
	r := newRequest("Bearer abc")
	r.Method, r.Body, r.ContentLength = http.MethodDelete, http.NoBody, 0
	if w, reached := serve(r); !reached {
		t.Fatalf("DELETE without a body: status %d", w.Code)
	}
}

// stallingBody signals its first Read, then blocks until released.
type stallingBody struct {
	started, release chan struct{}
	once             bool
}

func (b *stallingBody) Read(p []byte) (int, error) {
	if !b.once {
		b.once = true
		close(b.started)
	}
	<-b.release
	return 0, io.EOF
}

// TestBodyBudget (issue 10 item 10): while bodies being read hold the
// budget, another inspection is refused at once with 503 and Retry-After,
// before reading anything; a Content-Length beyond max_body is refused
// before reading; the budget comes back after the read.
func TestBodyBudget(t *testing.T) {
	c := rulesCore()
	c.bodies = semaphore.NewWeighted(100)
	h := &Handler{module{core: c}}
	post := func(body io.Reader, length int64) *httptest.ResponseRecorder {
		r := newRequest("Bearer abc")
		r.Body, r.ContentLength = io.NopCloser(body), length
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		_ = h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(http.ResponseWriter, *http.Request) error { return nil }))
		return w
	}
	slow := &stallingBody{started: make(chan struct{}), release: make(chan struct{})}
	done := make(chan *httptest.ResponseRecorder)
	go func() { done <- post(slow, 60) }()
	<-slow.started
	w := post(strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`), 60)
	if w.Code != http.StatusServiceUnavailable || w.Header().Get("Retry-After") == "" {
		t.Fatalf("over the budget: status %d, Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	close(slow.release)
	<-done
	body := `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	if w := post(strings.NewReader(body), int64(len(body))); w.Code != 200 {
		t.Fatalf("after the slow body: status %d", w.Code)
	}
	if w := post(strings.NewReader(body), DefaultMaxBody+1); w.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("Content-Length over max_body: %d", w.Code)
	}
}

// TestBodyTimeout (issue 10 item 10): a client that stops sending its
// body gets 408 after the read deadline, over a real connection.
func TestBodyTimeout(t *testing.T) {
	c := rulesCore()
	c.bodyTimeout = 300 * time.Millisecond
	h := &Handler{module{core: c}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = newRequestFrom(r)
		_ = h.ServeHTTP(w, r, caddyhttp.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) error { w.WriteHeader(200); return nil }))
	}))
	defer srv.Close()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_, _ = fmt.Fprintf(conn, "POST /mcp HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer abc\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"jsonrpc\":")
	_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second)) // a bound on the test, not the subject
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer to a stalled body: %v", err)
	}
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Fatalf("stalled body: status %d, want 408", resp.StatusCode)
	}
}

// TestMaxBodyCeiling (issue 10 item 10): max_body cannot exceed 16 MiB.
func TestMaxBodyCeiling(t *testing.T) {
	var cfg Config
	err := cfg.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mcp_token {\n static_token a b\n max_body 1GiB\n}"))
	if err == nil || !strings.Contains(err.Error(), "between 1B and 16MiB") {
		t.Fatalf("max_body 1GiB: %v", err)
	}
	if err := new(Config).UnmarshalCaddyfile(caddyfile.NewTestDispenser("mcp_token {\n static_token a b\n max_body 16MiB\n}")); err != nil {
		t.Fatalf("max_body 16MiB: %v", err)
	}
}

// newRequestFrom gives a server request the replacer Caddy would.
func newRequestFrom(r *http.Request) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
}
