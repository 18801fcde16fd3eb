package mcptoken

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcptoken/caddy-mcp-token/devtools"
	"github.com/mcptoken/caddy-mcp-token/internal/mcpdemo"
	"github.com/mcptoken/caddy-mcp-token/internal/testpeers"
)

// The attack regression suite (issue 10): each family of attacks that got
// through the gateway once, replayed against a real Caddy in front of real
// MCP servers (the Go SDK, stateful, and the TypeScript SDK's Express app
// as its README shows it), judged by the backends' own records: a refused
// request must never reach the Go SDK server, and never run a tool on the
// Express server. Control rows prove the judges can see a request that
// does get through.

// expressBackend is testdata/node/attack-express-server.mjs.
type expressBackend struct {
	addr string
	cmd  *exec.Cmd
}

func startExpressBackend(t *testing.T) *expressBackend {
	t.Helper()
	testpeers.EnsureNode(t)
	cmd := exec.Command("node", "attack-express-server.mjs")
	cmd.Dir = testpeers.NodeDir()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting the Express MCP server: %v", err)
	}
	b := &expressBackend{cmd: cmd}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	var info struct{ Addr string }
	if err := testpeers.ReadyLine(stdout, 30*time.Second, &info); err != nil {
		t.Fatalf("the Express MCP server: %v", err)
	}
	b.addr = info.Addr
	return b
}

// runs is the number of tools the Express server executed.
func (b *expressBackend) runs(t *testing.T) int {
	t.Helper()
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + b.addr + "/__runs")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var runs []json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&runs); err != nil {
		t.Fatal(err)
	}
	return len(runs)
}

func toolCallBody(tool, args string) string {
	return `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"` + tool + `","arguments":` + args + `}}`
}

// utf7Body is head + mid + tail where mid is written in UTF-7's base64
// form: as UTF-8 the body is head's message with a harmless string; a
// backend that decodes UTF-7 (Express) reads mid's members too, and keeps
// the last method.
func utf7Body(head, mid, tail string) string {
	u := utf16.Encode([]rune(mid))
	b := make([]byte, 2*len(u))
	for i, r := range u {
		b[2*i], b[2*i+1] = byte(r>>8), byte(r)
	}
	return head + "+" + base64.RawStdEncoding.EncodeToString(b) + "-" + tail
}

func attackSend(t *testing.T, method, url, token, body string, header map[string]string) *http.Response {
	t.Helper()
	if method == http.MethodPost {
		resp, _ := postWith(t, url, token, body, header)
		return resp
	}
	remember(token)
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("Accept", "application/json, text/event-stream")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestE2EAttackRegression(t *testing.T) {
	key := devtools.MustGenerateKey("ES256")
	rec := &mcpdemo.Recorder{}
	goAddr, stop, err := mcpdemo.ServeStateful(rec)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ts := startExpressBackend(t)
	policy := fmt.Sprintf(`issuer %s
		audience %s
		public_key <<PEM_END
%sPEM_END
		required_scopes mcp:read
		tool_scopes deploy deploy:write
		rate_limit 3 60s`, e2eIssuer, e2eAudience, mustPEM(t, key))
	global := strings.Replace(caddyGlobal, "\tskip_install_trust\n",
		"\tskip_install_trust\n\tservers {\n\t\ttrusted_proxies static 127.0.0.1/32\n\t\ttrusted_proxies_strict\n\t}\n", 1)
	startCaddy(t, global+fmt.Sprintf(`
http://localhost:9080 {
	mcp_token /mcp* {
		%[1]s
	}
	mcp_token /ts* {
		%[1]s
	}
	reverse_proxy /mcp* %[2]s
	handle /ts* {
		uri strip_prefix /ts
		reverse_proxy %[3]s
	}
}
`, policy, goAddr, ts.addr), "caddyfile")

	token := func(sub string, scopes ...string) string {
		return key.MustToken(devtools.TokenOptions{Subject: sub, Issuer: e2eIssuer, Audience: []string{e2eAudience},
			Scopes: scopes, Claims: map[string]any{"client_id": "attack-suite"}})
	}
	alice, bob := token("alice", "mcp:read"), token("bob", "mcp:read")
	forged := devtools.MustGenerateKey("ES256").MustToken(devtools.TokenOptions{Issuer: e2eIssuer, Audience: []string{e2eAudience}})

	// Alice's session with the stateful Go SDK server, opened by the SDK's
	// own client through Caddy.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := connect(ctx, e2eBase+"/mcp", alice)
	if err != nil {
		t.Fatalf("alice connects: %v", err)
	}
	defer cs.Close()
	session := cs.ID()
	if session == "" {
		t.Fatal("the stateful backend gave no session id")
	}
	inSession := map[string]string{"Mcp-Session-Id": session, "Mcp-Protocol-Version": "2025-06-18"}

	type attack struct {
		family  string
		item    int
		method  string
		path    string
		token   string
		body    string
		header  map[string]string
		status  int
		reaches bool // a control row: the request gets through
	}
	echo := toolCallBody("echo", `{"text":"hi"}`)
	utf7Smuggle := utf7Body(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"x":"`,
		`"}},"method":"tools/call","params":{"name":"deploy","arguments":{"service":"prod"},"_meta":{"x":"`, `"}}}`)
	deploy := toolCallBody("deploy", `{"service":"prod"}`)
	attacks := []attack{
		// Item 2: a subpath the backend routes to the endpoint.
		{"subpath with a trailing slash, no token", 2, "POST", "/ts/mcp/", "", deploy, nil, 401, false},
		{"subpath with a query, no token", 2, "POST", "/ts/mcp/?x=1", "", deploy, nil, 401, false},
		{"control: the endpoint with a token", 2, "POST", "/ts/mcp", alice, echo, nil, 200, true},
		// Item 6: access_token in the query in spellings a backend decodes.
		{"query token, percent-encoded key", 6, "POST", "/ts/mcp?access%5Ftoken=" + alice, alice, echo, nil, 400, false},
		{"query token, encoded letter", 6, "POST", "/ts/mcp?%61ccess_token=" + alice, alice, echo, nil, 400, false},
		{"query token after ';'", 6, "POST", "/ts/mcp?a=1;access_token=" + alice, alice, echo, nil, 400, false},
		{"query token with a bracket suffix", 6, "POST", "/ts/mcp?access_token[]=" + alice, alice, echo, nil, 400, false},
		{"query token upper case", 6, "POST", "/ts/mcp?ACCESS_TOKEN=" + alice, alice, echo, nil, 400, false},
		// Per-tool scopes (the rule every body family targets).
		{"deploy without deploy:write", 1, "POST", "/ts/mcp", alice, deploy, nil, 403, false},
		// Item 13: another principal replays alice's session.
		{"bob calls a tool in alice's session", 13, "POST", "/mcp", bob, echo, inSession, 404, false},
		{"bob opens alice's stream", 13, "GET", "/mcp", bob, "", inSession, 404, false},
		{"bob deletes alice's session", 13, "DELETE", "/mcp", bob, "", inSession, 404, false},
		// Item 1: a body the backend decodes with another charset.
		{"utf-7 body that reads as tools/list in UTF-8", 1, "POST", "/ts/mcp", alice, utf7Smuggle,
			map[string]string{"Content-Type": "application/json; charset=utf-7"}, 415, false},
		{"gzip body", 1, "POST", "/ts/mcp", alice, deploy, map[string]string{"Content-Encoding": "gzip"}, 415, false},
		// Item 4: scopes split on Unicode whitespace.
		{"no-break space joins two scopes", 4, "POST", "/ts/mcp", token("nbsp", "mcp:read\u00a0deploy:write"), deploy, nil, 403, false},
		// Item 5: a preflight carrying a body; a body on DELETE.
		{"preflight with a tools/call body", 5, "OPTIONS", "/ts/mcp", "", deploy,
			map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}, 204, false},
		{"DELETE with a tools/call body", 5, "DELETE", "/mcp", alice, deploy, inSession, 400, false},
		// Item 10: a body larger than max_body is refused before it is read.
		// (Expect: 100-continue: the 413 comes before the body is read, and
		// a client still writing 2 MiB could otherwise see a reset instead.)
		{"body over max_body", 10, "POST", "/ts/mcp", alice, toolCallBody("echo", `{"text":"`+strings.Repeat("x", 2<<20)+`"}`), map[string]string{"Expect": "100-continue"}, 413, false},
		// Item 11: a time claim out of range.
		{"nbf 1e300", 11, "POST", "/ts/mcp", key.MustToken(devtools.TokenOptions{Subject: "t", Issuer: e2eIssuer, Audience: []string{e2eAudience},
			Scopes: []string{"mcp:read", "deploy:write"}, Claims: map[string]any{"nbf": 1e300}}), deploy, nil, 401, false},
		// Item 12: data after the JSON value.
		{"trailing garbage after the object", 12, "POST", "/ts/mcp", alice, echo + "}x", nil, 400, false},
		{"an object after the batch", 12, "POST", "/ts/mcp", alice, "[" + echo + "]" + deploy, nil, 400, false},
	}
	for _, a := range attacks {
		t.Run(fmt.Sprintf("item %d: %s", a.item, a.family), func(t *testing.T) {
			goBefore, tsBefore := rec.Count(), ts.runs(t)
			resp := attackSend(t, a.method, e2eBase+a.path, a.token, a.body, a.header)
			if resp.StatusCode != a.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, a.status)
			}
			reached := rec.Count() > goBefore || ts.runs(t) > tsBefore
			if reached != a.reaches {
				t.Fatalf("the backend ran the request: %v, want %v", reached, a.reaches)
			}
		})
	}

	// The attacks are real: sent to the bare Express server, without the
	// gateway, they run the tool.
	t.Run("controls: the bare backend runs the attacks", func(t *testing.T) {
		for _, c := range []struct{ path, contentType, body string }{
			{"/mcp", "application/json; charset=utf-7", utf7Smuggle},
			{"/mcp/?x=1", "application/json", deploy},
		} {
			before := ts.runs(t)
			resp := attackSend(t, "POST", "http://"+ts.addr+c.path, "", c.body, map[string]string{"Content-Type": c.contentType})
			if resp.StatusCode != 200 || ts.runs(t) != before+1 {
				t.Fatalf("%s %s: status %d, runs %d -> %d: the attack does not work on the bare backend", c.path, c.contentType, resp.StatusCode, before, ts.runs(t))
			}
		}
	})

	// Item 3: failed attempts behind trusted_proxies_strict. The attacker
	// writes a victim's address leftmost in X-Forwarded-For; Caddy keys
	// on the address the proxy saw, so the victim is never limited, and
	// the attacker's IPv6 /64 is one client however it rotates.
	t.Run("item 3: forged X-Forwarded-For cannot lock out a victim", func(t *testing.T) {
		attacker := map[string]string{"X-Forwarded-For": "203.0.113.50, 198.51.100.66"}
		for i := 0; i < 3; i++ {
			if r := attackSend(t, "POST", e2eBase+"/ts/mcp", forged, echo, attacker); r.StatusCode != 401 {
				t.Fatalf("failure %d: %d", i+1, r.StatusCode)
			}
		}
		if r := attackSend(t, "POST", e2eBase+"/ts/mcp", forged, echo, attacker); r.StatusCode != 429 {
			t.Fatalf("attacker after 3 failures: %d, want 429", r.StatusCode)
		}
		victim := map[string]string{"X-Forwarded-For": "203.0.113.50"}
		before := ts.runs(t)
		if r := attackSend(t, "POST", e2eBase+"/ts/mcp", token("victim", "mcp:read"), echo, victim); r.StatusCode != 200 || ts.runs(t) != before+1 {
			t.Fatalf("victim: %d", r.StatusCode)
		}
	})
	t.Run("item 3: IPv6 rotation within a /64", func(t *testing.T) {
		for i := 1; i <= 3; i++ {
			xff := map[string]string{"X-Forwarded-For": fmt.Sprintf("2001:db8:7:7::%x", i)}
			if r := attackSend(t, "POST", e2eBase+"/ts/mcp", forged, echo, xff); r.StatusCode != 401 {
				t.Fatalf("failure %d: %d", i, r.StatusCode)
			}
		}
		xff := map[string]string{"X-Forwarded-For": "2001:db8:7:7:abcd::1"}
		if r := attackSend(t, "POST", e2eBase+"/ts/mcp", forged, echo, xff); r.StatusCode != 429 {
			t.Fatalf("a fresh address of the same /64: %d, want 429", r.StatusCode)
		}
	})
	// Item 9: metadata derived from the Host header is not shared-cacheable.
	t.Run("item 9: derived metadata varies on Host", func(t *testing.T) {
		resp, _ := getJSON(t, e2eBase+"/.well-known/oauth-protected-resource/mcp")
		if resp.Header.Get("Vary") != "Host" || strings.Contains(resp.Header.Get("Cache-Control"), "public") {
			t.Fatalf("Vary %q, Cache-Control %q", resp.Header.Get("Vary"), resp.Header.Get("Cache-Control"))
		}
	})
	// Item 2 at adapt time: the matcher that let the subpath through.
	t.Run("item 2: mcp_token /mcp is refused by adapt", func(t *testing.T) {
		src := "example.com {\n\tmcp_token /mcp {\n\t\tstatic_token dev c1\n\t}\n}\n"
		if _, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(src), nil); err == nil {
			t.Fatal("adapted")
		}
	})
	// Alice's session survived every attack on it.
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "still mine"}})
	if err != nil || res.IsError {
		t.Fatalf("alice's session after the attacks: %v", err)
	}
}
