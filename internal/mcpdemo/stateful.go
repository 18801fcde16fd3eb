package mcpdemo

import (
	"net"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// StatefulHandler serves the MCP server over streamable HTTP in stateful
// mode: initialize answers with an Mcp-Session-Id that later requests
// must carry (JSON responses), recording each request and tool execution
// in rec (may be nil).
func StatefulHandler(rec *Recorder) http.Handler {
	srv := newServer(rec)
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv },
		&mcp.StreamableHTTPOptions{JSONResponse: true})
	if rec == nil {
		return h
	}
	return rec.Wrap(h)
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
