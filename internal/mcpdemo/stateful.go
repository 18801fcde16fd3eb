package mcpdemo

import (
	"bytes"
	"io"
	"net"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// StatefulHandler serves the MCP server over streamable HTTP in stateful
// mode: initialize answers with an Mcp-Session-Id that later requests
// must carry (JSON responses), recording each request in rec (may be nil).
func StatefulHandler(rec *Recorder) http.Handler {
	srv := NewServer()
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv },
		&mcp.StreamableHTTPOptions{JSONResponse: true})
	if rec == nil {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 4<<20))
		r.Body = io.NopCloser(bytes.NewReader(body))
		rec.mu.Lock()
		rec.requests = append(rec.requests, Received{Method: r.Method, Header: r.Header.Clone(), Body: body})
		rec.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

// ServeStateful is Serve with StatefulHandler.
func ServeStateful(rec *Recorder) (addr string, stop func(), err error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: StatefulHandler(rec)}
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String(), func() { _ = srv.Close() }, nil
}
