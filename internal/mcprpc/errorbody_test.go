package mcprpc

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestErrorBody(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string // a request
		id   any    // the id the answer must carry
	}{
		{"number id", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a"}}`, 1.0},
		{"string id with escapes", `{"jsonrpc":"2.0","id":"a\"b\u00e9","method":"x"}`, "a\"bé"},
		{"no id", `{"jsonrpc":"2.0","method":"x"}`, nil},
		{"null id", `{"jsonrpc":"2.0","id":null,"method":"x"}`, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls, _, err := Parse([]byte(tc.body), Options{})
			if err != nil {
				t.Fatal(err)
			}
			out := ErrorBody(calls[0].ID, CodeHeaderMismatch, "Header mismatch: Mcp-Name header value 'x\"\n' does not match body value 'a'")
			var got struct {
				JSONRPC string `json:"jsonrpc"`
				ID      any    `json:"id"`
				Error   struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("%s: %v", out, err)
			}
			if got.JSONRPC != "2.0" || !reflect.DeepEqual(got.ID, tc.id) || got.Error.Code != -32020 || got.Error.Message != "Header mismatch: Mcp-Name header value 'x\"\n' does not match body value 'a'" {
				t.Fatalf("%s", out)
			}
		})
	}
}
