package mcpdemo

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestRecorderRecordsToolRuns: the recorder counts requests and tool
// executions separately, so a test can tell a request that reached the
// backend from a tool that actually ran.
func TestRecorderRecordsToolRuns(t *testing.T) {
	rec := &Recorder{}
	addr, stop, err := Serve(rec)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: "http://" + addr + "/mcp",
		HTTPClient: &http.Client{Timeout: 10 * time.Second}, DisableStandaloneSSE: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if _, err := cs.ListTools(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if n := rec.Ran(""); n != 0 || rec.Count() == 0 {
		t.Fatalf("after tools/list: %d tool runs, %d requests", n, rec.Count())
	}
	for _, call := range []struct {
		name string
		args map[string]any
	}{{"echo", map[string]any{"text": "x"}}, {"deploy", map[string]any{"service": "api"}}, {"echo", map[string]any{"text": "y"}}} {
		if res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: call.name, Arguments: call.args}); err != nil || res.IsError {
			t.Fatalf("%s: %v %v", call.name, err, res)
		}
	}
	if rec.Ran("echo") != 2 || rec.Ran("deploy") != 1 || rec.Ran("whoami") != 0 || rec.Ran("") != 3 {
		t.Fatalf("tool runs: %+v", rec.ToolRuns())
	}
	if runs := rec.ToolRuns(); runs[1].Name != "deploy" || string(runs[1].Arguments) != `{"service":"api"}` {
		t.Fatalf("second run: %+v", runs[1])
	}
	// A nil recorder records nothing and does not panic.
	var none *Recorder
	none.ran(&mcp.CallToolRequest{Params: &mcp.CallToolParamsRaw{Name: "echo"}})
}
