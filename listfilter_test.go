package mcptoken

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

const toolsResult = `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo","inputSchema":{"type":"object"}},{"name":"deploy","inputSchema":{"type":"object"}},{"name":"admin_reset"}],"nextCursor":"c2"}}`

// listCore is a core with per-tool rules, as provisioned: deploy needs
// mcp:write, admin_reset mcp:admin (which implies mcp:write).
func listCore(t testing.TB, scopes []string, logs **observer.ObservedLogs) *core {
	t.Helper()
	h := new(verifiers.ScopeHierarchy)
	if err := h.Add("mcp:admin", "mcp:write"); err != nil {
		t.Fatal(err)
	}
	logger := zap.NewNop()
	if logs != nil {
		var zc zapcore.Core
		zc, *logs = observer.New(zapcore.DebugLevel)
		logger = zap.New(zc)
	}
	tok := h.Apply(&verifiers.AccessToken{ClientID: "c1", Scopes: scopes})
	return &core{
		verifier: fakeVerifier{tok: tok}, logger: logger, maxBody: 4096, filterLists: true,
		rules: scopeRules{
			tool:   map[string][]string{"deploy": {"mcp:write"}, "admin_reset": {"mcp:admin"}},
			prompt: map[string][]string{"secret_prompt": {"mcp:admin"}},
		},
	}
}

// serve runs one request through the handler in front of next.
func serve(t *testing.T, c *core, body string, reqHeaders map[string]string, next caddyhttp.HandlerFunc) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(body))
	r.Header.Set("Authorization", "Bearer abc")
	r.Header.Set("Content-Type", "application/json")
	for k, v := range reqHeaders {
		r.Header.Set(k, v)
	}
	r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
	w := httptest.NewRecorder()
	if err := (&Handler{module{core: c}}).ServeHTTP(w, r, next); err != nil {
		t.Fatal(err)
	}
	return w
}

func respond(ct string, status int, body string, extra ...string) caddyhttp.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", ct)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		for i := 0; i+1 < len(extra); i += 2 {
			w.Header().Set(extra[i], extra[i+1])
		}
		w.WriteHeader(status)
		_, err := w.Write([]byte(body))
		return err
	}
}

func toolNames(t *testing.T, body string) string {
	t.Helper()
	var m struct {
		Result struct {
			Tools []struct {
				Name string `json:"name"`
			} `json:"tools"`
			NextCursor string `json:"nextCursor"`
		} `json:"result"`
	}
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("%s: %v", body, err)
	}
	var names []string
	for _, x := range m.Result.Tools {
		names = append(names, x.Name)
	}
	if m.Result.NextCursor != "c2" {
		t.Fatalf("nextCursor lost: %s", body)
	}
	return strings.Join(names, " ")
}

const listReq = `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`

func TestListFilterJSON(t *testing.T) {
	cases := []struct {
		name   string
		scopes []string
		want   string
	}{
		{"read-only token", []string{"mcp:read"}, "echo"},
		{"write token", []string{"mcp:write"}, "echo deploy"},
		{"admin implies write", []string{"mcp:admin"}, "echo deploy admin_reset"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := serve(t, listCore(t, tc.scopes, nil), listReq, nil, respond("application/json", 200, toolsResult))
			if w.Code != 200 || toolNames(t, w.Body.String()) != tc.want {
				t.Fatalf("%d %s", w.Code, w.Body)
			}
			if cl := w.Header().Get("Content-Length"); cl != strconv.Itoa(w.Body.Len()) {
				t.Fatalf("Content-Length %s for %d bytes", cl, w.Body.Len())
			}
		})
	}
}

func TestListFilterSSE(t *testing.T) {
	stream := "event: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n" +
		"event: message\r\nid: 2\r\ndata: " + toolsResult + "\r\n\r\n"
	w := serve(t, listCore(t, []string{"mcp:read"}, nil), listReq, nil, respond("text/event-stream", 200, stream))
	body := w.Body.String()
	first, rest, ok := strings.Cut(body, "\n\n")
	if !ok || first+"\n\n" != stream[:strings.Index(stream, "\n\n")+2] {
		t.Fatalf("the progress event was not passed on as it was: %q", body)
	}
	if !strings.HasPrefix(rest, "event: message\nid: 2\ndata: {") || !strings.HasSuffix(rest, "}\n\n") {
		t.Fatalf("result event %q", rest)
	}
	data := strings.TrimSuffix(strings.TrimPrefix(rest, "event: message\nid: 2\ndata: "), "\n\n")
	if toolNames(t, data) != "echo" || w.Header().Get("Content-Length") != "" {
		t.Fatalf("filtered %s, headers %v", data, w.Header())
	}
}

func TestListFilterCases(t *testing.T) {
	batchReq := `[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"prompts/list"},{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo"}}]`
	batchResp := `[` + toolsResult + `,{"jsonrpc":"2.0","id":2,"result":{"prompts":[{"name":"greet"},{"name":"secret_prompt"}]}},{"jsonrpc":"2.0","id":3,"result":{"content":[{"type":"text","text":"tools"}]}}]`
	big := `{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"echo","description":"` + strings.Repeat("x", 5000) + `"}]}}`
	cases := []struct {
		name    string
		req     string
		next    caddyhttp.HandlerFunc
		status  int
		check   func(t *testing.T, body string)
		warning bool
	}{
		{"batch: each element", batchReq, respond("application/json", 200, batchResp), 200, func(t *testing.T, body string) {
			if strings.Contains(body, "deploy") || strings.Contains(body, "secret_prompt") || !strings.Contains(body, "greet") || !strings.Contains(body, `"text":"tools"`) {
				t.Fatalf("batch %s", body)
			}
		}, false},
		{"member names in another case", listReq, respond("application/json", 200, strings.Replace(strings.Replace(toolsResult, `"tools"`, `"Tools"`, 1), `"name":"deploy"`, `"NAME":"deploy"`, 1)), 200, func(t *testing.T, body string) {
			if strings.Contains(body, "deploy") {
				t.Fatalf("case variants passed: %s", body)
			}
		}, false},
		{"an error answer passes", listReq, respond("application/json", 200, `{"jsonrpc":"2.0","id":1,"error":{"code":-32601,"message":"no"}}`), 200, func(t *testing.T, body string) {
			if !strings.Contains(body, "-32601") {
				t.Fatal(body)
			}
		}, false},
		{"not 200 passes", listReq, respond("application/json", 500, `{"x":1}`), 500, nil, false},
		{"larger than max_body: 502", listReq, respond("application/json", 200, big), 502, nil, true},
		{"an event larger than max_body: 502", listReq, respond("text/event-stream", 200, "data: "+big+"\n\n"), 502, nil, true},
		{"compressed: 502", listReq, respond("application/json", 200, "\x1f\x8b...", "Content-Encoding", "gzip"), 502, nil, true},
		{"not JSON: 502", listReq, respond("application/json", 200, "<html>"), 502, nil, true},
		{"list result twice-named: 502", listReq, respond("application/json", 200, `{"jsonrpc":"2.0","id":1,"result":{"tools":[]},"Result":{"tools":[{"name":"deploy"}]}}`), 502, nil, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var logs *observer.ObservedLogs
			w := serve(t, listCore(t, []string{"mcp:read"}, &logs), tc.req, nil, tc.next)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if tc.status == 502 && (strings.Contains(w.Body.String(), "echo") || !strings.Contains(w.Body.String(), "-32603")) {
				t.Fatalf("502 body %s", w.Body)
			}
			if tc.check != nil {
				tc.check(t, w.Body.String())
			}
			if got := logs.FilterMessage("list response refused: it cannot be filtered").Len(); (got == 1) != tc.warning {
				t.Fatalf("%d warnings", got)
			}
		})
	}
}

// TestListFilterOnlyLists: a request that is no list request is not
// wrapped (its response streams untouched) and keeps its Accept-Encoding;
// a list request asks for identity.
func TestListFilterOnlyLists(t *testing.T) {
	var seen http.ResponseWriter
	var accept string
	next := func(w http.ResponseWriter, r *http.Request) error {
		seen, accept = w, r.Header.Get("Accept-Encoding")
		return nil
	}
	c := listCore(t, []string{"mcp:read"}, nil)
	serve(t, c, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`, map[string]string{"Accept-Encoding": "gzip"}, next)
	if _, wrapped := seen.(*listWriter); wrapped || accept != "gzip" {
		t.Fatalf("tools/call: wrapped %v, Accept-Encoding %q", wrapped, accept)
	}
	serve(t, c, listReq, map[string]string{"Accept-Encoding": "gzip"}, next)
	if _, wrapped := seen.(*listWriter); !wrapped || accept != "" {
		t.Fatalf("tools/list: wrapped %v, Accept-Encoding %q", wrapped, accept)
	}
	// A token that passes every rule has nothing hidden: not wrapped.
	admin := listCore(t, []string{"mcp:admin"}, nil)
	serve(t, admin, listReq, map[string]string{"Accept-Encoding": "gzip"}, next)
	if _, wrapped := seen.(*listWriter); wrapped || accept != "gzip" {
		t.Fatalf("tools/list, admin: wrapped %v, Accept-Encoding %q", wrapped, accept)
	}
	c.filterLists = false
	serve(t, c, listReq, nil, next)
	if _, wrapped := seen.(*listWriter); wrapped {
		t.Fatal("filter_lists off: wrapped")
	}
}

// TestListFilterHiddenToolRefused: a tool hidden from the list is refused
// when called, with the scope it needs.
func TestListFilterHiddenToolRefused(t *testing.T) {
	w := serve(t, listCore(t, []string{"mcp:read"}, nil), `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deploy"}}`, nil, respond("application/json", 200, "{}"))
	if w.Code != 403 || !strings.Contains(w.Header().Get("WWW-Authenticate"), `scope="mcp:write"`) {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
}

func TestEventEnd(t *testing.T) {
	cases := []struct {
		in      string
		n, next int
	}{
		{"data: a\n\nrest", 8, 9},
		{"data: a\r\n\r\nrest", 9, 11},
		{"data: a\r\rrest", 8, 9},
		{"data: a\n", -1, -1},
		{"data: a\r\n\r", -1, -1},
		{"data: a\r", -1, -1},
		{"id: 1\ndata: a\n\n", 14, 15},
	}
	for _, tc := range cases {
		t.Run(strconv.Quote(tc.in), func(t *testing.T) {
			n, next := eventEnd([]byte(tc.in))
			if n != tc.n || next != tc.next {
				t.Fatalf("eventEnd = %d, %d; want %d, %d", n, next, tc.n, tc.next)
			}
		})
	}
}

// BenchmarkListFilter: a tools/list answered by a 20-tool JSON result
// (about 4 KiB), filtered (read-only token: 10 hidden) vs not filtered.
func BenchmarkListFilter(b *testing.B) {
	var tools []string
	rules := map[string][]string{}
	for i := range 20 {
		name := "tool_" + strconv.Itoa(i)
		tools = append(tools, `{"name":"`+name+`","description":"`+strings.Repeat("d", 120)+`","inputSchema":{"type":"object"}}`)
		if i%2 == 1 {
			rules[name] = []string{"mcp:write"}
		}
	}
	result := `{"jsonrpc":"2.0","id":1,"result":{"tools":[` + strings.Join(tools, ",") + `]}}`
	next := respond("application/json", 200, result)
	for _, filter := range []bool{false, true} {
		b.Run("filter="+strconv.FormatBool(filter), func(b *testing.B) {
			c := &core{verifier: fakeVerifier{tok: &verifiers.AccessToken{ClientID: "c", Scopes: []string{"mcp:read"}}},
				logger: zap.NewNop(), maxBody: DefaultMaxBody, filterLists: filter, rules: scopeRules{tool: rules}}
			h := &Handler{module{core: c}}
			b.ReportAllocs()
			for b.Loop() {
				r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(listReq))
				r.Header.Set("Authorization", "Bearer abc")
				r.Header.Set("Content-Type", "application/json")
				r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
				w := httptest.NewRecorder()
				if err := h.ServeHTTP(w, r, next); err != nil || w.Code != 200 {
					b.Fatal(err, w.Code)
				}
			}
		})
	}
}

// TestListFilterStreamsOtherEvents: while a list response streams, an
// event that carries no list result reaches the client as soon as it is
// complete, before the server sends the list (it waits for the client to
// have seen the first event).
func TestListFilterStreamsOtherEvents(t *testing.T) {
	release := make(chan struct{})
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		_, _ = w.Write([]byte("data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n"))
		_, _ = w.Write([]byte("\n"))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-time.After(10 * time.Second):
			return errors.New("the client never saw the first event")
		}
		_, _ = w.Write([]byte("data: " + toolsResult + "\n\n"))
		return nil
	})
	c := listCore(t, []string{"mcp:read"}, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
		if err := (&Handler{module{core: c}}).ServeHTTP(w, r, next); err != nil {
			http.Error(w, err.Error(), 500)
		}
	}))
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(listReq))
	req.Header.Set("Authorization", "Bearer abc")
	req.Header.Set("Content-Type", "application/json")
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var data []string
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			data = append(data, d)
			if len(data) == 1 {
				close(release) // only now may the server send the list
			}
		}
	}
	if len(data) != 2 || !strings.Contains(data[0], "notifications/progress") || toolNames(t, data[1]) != "echo" {
		t.Fatalf("events %q", data)
	}
}

func TestListFilterResources(t *testing.T) {
	c := listCore(t, []string{"mcp:read"}, nil)
	c.rules.resource = map[string][]string{"file:///secret": {"mcp:admin"}, "file:///logs/{day}": {"mcp:admin"}}
	req := `[{"jsonrpc":"2.0","id":1,"method":"resources/list"},{"jsonrpc":"2.0","id":2,"method":"resources/templates/list"}]`
	resp := `[{"jsonrpc":"2.0","id":1,"result":{"resources":[{"uri":"file:///readme","name":"r"},{"uri":"file:///secret","name":"s"}]}},` +
		`{"jsonrpc":"2.0","id":2,"result":{"resourceTemplates":[{"uriTemplate":"file:///logs/{day}","name":"logs"},{"uriTemplate":"file:///docs/{page}","name":"docs"}]}}]`
	w := serve(t, c, req, nil, respond("application/json", 200, resp))
	body := w.Body.String()
	if w.Code != 200 || strings.Contains(body, "secret") || strings.Contains(body, "logs") || !strings.Contains(body, "readme") || !strings.Contains(body, "docs") {
		t.Fatalf("%d %s", w.Code, body)
	}
	// Reading the hidden resource is refused.
	w = serve(t, c, `{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"file:///secret"}}`, nil, respond("application/json", 200, "{}"))
	if w.Code != 403 || !strings.Contains(w.Header().Get("WWW-Authenticate"), `scope="mcp:admin"`) {
		t.Fatalf("%d %v", w.Code, w.Header())
	}
}

func TestListRulesCaddyfile(t *testing.T) {
	var c Config
	err := c.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mcp_token {\n hmac_secret {env.S}\n prompt_scopes incident mcp:write\n resource_scopes file:///x mcp:admin\n filter_lists off\n}"))
	if err != nil || c.FilterLists == nil || *c.FilterLists || c.PromptScopes["incident"][0] != "mcp:write" || c.ResourceScopes["file:///x"][0] != "mcp:admin" {
		t.Fatalf("%+v %v", c, err)
	}
	err = c.UnmarshalCaddyfile(caddyfile.NewTestDispenser("mcp_token {\n hmac_secret {env.S}\n filter_lists maybe\n}"))
	if err == nil || !strings.Contains(err.Error(), `filter_lists: "maybe", want on or off, at Testfile:3`) {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		cfg  Config
		want bool
	}{
		{Config{}, false},
		{Config{MethodScopes: map[string][]string{"tools/call": {"x"}}}, false},
		{Config{ToolScopes: map[string][]string{"deploy": {"x"}}}, true},
		{Config{PromptScopes: map[string][]string{"p": {"x"}}}, true},
		{Config{ToolScopes: map[string][]string{"deploy": {"x"}}, FilterLists: new(bool)}, false},
	} {
		tc.cfg.HMACSecret = strings.Repeat("s", 32)
		h := &Handler{module{Config: tc.cfg}}
		ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
		if err := h.Provision(ctx); err != nil {
			t.Fatal(err)
		}
		if h.core.filterLists != tc.want {
			t.Errorf("%+v: filterLists %v, want %v", tc.cfg, h.core.filterLists, tc.want)
		}
		_ = h.Cleanup()
		cancel()
	}
}

// FuzzListFilter: filtering never panics, and whatever it passes on, a Go
// client reading the result (case-insensitive member names, as
// encoding/json does) never finds the hidden tool in it.
func FuzzListFilter(f *testing.F) {
	f.Add([]byte(toolsResult))
	f.Add([]byte(`[` + toolsResult + `,{"jsonrpc":"2.0","id":2,"result":{"prompts":[{"name":"secret_prompt"}]}}]`))
	f.Add([]byte(`{"result":{"Tools":[{"NAME":"deploy"}],"tools":[{"name":"echo"}]}}`))
	f.Add([]byte(`{"result":{"tools":[{"name":"deploy","name":"echo"}]}}`))
	f.Add([]byte(`{"result":{"tools":[{"name":"de\u0070loy"}]}}`))
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"error":{"code":1,"message":"x"}}`))
	c := listCore(f, []string{"mcp:read"}, nil)
	lw := &listWriter{c: c, tok: c.verifier.(fakeVerifier).tok, kinds: listKinds[:2], max: 1 << 20}
	f.Fuzz(func(t *testing.T, body []byte) {
		out, err := lw.filterBody(body)
		if err != nil {
			return
		}
		var msgs []json.RawMessage
		if json.Unmarshal(out, &msgs) != nil {
			msgs = []json.RawMessage{out}
		}
		for _, m := range msgs {
			var resp struct {
				Result struct {
					Tools []struct {
						Name string `json:"name"`
					} `json:"tools"`
				} `json:"result"`
			}
			if json.Unmarshal(m, &resp) != nil {
				continue
			}
			for _, tl := range resp.Result.Tools {
				if tl.Name == "deploy" || tl.Name == "admin_reset" {
					t.Fatalf("hidden tool passed: %s -> %s", body, out)
				}
			}
		}
	})
}
