package mcptoken

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcptoken/caddy-mcp-token/internal/streak"
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

// failingCache is a replay store that is down.
type failingCache struct{}

func (failingCache) Seen(context.Context, string, time.Time) (bool, error) {
	return false, errors.New("dial tcp: connection refused")
}

// TestStoreOutageLogging: a store outage is one WARN per failure streak
// and an INFO on recovery, however many checks fail.
func TestStoreOutageLogging(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	cache := &switchCache{}
	l := loggedReplay{cache, streak.New(zap.New(core), "mcp_token redis store", nil)}
	for i := 0; i < 5; i++ {
		cache.down = true
		if _, err := l.Seen(context.Background(), "k", time.Now()); err == nil {
			t.Fatal("an outage passed")
		}
	}
	cache.down = false
	if _, err := l.Seen(context.Background(), "k", time.Now()); err != nil {
		t.Fatal(err)
	}
	warns, infos := logs.FilterLevelExact(zapcore.WarnLevel).Len(), logs.FilterLevelExact(zapcore.InfoLevel).Len()
	if warns != 1 || infos != 1 {
		t.Fatalf("%d WARN and %d INFO lines, want 1 and 1: %v", warns, infos, logs.All())
	}
}

// switchCache fails while down.
type switchCache struct{ down bool }

func (s *switchCache) Seen(ctx context.Context, key string, until time.Time) (bool, error) {
	if s.down {
		return failingCache{}.Seen(ctx, key, until)
	}
	return false, nil
}
