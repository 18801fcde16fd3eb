// Package mcpdemo is a small MCP server built with the official Go SDK,
// used by the demo command and the end-to-end tests as the protected
// backend. It is not part of the module's API.
package mcpdemo

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// EchoIn is the echo tool's input.
type EchoIn struct {
	Text string `json:"text" jsonschema:"the text to echo back"`
}

// EchoOut is the echo tool's output.
type EchoOut struct {
	Text string `json:"text"`
}

// WhoAmIOut reports what the backend received from the gateway.
type WhoAmIOut struct {
	// Client is the X-MCP-Client header (set by reverse_proxy header_up).
	Client string `json:"client"`
	// Scopes is the X-MCP-Scopes header.
	Scopes string `json:"scopes"`
	// Authorization reports whether an Authorization header reached the backend.
	Authorization bool `json:"authorization"`
}

// DeployIn is the deploy tool's input.
type DeployIn struct {
	Service string `json:"service" jsonschema:"the service to deploy"`
}

// NewServer returns an MCP server with three tools: echo, whoami and deploy.
func NewServer() *mcp.Server { return newServer(nil) }

// newServer builds the server; each tool execution is recorded in rec
// (may be nil), so tests can tell a refused call never ran.
func newServer(rec *Recorder) *mcp.Server {
	s := mcp.NewServer(&mcp.Implementation{Name: "mcp-demo", Version: "1.0.0"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "echo", Description: "Echo the text back."},
		func(_ context.Context, req *mcp.CallToolRequest, in EchoIn) (*mcp.CallToolResult, EchoOut, error) {
			rec.ran(req)
			return nil, EchoOut(in), nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "whoami", Description: "Report the identity headers the gateway forwarded."},
		func(_ context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, WhoAmIOut, error) {
			rec.ran(req)
			var out WhoAmIOut
			if req.Extra != nil && req.Extra.Header != nil {
				out.Client = req.Extra.Header.Get("X-MCP-Client")
				out.Scopes = req.Extra.Header.Get("X-MCP-Scopes")
				out.Authorization = req.Extra.Header.Get("Authorization") != ""
			}
			return nil, out, nil
		})
	mcp.AddTool(s, &mcp.Tool{Name: "deploy", Description: "Pretend to deploy a service."},
		func(_ context.Context, req *mcp.CallToolRequest, in DeployIn) (*mcp.CallToolResult, EchoOut, error) {
			rec.ran(req)
			return nil, EchoOut{Text: "deployed " + in.Service}, nil
		})
	return s
}

// Recorder remembers the requests the backend received (headers and
// bodies) and the tools it executed, so tests can see exactly what the
// gateway forwarded and prove that a refused call never ran. A nil
// *Recorder records nothing.
type Recorder struct {
	mu       sync.Mutex
	requests []Received
	tools    []ToolRun
}

// Received is one request as the backend got it.
type Received struct {
	Method string
	Header http.Header
	Body   []byte
}

// ToolRun is one execution of a tool by the backend.
type ToolRun struct {
	Name      string
	Arguments json.RawMessage
	// Client is the X-MCP-Client header of the request that ran it.
	Client string
}

func (r *Recorder) ran(req *mcp.CallToolRequest) {
	if r == nil || req == nil || req.Params == nil {
		return
	}
	run := ToolRun{Name: req.Params.Name, Arguments: req.Params.Arguments}
	if req.Extra != nil && req.Extra.Header != nil {
		run.Client = req.Extra.Header.Get("X-MCP-Client")
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tools = append(r.tools, run)
}

// ToolRuns returns the tool executions so far, oldest first.
func (r *Recorder) ToolRuns() []ToolRun {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]ToolRun(nil), r.tools...)
}

// Ran is the number of executions of the named tool ("" counts them all).
func (r *Recorder) Ran(tool string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, run := range r.tools {
		if tool == "" || run.Name == tool {
			n++
		}
	}
	return n
}

// Last returns the headers of the last request received.
func (r *Recorder) Last() http.Header { return r.LastRequest().Header }

// LastRequest returns the last request received.
func (r *Recorder) LastRequest() Received {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.requests) == 0 {
		return Received{}
	}
	return r.requests[len(r.requests)-1]
}

// Count is the number of requests received.
func (r *Recorder) Count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.requests)
}

// Handler serves the MCP server over streamable HTTP (stateless, JSON
// responses), recording each request and tool execution in rec (may be nil).
func Handler(rec *Recorder) http.Handler {
	srv := newServer(rec)
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv },
		&mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true})
	if rec == nil {
		return h
	}
	return rec.Wrap(h)
}

// Wrap returns h recording each request it receives in r.
func (r *Recorder) Wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(req.Body, 4<<20))
		req.Body = io.NopCloser(bytes.NewReader(body))
		r.mu.Lock()
		r.requests = append(r.requests, Received{Method: req.Method, Header: req.Header.Clone(), Body: body})
		r.mu.Unlock()
		h.ServeHTTP(w, req)
	})
}

// Serve starts the MCP server on a fresh 127.0.0.1 port and returns its
// address (host:port) and a function that stops it.
func Serve(rec *Recorder) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: Handler(rec)}
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String(), func() { _ = srv.Close() }, nil
}
