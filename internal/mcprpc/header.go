package mcprpc

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// ErrBadHeaderValue is wrapped by DecodeHeaderValue's errors (the gateway
// answers 400).
var ErrBadHeaderValue = errors.New("invalid MCP header value")

// The Base64 sentinel of MCP 2026-07-28, lowercase and case-sensitive.
const (
	base64Prefix = "=?base64?"
	base64Suffix = "?="
)

// DecodeHeaderValue reads an Mcp-Name (or Mcp-Param-*) header value as
// MCP 2026-07-28 sends it (basic/transports/streamable-http, "Value
// Encoding"): a value that cannot be a plain ASCII header value (non-ASCII,
// control characters, leading or trailing whitespace, or one that looks
// like the sentinel) is sent as "=?base64?" + standard Base64 of its UTF-8
// + "?=". The markers "are case-sensitive and MUST appear exactly as
// shown (lowercase)", so "=?BASE64?...?=" is a plain value; and servers
// "MUST decode an encoded Mcp-Name or Mcp-Param-{Name} value before
// comparing it to the corresponding request body value". The revision
// defines the sentinel for Mcp-Name and Mcp-Param-* only, not Mcp-Method.
//
// A plain value is returned as is when it is visible ASCII or space (what
// the revision allows unencoded). An encoded value is decoded strictly
// (standard alphabet, padding, no line breaks, canonical padding bits)
// and must be UTF-8. Malformed Base64, invalid UTF-8, and control
// characters in either form (C0, DEL, C1, tab included) are errors
// wrapping ErrBadHeaderValue: no tool name, prompt name or resource URI
// holds one, so this function is for those, not for free-text
// Mcp-Param-* values (which may carry a newline).
func DecodeHeaderValue(v string) (string, error) {
	enc, ok := strings.CutPrefix(v, base64Prefix)
	if ok {
		enc, ok = strings.CutSuffix(enc, base64Suffix)
	}
	if !ok {
		for i := range len(v) {
			if c := v[i]; c < 0x20 || c > 0x7e {
				return "", fmt.Errorf("%w: byte 0x%02x in a plain value (control or non-ASCII characters must be Base64-encoded)", ErrBadHeaderValue, c)
			}
		}
		return v, nil
	}
	for i := range len(enc) {
		if c := enc[i]; !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/' || c == '=') {
			return "", fmt.Errorf("%w: byte 0x%02x in Base64", ErrBadHeaderValue, c)
		}
	}
	raw, err := base64.StdEncoding.Strict().DecodeString(enc)
	if err != nil {
		return "", fmt.Errorf("%w: Base64: %v", ErrBadHeaderValue, err)
	}
	if !utf8.Valid(raw) {
		return "", fmt.Errorf("%w: decoded value is not UTF-8", ErrBadHeaderValue)
	}
	s := string(raw)
	for _, r := range s {
		if unicode.IsControl(r) {
			return "", fmt.Errorf("%w: control character %U in the decoded value", ErrBadHeaderValue, r)
		}
	}
	return s, nil
}
