package mcprpc

import (
	"errors"
	"fmt"
	"mime"
	"net/http"
	"strings"
)

// Errors of CheckContentType. Every one wraps ErrUnsupportedMediaType
// (the gateway answers 415); ErrUnsupportedCharset and
// ErrUnsupportedEncoding say which part was refused.
var (
	ErrUnsupportedMediaType = errors.New("unsupported media type")
	ErrUnsupportedCharset   = errors.New("unsupported charset")
	ErrUnsupportedEncoding  = errors.New("unsupported content encoding")
)

// CheckContentType accepts the headers of a request whose body the
// gateway inspects only when they name exactly the bytes Parse reads:
// one Content-Type that is application/json (any case), with no parameter
// other than charset, and charset, when present, utf-8 (any case); and no
// Content-Encoding, or only identity. Anything else is refused.
//
// Why a class and not a list of bad charsets: the gateway decides on the
// characters the backend will execute, so the only safe header set is
// the one every backend reads as plain UTF-8 JSON. Backends read other
// sets in ways the gateway would have to reproduce exactly:
//
//   - Express's express.json() (body-parser, used by the TypeScript SDK's
//     createMcpExpressApp) takes the charset from Content-Type and decodes
//     any "utf-*" one with iconv-lite: utf-7, utf-16le/be, utf-32. A body
//     that reads as tools/list in UTF-8 can read as tools/call in UTF-7
//     (issue 10 item 1). It inflates Content-Encoding gzip, deflate and br.
//     Its type option goes through type-is: the default application/json
//     matches only that type, but apps set application/*+json, +json or
//     */* too, and a body under any of those is parsed as JSON.
//   - The TypeScript SDK's transport checks only that Content-Type
//     contains "application/json" (text/plain; x="application/json"
//     passes), and when no body parser ran it reads the body with the
//     Content-Type's charset itself.
//   - The Go SDK takes the media type before ';' and ignores the charset
//     and Content-Encoding: it reads UTF-8 bytes as they come.
//
// So: another media type (even a +json one), another charset (utf8,
// utf-16, ...), a parameter besides charset (RFC 8259 §11 defines none;
// RFC 2231 forms such as charset*= are decoded differently by Go's mime
// package and by Node's content-type), an unparsable or repeated
// Content-Type, a missing one, and any Content-Encoding token but identity
// are refused. A leading byte order mark, which iconv-lite strips, is
// refused by Parse.
func CheckContentType(h http.Header) error {
	ct := h["Content-Type"] // canonical keys, as net/http stores them
	if len(ct) == 1 && ct[0] == "application/json" {
		return checkEncoding(h) // what nearly every client sends: nothing to parse
	}
	switch {
	case len(ct) == 0:
		return fmt.Errorf("%w: no Content-Type (want application/json)", ErrUnsupportedMediaType)
	case len(ct) > 1:
		return fmt.Errorf("%w: %d Content-Type fields", ErrUnsupportedMediaType, len(ct))
	}
	// Control characters (CR, LF, NUL...) never belong in a field value;
	// mime.ParseMediaType would trim some of them away.
	if strings.ContainsAny(ct[0], "*,") || strings.ContainsFunc(ct[0], func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) {
		return fmt.Errorf("%w: Content-Type %q", ErrUnsupportedMediaType, short(ct[0]))
	}
	mt, params, err := mime.ParseMediaType(ct[0])
	if err != nil {
		return fmt.Errorf("%w: Content-Type %q: %v", ErrUnsupportedMediaType, short(ct[0]), err)
	}
	if mt != "application/json" {
		return fmt.Errorf("%w: %q (want application/json)", ErrUnsupportedMediaType, short(mt))
	}
	for name, value := range params {
		if name != "charset" {
			return fmt.Errorf("%w: parameter %q", ErrUnsupportedMediaType, short(name))
		}
		if !asciiEqualFold(value, "utf-8") {
			return fmt.Errorf("%w: %w %q (want utf-8)", ErrUnsupportedMediaType, ErrUnsupportedCharset, short(value))
		}
	}
	return checkEncoding(h)
}

// checkEncoding accepts no Content-Encoding, or only identity.
func checkEncoding(h http.Header) error {
	for _, line := range h["Content-Encoding"] {
		for token := range strings.SplitSeq(line, ",") {
			if !asciiEqualFold(strings.Trim(token, " \t"), "identity") {
				return fmt.Errorf("%w: %w %q", ErrUnsupportedMediaType, ErrUnsupportedEncoding, short(line))
			}
		}
	}
	return nil
}

// asciiEqualFold is strings.EqualFold for ASCII only: no Unicode folding
// (the Kelvin sign is not k).
func asciiEqualFold(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := range len(s) {
		a, b := s[i], t[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}
