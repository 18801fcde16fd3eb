package mcprpc

import (
	"encoding/base64"
	"errors"
	"testing"
)

func TestDecodeHeaderValue(t *testing.T) {
	b64 := func(s string) string { return "=?base64?" + base64.StdEncoding.EncodeToString([]byte(s)) + "?=" }
	cases := []struct {
		name, in, want string
		bad            bool
	}{
		{"plain", "get_weather", "get_weather", false},
		{"plain URI", "file:///projects/myapp/config.json", "file:///projects/myapp/config.json", false},
		{"plain with inner space", "a b", "a b", false},
		{"empty", "", "", false},
		// The revision's examples (streamable-http, Value Encoding).
		{"spec: Hello, 世界", "=?base64?SGVsbG8sIOS4lueVjA==?=", "Hello, 世界", false},
		{"spec: padded", "=?base64?IHBhZGRlZCA=?=", " padded ", false},
		{"spec: sentinel-looking literal", "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=", "=?base64?literal?=", false},
		{"spec: newline is a control character", "=?base64?bGluZTEKbGluZTI=?=", "", true},
		{"non-ASCII tool name", b64("déployer"), "déployer", false},
		{"empty encoded", "=?base64??=", "", false},
		// Markers are case-sensitive: these are plain values.
		{"upper-case marker is plain", "=?BASE64?SGVsbG8=?=", "=?BASE64?SGVsbG8=?=", false},
		{"no suffix is plain", "=?base64?SGVsbG8=", "=?base64?SGVsbG8=", false},
		{"overlapping markers are plain", "=?base64?=", "=?base64?=", false},
		// Malformed Base64.
		{"not Base64", "=?base64?!!!!?=", "", true},
		{"missing padding", "=?base64?SGVsbG8?=", "", true},
		{"URL alphabet", "=?base64?" + base64.URLEncoding.EncodeToString([]byte("??>")) + "?=", "", true},
		{"line break inside", "=?base64?SGVs\nbG8=?=", "", true},
		{"space inside", "=?base64?SGVs bG8=?=", "", true},
		{"non-canonical padding bits", "=?base64?SGVsbG9=?=", "", true},
		{"data after padding", "=?base64?SGVsbG8=SGVs?=", "", true},
		// Invalid UTF-8 and control characters.
		{"decoded invalid UTF-8", b64("deploy\xff"), "", true},
		{"decoded NUL", b64("deploy\x00"), "", true},
		{"decoded CR LF", b64("a\r\nX-Injected: 1"), "", true},
		{"decoded tab", b64("a\tb"), "", true},
		{"decoded DEL", b64("a\x7fb"), "", true},
		{"decoded C1 control", b64("a\u0085b"), "", true},
		{"plain tab", "a\tb", "", true},
		{"plain NUL", "a\x00b", "", true},
		{"plain DEL", "a\x7f", "", true},
		{"plain non-ASCII must be encoded", "déployer", "", true},
		{"plain obs-text byte", "a\xffb", "", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeHeaderValue(tc.in)
			if tc.bad {
				if !errors.Is(err, ErrBadHeaderValue) || got != "" {
					t.Fatalf("want ErrBadHeaderValue, got %q %v", got, err)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q %v, want %q", got, err, tc.want)
			}
		})
	}
}
