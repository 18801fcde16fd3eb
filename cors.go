package mcptoken

import (
	"net/http"
	"strings"
)

// isPreflight reports a CORS preflight request.
func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions && r.Header.Get("Origin") != "" &&
		r.Header.Get("Access-Control-Request-Method") != ""
}

// corsMethods are the methods of MCP's Streamable HTTP transport.
const corsMethods = "GET, POST, DELETE"

// answerPreflight answers a CORS preflight at the gateway: it needs no
// token, and passing it on would let a request without a token (and with
// a body, which a preflight may carry) reach the backend. It allows the
// MCP methods and the headers the browser asks for; the answer to the
// request itself still comes from the backend, with its own CORS headers.
// A bearer token is no ambient credential, so allowing any origin to send
// one lets no page use a token it does not hold.
func answerPreflight(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Access-Control-Allow-Origin", "*")
	hdr.Set("Access-Control-Allow-Methods", corsMethods)
	if req := r.Header.Values("Access-Control-Request-Headers"); len(req) > 0 {
		hdr.Set("Access-Control-Allow-Headers", strings.Join(req, ", "))
	}
	hdr.Set("Access-Control-Max-Age", "86400")
	hdr.Add("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers")
	w.WriteHeader(http.StatusNoContent)
}
