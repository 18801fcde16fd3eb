package mcprpc

import (
	"encoding/json"
	"strconv"
)

// CodeHeaderMismatch is the JSON-RPC error code MCP 2026-07-28 gives a
// request whose Mcp-* headers disagree with its body, or lack or garble
// one (HeaderMismatch; answered with HTTP 400).
const CodeHeaderMismatch = -32020

// ErrorBody is a JSON-RPC error response: {"jsonrpc":"2.0","id":<id>,
// "error":{"code":<code>,"message":<message>}}. id is a Call's raw ID,
// written as is (Parse checked it is JSON); nil writes null.
func ErrorBody(id []byte, code int, message string) []byte {
	msg, _ := json.Marshal(message) // a string always marshals
	b := make([]byte, 0, 64+len(id)+len(msg))
	b = append(b, `{"jsonrpc":"2.0","id":`...)
	if id == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, id...)
	}
	b = append(b, `,"error":{"code":`...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, `,"message":`...)
	b = append(b, msg...)
	return append(b, "}}"...)
}
