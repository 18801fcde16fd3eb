package mcprpc

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

type want struct{ method, name string }

func TestParse(t *testing.T) {
	cases := []struct {
		name  string
		body  string
		calls []want
		batch bool
		err   string // a substring of the error; "" when accepted
	}{
		// Today's cases (mcprequest_test.go), ported.
		{"call", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deploy"}}`, []want{{"tools/call", "deploy"}}, false, ""},
		{"resource uri", `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///x"}}`, []want{{"resources/read", "file:///x"}}, false, ""},
		{"notification", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, []want{{"notifications/initialized", ""}}, false, ""},
		{"response", `{"jsonrpc":"2.0","id":1,"result":{}}`, []want{{"", ""}}, false, ""},
		{"batch", `[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo"}}]`, []want{{"tools/list", ""}, {"tools/call", "echo"}}, true, ""},
		// Today this read tools/list; an encoding/json backend (mcp-go)
		// reads METHOD too, and the last one wins: refused now.
		{"upper-case key beside method", `{"jsonrpc":"2.0","id":1,"METHOD":"tools/call","method":"tools/list"}`, nil, false, `key "METHOD" is "method" but for case`},
		{"duplicate method", `{"method":"tools/list","method":"tools/call"}`, nil, false, "duplicate key"},
		{"duplicate name", `{"method":"tools/call","params":{"name":"echo","name":"deploy"}}`, nil, false, "duplicate key"},
		{"not JSON", `hello`, nil, false, "not a JSON-RPC message"},
		{"empty batch", `[]`, nil, true, "not a JSON-RPC batch"},
		{"method not a string", `{"method":7}`, nil, false, "method is not a string"},
		{"trailing data", `{"method":"a"} {"method":"b"}`, nil, false, "trailing data"},

		// Trailing data after the top-level value (issue 10 item 12).
		{"extra brace and garbage", `{"method":"a"}}x`, nil, false, "trailing data"},
		{"object after a batch", `[{"method":"a"}]{"method":"tools/call"}`, nil, true, "trailing data"},
		{"garbage after an object", `{"method":"a"}x`, nil, false, "trailing data"},
		{"bracket after an object", `{"method":"a"}]`, nil, false, "trailing data"},
		{"extra bracket after a batch", `[{"method":"a"}]]`, nil, true, "trailing data"},
		{"NUL after an object", "{\"method\":\"a\"}\x00", nil, false, "trailing data"},
		{"JSON whitespace around is fine", " \r\n\t{\"method\":\"a\"} \r\n\t", []want{{"a", ""}}, false, ""},
		{"no-break space before", "\u00a0{\"method\":\"a\"}", nil, false, "not a JSON-RPC message"},
		{"no-break space after", "{\"method\":\"a\"}\u00a0", nil, false, "trailing data"},
		{"byte order mark", "\uFEFF{\"method\":\"a\"}", nil, false, "byte order mark"},
		{"empty body", ``, nil, false, "empty body"},
		{"only whitespace", " \n", nil, false, "empty body"},

		// Duplicates at every depth the backend may read.
		{"duplicate params", `{"method":"tools/call","params":{"name":"echo"},"params":{"name":"deploy"}}`, nil, false, "duplicate key"},
		{"duplicate uri", `{"method":"resources/read","params":{"uri":"a","uri":"b"}}`, nil, false, "duplicate key"},
		{"duplicate inside arguments", `{"method":"tools/call","params":{"name":"x","arguments":{"path":"a","path":"b"}}}`, nil, false, "duplicate key"},
		{"duplicate deep inside _meta", `{"method":"a","params":{"_meta":{"x":[{"y":1,"y":2}]}}}`, nil, false, "duplicate key"},
		{"duplicate spelled with an escape", `{"method":"a","meth\u006fd":"b"}`, nil, false, "duplicate key"},
		{"duplicate in a batch element", `[{"method":"a"},{"id":1,"id":2}]`, nil, true, "duplicate key"},

		// Invalid UTF-8 anywhere.
		{"invalid UTF-8 in method", "{\"method\":\"tools/call\xff\"}", nil, false, "UTF-8"},
		{"invalid UTF-8 in name", "{\"method\":\"tools/call\",\"params\":{\"name\":\"deploy\xc0\"}}", nil, false, "UTF-8"},
		{"invalid UTF-8 in a key", "{\"method\":\"a\",\"x\xff\":1}", nil, false, "UTF-8"},
		{"invalid UTF-8 in a skipped value", "{\"method\":\"a\",\"params\":{\"_meta\":\"\xed\xa0\x80\"}}", nil, false, "UTF-8"},
		{"lone surrogate escape", `{"method":"a","params":{"name":"\ud800"}}`, nil, false, "surrogate"},

		// Exact-case keys, and keys equal but for case refused.
		{"Method alone", `{"Method":"tools/call"}`, nil, false, `is "method" but for case`},
		{"Params", `{"method":"tools/call","Params":{"name":"deploy"},"params":{"name":"echo"}}`, nil, false, `is "params" but for case`},
		{"params with a long s (U+017F)", `{"method":"tools/call","paramſ":{"name":"deploy"},"params":{"name":"echo"}}`, nil, false, `is "params" but for case`},
		{"Name", `{"method":"tools/call","params":{"name":"echo","Name":"deploy"}}`, nil, false, `is "name" but for case`},
		{"URI", `{"method":"resources/read","params":{"uri":"a","URI":"b"}}`, nil, false, `is "uri" but for case`},
		{"Arguments", `{"method":"tools/call","params":{"name":"a","Arguments":{}}}`, nil, false, `is "arguments" but for case`},
		{"JSONRPC", `{"JSONRPC":"2.0","method":"a"}`, nil, false, `is "jsonrpc" but for case`},
		{"Id", `{"Id":1,"method":"a"}`, nil, false, `is "id" but for case`},
		{"unrelated upper-case keys are fine", `{"Foo":1,"method":"a","params":{"Bar":2,"name":"n"}}`, []want{{"a", "n"}}, false, ""},
		{"case variants below params are not ours", `{"method":"a","params":{"name":"n","_meta":{"Name":"x","METHOD":"y"}}}`, []want{{"a", "n"}}, false, ""},
		{"escaped key is the key", `{"meth\u006fd":"tools/call","params":{"n\u0061me":"deploy"}}`, []want{{"tools/call", "deploy"}}, false, ""},
		{"escaped value is the value", `{"method":"tools\/call","params":{"name":"d\u0065ploy"}}`, []want{{"tools/call", "deploy"}}, false, ""},

		// Non-string method and name, as before.
		{"method null", `{"method":null,"id":1}`, []want{{"", ""}}, false, ""},
		{"method an object", `{"method":{"a":1}}`, nil, false, "method is not a string"},
		{"name not a string falls back to uri", `{"method":"a","params":{"name":7,"uri":"u"}}`, []want{{"a", "u"}}, false, ""},
		{"name null reads as empty", `{"method":"a","params":{"uri":"u","name":null}}`, []want{{"a", ""}}, false, ""},
		{"name wins over uri in any order", `{"method":"a","params":{"uri":"u","name":"n"}}`, []want{{"a", "n"}}, false, ""},
		{"params an array is ignored", `{"method":"a","params":["name","x"]}`, []want{{"a", ""}}, false, ""},
		{"params null is ignored", `{"method":"a","params":null}`, []want{{"a", ""}}, false, ""},
		{"non-ASCII name", `{"method":"tools/call","params":{"name":"déployer"}}`, []want{{"tools/call", "déployer"}}, false, ""},

		// Shapes.
		{"top-level string", `"tools/call"`, nil, false, "not an object or array"},
		{"top-level null", `null`, nil, false, "not an object or array"},
		{"batch of a number", `[1]`, nil, true, "not an object"},
		{"batch with a number after", `[{"method":"a"},2]`, nil, true, "not an object"},
		{"batch of a batch", `[[{"method":"a"}]]`, nil, true, "not an object"},
		{"unterminated", `{"method":"a"`, nil, false, "not a JSON-RPC message"},
		{"unterminated batch", `[{"method":"a"}`, nil, true, "not a JSON-RPC"},
		{"comment", `{"method":"a"/*x*/}`, nil, false, "not a JSON-RPC message"},
		{"single quotes", `{'method':'a'}`, nil, false, "not a JSON-RPC message"},
		{"deep nesting within limit", `{"method":"a","params":{"x":` + strings.Repeat("[", 500) + strings.Repeat("]", 500) + `}}`, []want{{"a", ""}}, false, ""},
		{"nesting beyond 10000", `{"method":"a","params":{"x":` + strings.Repeat("[", 10001) + strings.Repeat("]", 10001) + `}}`, nil, false, "depth"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			calls, batch, err := Parse([]byte(tc.body), Options{})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrMalformed) {
					t.Fatalf("want ErrMalformed with %q, got %v", tc.err, err)
				}
				if batch != tc.batch {
					t.Fatalf("batch %v", batch)
				}
				return
			}
			if err != nil || batch != tc.batch || len(calls) != len(tc.calls) {
				t.Fatalf("got %+v %v %v", calls, batch, err)
			}
			for i := range calls {
				if got := (want{calls[i].Method, calls[i].Name}); got != tc.calls[i] {
					t.Fatalf("call %d: %+v, want %+v", i, got, tc.calls[i])
				}
			}
		})
	}
}

func TestParseID(t *testing.T) {
	for body, id := range map[string]string{
		`{"id":1,"method":"a"}`:                   `1`,
		`{"method":"a","id" : "x\u0041" }`:        `"x\u0041"`,
		`{"method":"a","id":null}`:                `null`,
		`{"method":"a","id":-1.5e3}`:              `-1.5e3`,
		`{"method":"a","id":{"odd":[1]}}`:         `{"odd":[1]}`,
		`{"method":"a"}`:                          ``,
		"\n{\"method\":\"a\",\n\"id\":\n\t7\n}\n": `7`,
	} {
		calls, _, err := Parse([]byte(body), Options{})
		if err != nil || string(calls[0].ID) != id || (id == "") != (calls[0].ID == nil) {
			t.Errorf("%s: id %q (%v), want %q", body, calls[0].ID, err, id)
		}
	}
	calls, _, _ := Parse([]byte(`[{"id":1,"method":"a"},{"id":"two","method":"b"}]`), Options{})
	if len(calls) != 2 || string(calls[0].ID) != "1" || string(calls[1].ID) != `"two"` {
		t.Errorf("batch ids: %+v", calls)
	}
}

func TestParseArguments(t *testing.T) {
	body := `{"method":"tools/call","params":{"arguments" :  {"path":"/a","n":[1,2.5,{"k":true,"z":null}],"s":"\u00e9"},"name":"write"}}`
	t.Run("not asked: skipped", func(t *testing.T) {
		calls, _, err := Parse([]byte(body), Options{})
		if err != nil || calls[0].RawArguments != nil || calls[0].Arguments != nil || calls[0].Name != "write" {
			t.Fatalf("%+v %v", calls, err)
		}
	})
	t.Run("raw", func(t *testing.T) {
		calls, _, err := Parse([]byte(body), Options{RawArguments: true})
		if err != nil || string(calls[0].RawArguments) != `{"path":"/a","n":[1,2.5,{"k":true,"z":null}],"s":"\u00e9"}` || calls[0].Arguments != nil {
			t.Fatalf("%q %v", calls[0].RawArguments, err)
		}
	})
	t.Run("decoded", func(t *testing.T) {
		calls, _, err := Parse([]byte(body), Options{DecodeArguments: true})
		wantArgs := map[string]any{"path": "/a", "n": []any{1.0, 2.5, map[string]any{"k": true, "z": nil}}, "s": "é"}
		if err != nil || !reflect.DeepEqual(calls[0].Arguments, wantArgs) || calls[0].RawArguments != nil {
			t.Fatalf("%#v %v", calls[0].Arguments, err)
		}
	})
	t.Run("decoded agrees with encoding/json", func(t *testing.T) {
		calls, _, _ := Parse([]byte(body), Options{DecodeArguments: true, RawArguments: true})
		var std any
		if err := json.Unmarshal(calls[0].RawArguments, &std); err != nil || !reflect.DeepEqual(std, calls[0].Arguments) {
			t.Fatalf("%#v vs %#v", std, calls[0].Arguments)
		}
	})
	// An encoding/json backend decoding arguments into a struct matches
	// "PATH" to its path field; a rule reading arguments must not see
	// "/a" while the tool gets "/etc".
	for _, tc := range []struct{ name, args string }{
		{"case variant", `{"path":"/a","PATH":"/etc"}`},
		{"Kelvin sign", `{"kind":"a","\u212aind":"b"}`},
		{"nested", `{"x":{"y":1,"Y":2}}`},
		{"in an array", `{"x":[{"y":1,"Y":2}]}`},
		{"beyond eight names", `{"a":1,"b":2,"c":3,"d":4,"e":5,"f":6,"g":7,"h":8,"i":9,"j":10,"B":11}`},
	} {
		t.Run("refused when asked: "+tc.name, func(t *testing.T) {
			b := []byte(`{"method":"tools/call","params":{"name":"x","arguments":` + tc.args + `}}`)
			for _, o := range []Options{{RawArguments: true}, {DecodeArguments: true}} {
				if _, _, err := Parse(b, o); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "case") {
					t.Fatalf("%+v: %v", o, err)
				}
			}
			if _, _, err := Parse(b, Options{}); err != nil {
				t.Fatalf("not asked, not read: %v", err)
			}
		})
	}
	t.Run("many distinct names", func(t *testing.T) {
		var sb strings.Builder
		sb.WriteString(`{"method":"tools/call","params":{"arguments":{`)
		for i := range 100 {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(`"k` + strings.Repeat("x", i) + `":1`)
		}
		sb.WriteString(`}}}`)
		calls, _, err := Parse([]byte(sb.String()), Options{DecodeArguments: true})
		if err != nil || len(calls[0].Arguments.(map[string]any)) != 100 {
			t.Fatal(err)
		}
	})
	t.Run("number out of float64 range", func(t *testing.T) {
		if _, _, err := Parse([]byte(`{"method":"tools/call","params":{"arguments":{"n":1e400}}}`), Options{DecodeArguments: true}); !errors.Is(err, ErrMalformed) {
			t.Fatal(err)
		}
	})
}

func TestFoldKey(t *testing.T) {
	pairs := [][2]string{{"path", "PATH"}, {"params", "paramſ"}, {"kind", "\u212aIND"}, {"ǅ", "ǆ"}, {"σ", "ς"}}
	for _, p := range pairs {
		if !strings.EqualFold(p[0], p[1]) || foldKey(p[0]) != foldKey(p[1]) {
			t.Errorf("%q %q: EqualFold %v, keys %q %q", p[0], p[1], strings.EqualFold(p[0], p[1]), foldKey(p[0]), foldKey(p[1]))
		}
	}
	if foldKey("path") == foldKey("paths") || foldKey("a") == foldKey("b") {
		t.Error("distinct names share a key")
	}
}

// The premise of the case rule: encoding/json, which Go MCP servers such
// as mcp-go decode with, reads these spellings as method and name.
func TestEncodingJSONReadsCaseVariants(t *testing.T) {
	var m struct {
		Method string `json:"method"`
		Params struct {
			Name string `json:"name"`
		} `json:"params"`
	}
	if err := json.Unmarshal([]byte(`{"method":"tools/list","METHOD":"tools/call","paramſ":{"NAME":"deploy"}}`), &m); err != nil {
		t.Fatal(err)
	}
	if m.Method != "tools/call" || m.Params.Name != "deploy" {
		t.Fatalf("encoding/json read %+v", m)
	}
}

// Parsers are pooled: concurrent calls, and a call after a failed one,
// must not see each other's state.
func TestParseConcurrentAndAfterFailure(t *testing.T) {
	good := func(i int) string {
		return `{"id":` + strings.Repeat("1", i%5+1) + `,"method":"tools/call","params":{"name":"t` + strings.Repeat("x", i%7) + `","arguments":{"a":1}}}`
	}
	bad := []string{`{"method":"a"}}x`, `{"method":"a","method":"b"}`, `[{"method":"a"},`, "\xff", `{"Method":"a"}`}
	done := make(chan error)
	for g := range 8 {
		go func() {
			for i := range 300 {
				if i%3 == 0 {
					if _, _, err := Parse([]byte(bad[(g+i)%len(bad)]), Options{DecodeArguments: true}); err == nil {
						done <- errors.New("a bad body passed")
						return
					}
					continue
				}
				body := []byte(good(g + i))
				calls, _, err := Parse(body, Options{RawArguments: true})
				wantName := "t" + strings.Repeat("x", (g+i)%7)
				wantID := strings.Repeat("1", (g+i)%5+1)
				if err != nil || calls[0].Name != wantName || string(calls[0].ID) != wantID || string(calls[0].RawArguments) != `{"a":1}` {
					done <- errors.New("wrong result: " + string(body))
					return
				}
			}
			done <- nil
		}()
	}
	for range 8 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
