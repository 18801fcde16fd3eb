package mcprpc

import (
	"errors"
	"net/http"
	"testing"
)

func TestCheckContentType(t *testing.T) {
	cases := []struct {
		name     string
		ct       []string // Content-Type fields; nil: none
		ce       []string // Content-Encoding fields
		want     error    // nil: accepted; else the specific sentinel (ErrUnsupportedMediaType is always wrapped)
		specific error
	}{
		{"application/json", []string{"application/json"}, nil, nil, nil},
		{"upper case", []string{"Application/JSON"}, nil, nil, nil},
		{"charset utf-8", []string{"application/json; charset=utf-8"}, nil, nil, nil},
		{"charset UTF-8 quoted, no space", []string{`application/json;charset="UTF-8"`}, nil, nil, nil},
		{"Charset name in upper case", []string{"application/json; CHARSET=Utf-8"}, nil, nil, nil},
		{"identity encoding", []string{"application/json"}, []string{"identity"}, nil, nil},
		{"Identity, identity", []string{"application/json"}, []string{"Identity, identity"}, nil, nil},

		// Charsets Express decodes and the gateway would read as UTF-8.
		{"utf-7", []string{"application/json; charset=utf-7"}, nil, ErrUnsupportedMediaType, ErrUnsupportedCharset},
		{"UTF-7 upper case", []string{"application/json; charset=UTF-7"}, nil, ErrUnsupportedMediaType, ErrUnsupportedCharset},
		{"utf-16le", []string{"application/json; charset=utf-16le"}, nil, ErrUnsupportedMediaType, ErrUnsupportedCharset},
		{"utf-16", []string{"application/json; charset=utf-16"}, nil, ErrUnsupportedMediaType, ErrUnsupportedCharset},
		{"utf-32", []string{"application/json; charset=utf-32be"}, nil, ErrUnsupportedMediaType, ErrUnsupportedCharset},
		{"utf8 without hyphen", []string{"application/json; charset=utf8"}, nil, ErrUnsupportedMediaType, ErrUnsupportedCharset},
		{"latin1", []string{"application/json; charset=iso-8859-1"}, nil, ErrUnsupportedMediaType, ErrUnsupportedCharset},
		{"empty charset", []string{`application/json; charset=""`}, nil, ErrUnsupportedMediaType, ErrUnsupportedCharset},
		{"quoted utf-7 with an escape", []string{`application/json; charset="utf\-7"`}, nil, ErrUnsupportedMediaType, ErrUnsupportedCharset},
		{"space inside a quoted charset", []string{"application/json; charset=\"utf-8 \""}, nil, ErrUnsupportedMediaType, ErrUnsupportedCharset},
		{"two charsets", []string{"application/json; charset=utf-8; charset=utf-7"}, nil, ErrUnsupportedMediaType, nil},
		{"RFC 2231 charset", []string{"application/json; charset*=utf-8''utf-7"}, nil, ErrUnsupportedMediaType, nil},
		{"RFC 2231 continuation", []string{"application/json; charset*0=utf; charset*1=-7"}, nil, ErrUnsupportedMediaType, nil},
		{"another parameter", []string{"application/json; boundary=x"}, nil, ErrUnsupportedMediaType, nil},

		// Other media types some backends parse as JSON anyway.
		{"none", nil, nil, ErrUnsupportedMediaType, nil},
		{"empty", []string{""}, nil, ErrUnsupportedMediaType, nil},
		{"two fields", []string{"application/json", "text/plain"}, nil, ErrUnsupportedMediaType, nil},
		{"two in one field", []string{"application/json, text/plain"}, nil, ErrUnsupportedMediaType, nil},
		{"text/plain", []string{"text/plain"}, nil, ErrUnsupportedMediaType, nil},
		{"text/plain naming application/json in a parameter", []string{`text/plain; x="application/json"`}, nil, ErrUnsupportedMediaType, nil},
		{"application/*+json", []string{"application/*+json"}, nil, ErrUnsupportedMediaType, nil},
		{"application/vnd.api+json", []string{"application/vnd.api+json"}, nil, ErrUnsupportedMediaType, nil},
		{"text/json", []string{"text/json"}, nil, ErrUnsupportedMediaType, nil},
		{"application/json-seq", []string{"application/json-seq"}, nil, ErrUnsupportedMediaType, nil},
		{"application/jsonx", []string{"application/jsonx"}, nil, ErrUnsupportedMediaType, nil},
		{"bare json", []string{"json"}, nil, ErrUnsupportedMediaType, nil},
		{"wildcard", []string{"*/*"}, nil, ErrUnsupportedMediaType, nil},
		{"garbage", []string{"application/json;;;=="}, nil, ErrUnsupportedMediaType, nil},

		// Content-Encoding: Express inflates gzip, deflate and br.
		{"gzip", []string{"application/json"}, []string{"gzip"}, ErrUnsupportedMediaType, ErrUnsupportedEncoding},
		{"deflate", []string{"application/json"}, []string{"deflate"}, ErrUnsupportedMediaType, ErrUnsupportedEncoding},
		{"br", []string{"application/json"}, []string{"br"}, ErrUnsupportedMediaType, ErrUnsupportedEncoding},
		{"identity then gzip", []string{"application/json"}, []string{"identity, gzip"}, ErrUnsupportedMediaType, ErrUnsupportedEncoding},
		{"identity and a gzip field", []string{"application/json"}, []string{"identity", "gzip"}, ErrUnsupportedMediaType, ErrUnsupportedEncoding},
		{"empty encoding", []string{"application/json"}, []string{""}, ErrUnsupportedMediaType, ErrUnsupportedEncoding},
		{"trailing comma", []string{"application/json"}, []string{"identity,"}, ErrUnsupportedMediaType, ErrUnsupportedEncoding},
		{"Kelvin-sign trick is not ASCII", []string{"application/json"}, []string{"identit\u212a"}, ErrUnsupportedMediaType, ErrUnsupportedEncoding},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tc.ct {
				h.Add("Content-Type", v)
			}
			for _, v := range tc.ce {
				h.Add("Content-Encoding", v)
			}
			err := CheckContentType(h)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("want accepted, got %v", err)
				}
				return
			}
			if !errors.Is(err, tc.want) || (tc.specific != nil && !errors.Is(err, tc.specific)) {
				t.Fatalf("want %v / %v, got %v", tc.want, tc.specific, err)
			}
			for _, other := range []error{ErrUnsupportedCharset, ErrUnsupportedEncoding} {
				if other != tc.specific && errors.Is(err, other) {
					t.Fatalf("%v also wraps %v", err, other)
				}
			}
		})
	}
	// The exact application/json, what nearly every client sends, is
	// accepted without a media-type parse: nothing allocated.
	h := http.Header{"Content-Type": {"application/json"}}
	if n := testing.AllocsPerRun(100, func() { _ = CheckContentType(h) }); n != 0 {
		t.Fatalf("application/json: %v allocations", n)
	}
}

func TestAsciiEqualFold(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want bool
	}{{"UTF-8", "utf-8", true}, {"utf-8", "utf-8", true}, {"utf-9", "utf-8", false}, {"\u212a", "k", false}, {"ab", "abc", false}} {
		if got := asciiEqualFold(tc.a, tc.b); got != tc.want {
			t.Errorf("%q %q: %v", tc.a, tc.b, got)
		}
	}
}
