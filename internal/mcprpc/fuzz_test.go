package mcprpc

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// FuzzParse: any body is parsed or refused, never a panic; a parsed body
// yields at least one call; and whatever Parse accepts, the parser the
// gateway used before and encoding/json (case-insensitive keys, as
// encoding/json-based MCP servers read them) read the same method and
// name. Asking for arguments never makes a refused body pass, and the
// decoded arguments are what encoding/json reads from the raw ones.
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deploy","arguments":{"a":[1,{"b":null}]}}}`,
		`[{"method":"a"},{"method":"b","params":{"uri":"x"}}]`, `{"method":"a","method":"b"}`, `[]`, `{`, `"x"`,
		`{"params":[1,2]}`, ``, `{"method":"a"}}x`, `[{"method":"a"}]{"method":"b"}`, "\uFEFF{}",
		`{"METHOD":"tools/call","method":"tools/list"}`, `{"method":"a","params":{"Name":"x","name":"y"}}`,
		`{"method":"a","paramſ":{}}`, `{"method":"tools/call","params":{"name":"x","arguments":{"p":1,"P":2}}}`,
		`{"meth\u006fd":"a","params":{"name":null,"uri":"u"}}`, "{\"method\":\"a\xff\"}", `{"method":null,"id":{"x":1}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		calls, batch, err := Parse(body, Options{})
		for _, o := range []Options{{RawArguments: true}, {DecodeArguments: true, RawArguments: true}} {
			c2, b2, err2 := Parse(body, o)
			if err2 == nil && err != nil {
				t.Fatalf("%+v accepts what the default refuses (%v): %q", o, err, body)
			}
			if err2 == nil && (b2 != batch || len(c2) != len(calls)) {
				t.Fatalf("%+v reads another shape: %q", o, body)
			}
			if err2 == nil && o.DecodeArguments {
				for _, c := range c2 {
					if c.RawArguments == nil {
						continue
					}
					var std any
					if err := json.Unmarshal(c.RawArguments, &std); err != nil || !reflect.DeepEqual(std, c.Arguments) {
						t.Fatalf("arguments %#v, encoding/json %#v (%v): %q", c.Arguments, std, err, body)
					}
				}
			}
		}
		if err != nil {
			return
		}
		if len(calls) == 0 {
			t.Fatalf("no calls and no error for %q", body)
		}
		old, oldBatch, oldErr := baselineParseCalls(body)
		if oldErr != nil || oldBatch != batch || len(old) != len(calls) {
			t.Fatalf("accepted, the old parser says %v %v: %q", oldErr, oldBatch, body)
		}
		for i, c := range calls {
			if old[i] != (baselineCall{c.Method, c.Name}) {
				t.Fatalf("call %d: %q %q, the old parser %+v: %q", i, c.Method, c.Name, old[i], body)
			}
		}
		var msgs []json.RawMessage
		if batch {
			if err := json.Unmarshal(body, &msgs); err != nil {
				t.Fatalf("encoding/json refuses an accepted batch: %v", err)
			}
		} else {
			msgs = []json.RawMessage{bytes.Clone(body)}
		}
		for i, m := range msgs {
			var std struct {
				Method string `json:"method"`
				Params struct {
					Name json.RawMessage `json:"name"`
					URI  json.RawMessage `json:"uri"`
				} `json:"params"`
			}
			if json.Unmarshal(m, &std) != nil {
				continue // a params or method encoding/json cannot hold
			}
			if std.Method != calls[i].Method {
				t.Fatalf("method %q, encoding/json reads %q: %q", calls[i].Method, std.Method, body)
			}
			var name string
			if json.Unmarshal(std.Params.Name, &name) == nil {
				if name != calls[i].Name {
					t.Fatalf("name %q, encoding/json reads %q: %q", calls[i].Name, name, body)
				}
			}
		}
	})
}

// FuzzCheckContentType: never a panic; whatever it accepts is, up to case
// and blanks, application/json with at most charset=utf-8, and identity
// encoding only; and the TypeScript SDK's own test (the header contains
// application/json) agrees.
func FuzzCheckContentType(f *testing.F) {
	for _, seed := range [][2]string{
		{"application/json", ""}, {"application/json; charset=utf-8", "identity"}, {`application/json;charset="UTF-8"`, ""},
		{"application/json; charset=utf-7", ""}, {"application/*+json", ""}, {"text/plain; x=application/json", ""},
		{"application/json; charset*=utf-8''utf-7", ""}, {"application/json", "gzip"}, {"application/json", "identity, br"},
		{"Application/JSON ; Charset=UTF-8", "IDENTITY"}, {"", ""},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, ct, ce string) {
		h := http.Header{}
		if ct != "" {
			h.Set("Content-Type", ct)
		}
		if ce != "" {
			h.Set("Content-Encoding", ce)
		}
		err := CheckContentType(h)
		if err != nil {
			if !errors.Is(err, ErrUnsupportedMediaType) {
				t.Fatalf("error not wrapping ErrUnsupportedMediaType: %v", err)
			}
			return
		}
		norm := strings.ToLower(strings.NewReplacer(" ", "", "\t", "").Replace(ct))
		norm = strings.TrimSuffix(norm, ";")
		switch norm {
		case "application/json", "application/json;charset=utf-8", `application/json;charset="utf-8"`:
		default:
			t.Fatalf("accepted Content-Type %q", ct)
		}
		if !strings.Contains(strings.ToLower(ct), "application/json") {
			t.Fatalf("the TypeScript SDK would refuse %q", ct)
		}
		if rest := strings.NewReplacer(" ", "", "\t", "", "identity", "", ",", "").Replace(strings.ToLower(ce)); rest != "" {
			t.Fatalf("accepted Content-Encoding %q", ce)
		}
	})
}

// FuzzDecodeHeaderValue: never a panic; a decoded value is UTF-8 without
// control characters; a plain value comes back unchanged; an encoded one
// is the one canonical encoding of what it decodes to.
func FuzzDecodeHeaderValue(f *testing.F) {
	for _, seed := range []string{"get_weather", "=?base64?SGVsbG8sIOS4lueVjA==?=", "=?base64?IHBhZGRlZCA=?=", "=?BASE64?SGVsbG8=?=",
		"=?base64?=", "=?base64??=", "=?base64?SGVsbG9=?=", "=?base64?bGluZTEKbGluZTI=?=", "a\tb", "déployer", ""} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, v string) {
		got, err := DecodeHeaderValue(v)
		if err != nil {
			if !errors.Is(err, ErrBadHeaderValue) || got != "" {
				t.Fatalf("%q: %q %v", v, got, err)
			}
			return
		}
		if !utf8.ValidString(got) || strings.IndexFunc(got, unicode.IsControl) >= 0 {
			t.Fatalf("%q decoded to %q", v, got)
		}
		enc, wrapped := strings.CutPrefix(v, "=?base64?")
		if wrapped {
			enc, wrapped = strings.CutSuffix(enc, "?=")
		}
		if !wrapped && got != v {
			t.Fatalf("plain %q changed to %q", v, got)
		}
		if wrapped && base64.StdEncoding.EncodeToString([]byte(got)) != enc {
			t.Fatalf("%q is not the canonical encoding of %q", v, got)
		}
	})
}
