package mcptoken

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcptoken/caddy-mcp-token/devtools"
	"github.com/mcptoken/caddy-mcp-token/internal/mcpdemo"
	"github.com/mcptoken/caddy-mcp-token/internal/testpeers"
)

// The MCP 2026-07-28 duties end to end: scope_implies, the base64 Mcp-Name
// and the -32020 answer, and lists filtered for the official SDK clients
// in both response modes (JSON, event stream).

const (
	e2e26Issuer  = "https://as.e2e26.test"
	nonASCIITool = "überprüfen_数据"
)

// e2e26 starts two demo backends (JSON and event-stream answers) with two
// more tools, behind one mcp_token. release unblocks slow_progress, which
// sends a progress notification, then waits for it, then answers.
func e2e26(t *testing.T) (key *devtools.KeyPair, release chan struct{}, rec *mcpdemo.Recorder) {
	t.Helper()
	key = devtools.MustGenerateKey("ES256")
	release = make(chan struct{})
	tools := func(s *mcp.Server) {
		mcp.AddTool(s, &mcp.Tool{Name: nonASCIITool, Description: "A tool whose name is not ASCII."},
			func(context.Context, *mcp.CallToolRequest, struct{}) (*mcp.CallToolResult, mcpdemo.EchoOut, error) {
				return nil, mcpdemo.EchoOut{Text: "geprüft"}, nil
			})
		mcp.AddTool(s, &mcp.Tool{Name: "slow_progress", Description: "Progress, then the result."},
			func(ctx context.Context, req *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, mcpdemo.EchoOut, error) {
				_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: req.Params.GetProgressToken(), Progress: 1, Total: 2, Message: "halfway"})
				select {
				case <-release:
				case <-ctx.Done():
					return nil, mcpdemo.EchoOut{}, ctx.Err()
				}
				return nil, mcpdemo.EchoOut{Text: "done"}, nil
			})
	}
	rec = &mcpdemo.Recorder{}
	jsonAddr, stopJSON, err := mcpdemo.ServeWith(rec, mcpdemo.Options{Tools: tools})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopJSON)
	sseAddr, stopSSE, err := mcpdemo.ServeWith(nil, mcpdemo.Options{SSE: true, Tools: tools})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopSSE)
	startCaddy(t, caddyGlobal+fmt.Sprintf(`
http://localhost:9080 {
	mcp_token /mcp* {
		issuer %[1]s
		audience mcp26
		public_key <<PEM_END
%[2]sPEM_END
		required_scopes mcp:read
		scope_implies mcp:admin mcp:write mcp:read
		tool_scopes deploy mcp:write
	}
	handle /mcp/sse {
		reverse_proxy %[4]s
	}
	handle /mcp {
		reverse_proxy %[3]s
	}
}
`, e2e26Issuer, mustPEM(t, key), jsonAddr, sseAddr), "caddyfile")
	return key, release, rec
}

func token26(key *devtools.KeyPair, scopes ...string) string {
	tok := key.MustToken(devtools.TokenOptions{Issuer: e2e26Issuer, Audience: []string{"mcp26"}, Scopes: scopes, Claims: map[string]any{"client_id": "c26"}})
	remember(tok)
	return tok
}

func TestE2EMCP2026(t *testing.T) {
	key, release, rec := e2e26(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	reader, writer, admin := token26(key, "mcp:read"), token26(key, "mcp:write", "mcp:read"), token26(key, "mcp:admin")
	enc := func(s string) string { return "=?base64?" + base64.StdEncoding.EncodeToString([]byte(s)) + "?=" }

	// Must show 3 (Go SDK, both modes) and 1 (scope_implies): lists are
	// shaped by the token; a hidden tool is still refused.
	for _, mode := range []struct{ name, path string }{{"JSON", "/mcp"}, {"SSE", "/mcp/sse"}} {
		t.Run("Go SDK "+mode.name, func(t *testing.T) {
			for _, tc := range []struct {
				name, token string
				deploy      bool
			}{{"read-only", reader, false}, {"write", writer, true}, {"admin implies write and read", admin, true}} {
				cs, err := connect(ctx, e2eBase+mode.path, tc.token)
				if err != nil {
					t.Fatalf("%s: connect: %v", tc.name, err)
				}
				res, err := cs.ListTools(ctx, nil)
				if err != nil {
					t.Fatalf("%s: tools/list: %v", tc.name, err)
				}
				var names []string
				for _, tl := range res.Tools {
					names = append(names, tl.Name)
				}
				if slices.Contains(names, "deploy") != tc.deploy || !slices.Contains(names, "echo") || !slices.Contains(names, nonASCIITool) {
					t.Fatalf("%s: tools %v", tc.name, names)
				}
				// The SDK speaks 2026-07-28 and sends the non-ASCII name in
				// Mcp-Name (as raw UTF-8: v1.8.0 does not encode it).
				call, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: nonASCIITool, Arguments: map[string]any{}})
				if err != nil || call.IsError {
					t.Fatalf("%s: %s: %v %+v", tc.name, nonASCIITool, err, call)
				}
				if mode.path == "/mcp" {
					last := rec.LastRequest().Header
					if last.Get("Mcp-Name") != nonASCIITool || last.Get("Mcp-Protocol-Version") < "2026-07-28" {
						t.Fatalf("the SDK did not send Mcp-Name with 2026-07-28: %v", last)
					}
				}
				// The SDK closes its session after a refusal: this goes last.
				call, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "deploy", Arguments: map[string]any{"service": "api"}})
				if tc.deploy {
					if err != nil || call.IsError {
						t.Fatalf("%s: deploy: %v %+v", tc.name, err, call)
					}
				} else if err == nil || !strings.Contains(err.Error(), http.StatusText(http.StatusForbidden)) {
					t.Fatalf("%s: calling the hidden tool: %v %+v", tc.name, err, call)
				}
				_ = cs.Close()
			}
		})
	}

	// Must show 2 with raw requests: the base64 header decoded and
	// compared. The requests say 2025-11-25: the Go SDK v1.8.0 server
	// compares a 2026-07-28 Mcp-Name without decoding it, so it would
	// refuse what the gateway rightly passed.
	callBody := `{"jsonrpc":"2.0","id":41,"method":"tools/call","params":{"name":"` + nonASCIITool + `","arguments":{}}}`
	for _, tc := range []struct {
		name, mcpName string
		status        int
	}{
		{"base64 name agrees", enc(nonASCIITool), 200},
		{"base64 name disagrees", enc("uberpruefen"), 400},
		{"malformed base64", "=?base64?%%%?=", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := postWith(t, e2eBase+"/mcp", reader, callBody, map[string]string{
				"Mcp-Method": "tools/call", "Mcp-Name": tc.mcpName, "Mcp-Protocol-Version": "2025-11-25"})
			if resp.StatusCode != tc.status || (tc.status == 200 && !strings.Contains(body, "geprüft")) {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.status == 400 {
				var rpc struct {
					ID    json.RawMessage    `json:"id"`
					Error struct{ Code int } `json:"error"`
				}
				if err := json.Unmarshal([]byte(body), &rpc); err != nil || string(rpc.ID) != "41" || rpc.Error.Code != -32020 {
					t.Fatalf("want a JSON-RPC error -32020 with id 41, got %s", body)
				}
			}
		})
	}

	// Must show 3, the stream: a tools/call answered with a progress event
	// and then the result arrives event by event: the first event reaches
	// the client while the tool still waits (it cannot send the result
	// before release is closed, which happens only after).
	t.Run("event by event", func(t *testing.T) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e2eBase+"/mcp/sse",
			strings.NewReader(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"slow_progress","arguments":{},"_meta":{"progressToken":"p7"}}}`))
		req.Header.Set("Authorization", "Bearer "+reader)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := (&http.Client{Timeout: 20 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("%d %v", resp.StatusCode, resp.Header)
		}
		events := make(chan string, 4)
		go func() {
			defer close(events)
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
					events <- data
				}
			}
		}()
		select {
		case first := <-events:
			if !strings.Contains(first, "notifications/progress") || !strings.Contains(first, "halfway") {
				t.Fatalf("first event %s", first)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the progress event did not arrive before the result was sent: the stream was held")
		}
		close(release)
		if last := <-events; !strings.Contains(last, `"id":7`) || !strings.Contains(last, "done") {
			t.Fatalf("last event %s", last)
		}
	})
}

// TestE2EMCP2026TypeScript: the official TypeScript SDK client, against
// the JSON and the event-stream backend.
func TestE2EMCP2026TypeScript(t *testing.T) {
	key, _, _ := e2e26(t)
	reader, writer := token26(key, "mcp:read"), token26(key, "mcp:write", "mcp:read")
	for _, path := range []string{"/mcp", "/mcp/sse"} {
		for _, tc := range []struct {
			name, token string
			deploy      bool
		}{{"read-only", reader, false}, {"write", writer, true}} {
			t.Run(path+" "+tc.name, func(t *testing.T) {
				res := runTSList(t, e2eBase+path, tc.token)
				if res.Error != "" || slices.Contains(res.Tools, "deploy") != tc.deploy || !slices.Contains(res.Tools, "echo") {
					t.Fatalf("%+v", res)
				}
				if tc.deploy {
					if res.HiddenStatus != 0 || res.HiddenError != "" {
						t.Fatalf("deploy refused: %+v", res)
					}
				} else if res.HiddenStatus != 403 || res.HiddenScope != "mcp:read mcp:write" {
					t.Fatalf("calling the hidden tool: %+v", res)
				}
			})
		}
	}
}

// tsListResult is what testdata/node/ts-list-filter.mjs reports.
type tsListResult struct {
	Tools        []string `json:"tools"`
	HiddenStatus int      `json:"hiddenStatus"`
	HiddenScope  string   `json:"hiddenScope"`
	HiddenError  string   `json:"hiddenError"`
	Error        string   `json:"error"`
}

func runTSList(t *testing.T, endpoint, token string) tsListResult {
	t.Helper()
	testpeers.EnsureNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "ts-list-filter.mjs", endpoint, token)
	cmd.Dir = testpeers.NodeDir()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("ts-list-filter.mjs: %v\n%s", err, stderr.String())
	}
	var res tsListResult
	if err := json.Unmarshal(bytes.TrimSpace(out), &res); err != nil {
		t.Fatalf("ts-list-filter.mjs printed %q: %v\n%s", out, err, stderr.String())
	}
	return res
}
