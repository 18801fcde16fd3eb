package mcptoken

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"

	"github.com/mcptoken/caddy-mcp-token/internal/testpeers"
	"github.com/mcptoken/caddy-mcp-token/store"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// TestE2EFleetReplayStore: Caddy with the global `mcp_token { store redis
// <url> }` and a second gateway core on the same Redis (the store API, as
// another instance would use it): a proof Caddy accepted is refused as a
// replay by the other instance; with Redis down, Caddy answers 503 to a
// fresh proof and never passes it.
func TestE2EFleetReplayStore(t *testing.T) {
	url, stopRedis := testpeers.StartRedis(t)
	rec, backend := startBackend(t)
	t.Setenv("MCP_E2E_STORE_SECRET", string(dpopSecret))
	global := strings.TrimSuffix(strings.TrimSpace(caddyGlobal), "}") + "\tmcp_token {\n\t\tstore redis " + url + "\n\t}\n}\n"
	startCaddy(t, global+fmt.Sprintf(`
http://localhost:9080 {
	mcp_token /mcp* {
		hmac_secret {env.MCP_E2E_STORE_SECRET}
		authorization_servers https://as.example.com
		dpop required
	}
	handle /mcp* {
		reverse_proxy %s
	}
}
`, backend), "caddyfile")
	client := newDPoPClient(t)
	token := dpopToken(t, client.jkt)
	remember(token)
	resource := e2eBase + "/mcp"
	send := func(proof string) (int, string) {
		resp, body := postWith(t, resource, "", toolsList, map[string]string{"Authorization": "DPoP " + token, "DPoP": proof})
		return resp.StatusCode, body
	}
	proof := client.proof(t, "POST", resource, token)
	if status, body := send(proof); status != 200 || !strings.Contains(body, "echo") {
		t.Fatalf("through Caddy: %d %s", status, body)
	}
	other, err := store.NewRedis(url, store.RedisOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	second, err := verifiers.NewDPoPChecker(verifiers.DPoPOptions{Replay: other})
	if err != nil {
		t.Fatal(err)
	}
	_, err = second.Check(context.Background(), verifiers.DPoPRequest{
		Proofs: []string{proof}, Method: "POST", URL: resource, AccessToken: token, JKT: client.jkt})
	if !errors.Is(err, verifiers.ErrProofReplayed) {
		t.Fatalf("the other instance: %v, want a replay", err)
	}
	stopRedis()
	before := rec.Ran("")
	if status, body := send(client.proof(t, "POST", resource, token)); status != 503 {
		t.Fatalf("Redis down: %d %s, want 503", status, body)
	}
	if rec.Ran("") != before {
		t.Fatal("a request reached the backend with the replay store down")
	}
}

// TestStoreGlobalOption: the global option's grammar.
func TestStoreGlobalOption(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"mcp_token {\n store redis redis://127.0.0.1:6379/0 2s\n}", `{"store":{"type":"redis","url":"redis://127.0.0.1:6379/0","timeout":2000000000}}`, ""},
		{"mcp_token {\n store memory\n}", `{"store":{"type":"memory"}}`, ""},
		{"mcp_token {\n store redis\n}", "", "want `store memory`"},
		{"mcp_token {\n store redis redis://x 0s\n}", "", "positive duration"},
		{"mcp_token {\n cache on\n}", "", "unrecognized"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			v, err := parseGlobalOption(caddyfile.NewTestDispenser(tc.in), nil)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := string(v.(httpcaddyfile.App).Value); got != tc.want {
				t.Fatalf("app = %s, want %s", got, tc.want)
			}
		})
	}
}
