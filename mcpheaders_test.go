package mcptoken

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

func b64(s string) string { return "=?base64?" + base64.StdEncoding.EncodeToString([]byte(s)) + "?=" }

func TestMcpHeaders(t *testing.T) {
	const tool = "überprüfen_数据" // a non-ASCII tool name
	call := func(id, name string) string {
		return `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"` + name + `","arguments":{}}}`
	}
	type hdr = map[string][]string
	cases := []struct {
		name    string
		body    string
		headers hdr
		status  int
		id      string // the JSON-RPC error's id, for 400
	}{
		{"non-ASCII name, base64 agrees", call("7", tool), hdr{"Mcp-Method": {"tools/call"}, "Mcp-Name": {b64(tool)}, "Mcp-Protocol-Version": {"2026-07-28"}}, 200, ""},
		{"non-ASCII name, base64 disagrees", call("7", tool), hdr{"Mcp-Method": {"tools/call"}, "Mcp-Name": {b64("uberpruefen")}, "Mcp-Protocol-Version": {"2026-07-28"}}, 400, "7"},
		{"string id is echoed", call(`"req-1"`, "echo"), hdr{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"deploy"}}, 400, `"req-1"`},
		{"malformed base64", call("8", tool), hdr{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"=?base64?***?="}}, 400, "8"},
		{"base64 with a line break", call("8", "echo"), hdr{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"=?base64?ZW\nNobw==?="}}, 400, "8"},
		{"base64 of invalid UTF-8", call("8", "echo"), hdr{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"=?base64?" + base64.StdEncoding.EncodeToString([]byte{0xff, 0xfe}) + "?="}}, 400, "8"},
		{"control character in base64", call("8", "echo"), hdr{"Mcp-Method": {"tools/call"}, "Mcp-Name": {b64("ec\x07ho")}}, 400, "8"},
		{"plain UTF-8 header that agrees (the Go SDK sends it so)", call("8", tool), hdr{"Mcp-Method": {"tools/call"}, "Mcp-Name": {tool}}, 200, ""},
		{"plain header, invalid UTF-8", call("8", "echo"), hdr{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"ech\xff"}}, 400, "8"},
		{"plain header, control character", call("8", "echo"), hdr{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"ec\tho"}}, 400, "8"},
		{"upper-case markers are a plain value", call("8", "echo"), hdr{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"=?BASE64?ZWNobw==?="}}, 400, "8"},
		{"method mismatch", call("9", "echo"), hdr{"Mcp-Method": {"tools/list"}}, 400, "9"},
		{"two Mcp-Name", call("9", "echo"), hdr{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"echo", "echo"}}, 400, "9"},
		{"2026-07-28 without Mcp-Method", call("10", "echo"), hdr{"Mcp-Protocol-Version": {"2026-07-28"}}, 400, "10"},
		{"2026-07-28 without Mcp-Name on tools/call", call("11", "echo"), hdr{"Mcp-Method": {"tools/call"}, "Mcp-Protocol-Version": {"2026-07-28"}}, 400, "11"},
		{"later revision too", call("12", "echo"), hdr{"Mcp-Protocol-Version": {"2027-01-15"}}, 400, "12"},
		{"2026-07-28 notification needs Mcp-Method", `{"jsonrpc":"2.0","method":"notifications/initialized"}`, hdr{"Mcp-Protocol-Version": {"2026-07-28"}}, 400, "null"},
		{"2026-07-28 tools/list needs no Mcp-Name", `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, hdr{"Mcp-Method": {"tools/list"}, "Mcp-Protocol-Version": {"2026-07-28"}}, 200, ""},
		{"2025-11-25 without headers as before", call("1", "echo"), hdr{"Mcp-Protocol-Version": {"2025-11-25"}}, 200, ""},
		{"no version, no headers", call("1", "echo"), nil, 200, ""},
		{"malformed version is not a new revision", call("1", "echo"), hdr{"Mcp-Protocol-Version": {"banana"}}, 200, ""},
		{"Mcp-Param-* passes", call("1", "echo"), hdr{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"echo"}, "Mcp-Param-Region": {"=?base64?not base64?="}, "Mcp-Protocol-Version": {"2026-07-28"}}, 200, ""},
		{"headers on a batch", `[` + call("1", "echo") + `]`, hdr{"Mcp-Method": {"tools/call"}}, 400, "null"},
	}
	good := &verifiers.AccessToken{ClientID: "c1", Scopes: []string{"mcp:read"}}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := &Handler{module{core: &core{verifier: fakeVerifier{tok: good}, logger: zap.NewNop(), maxBody: DefaultMaxBody}}}
			r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(tc.body))
			r.Header.Set("Authorization", "Bearer abc")
			r.Header.Set("Content-Type", "application/json")
			for k, vs := range tc.headers {
				for _, v := range vs {
					r.Header.Add(k, v)
				}
			}
			r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
			var got http.Header
			next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
				got = r.Header.Clone()
				w.WriteHeader(200)
				return nil
			})
			w := httptest.NewRecorder()
			if err := h.ServeHTTP(w, r, next); err != nil {
				t.Fatal(err)
			}
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if tc.status == 200 {
				for k, vs := range tc.headers {
					if strings.Join(got.Values(k), ",") != strings.Join(vs, ",") {
						t.Fatalf("%s reached the backend as %q", k, got.Values(k))
					}
				}
				return
			}
			var resp struct {
				JSONRPC string          `json:"jsonrpc"`
				ID      json.RawMessage `json:"id"`
				Error   struct {
					Code    int    `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			if err := json.Unmarshal(w.Body.Bytes(), &resp); err != nil {
				t.Fatalf("body %s: %v", w.Body, err)
			}
			if resp.JSONRPC != "2.0" || string(resp.ID) != tc.id || resp.Error.Code != -32020 || resp.Error.Message == "" {
				t.Fatalf("JSON-RPC error %s, want id %s and code -32020", w.Body, tc.id)
			}
			if w.Header().Get("Content-Type") != "application/json" || w.Header().Get("WWW-Authenticate") != "" {
				t.Fatalf("headers %v", w.Header())
			}
		})
	}
}
