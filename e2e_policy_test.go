package mcptoken

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mcptoken/caddy-mcp-token/devtools"
)

// policyDeployRule: deploy only for members of ops, and billing only by
// alice; every other tool for anyone.
const policyDeployRule = `mcp.name != "deploy" || ("ops" in claims.groups && (mcp.arguments.service != "billing" || sub in ["alice"]))`

// TestE2EIdentityAndPolicy: claim placeholders reach the backend as
// headers (safely), allow_if rules decide deploy by group and by
// argument, the access log says who was refused and why (log_append), and
// the audit logger writes one line per decision; all lines go to the file
// the log-leak scan reads.
func TestE2EIdentityAndPolicy(t *testing.T) {
	if testing.Short() {
		t.Skip("e2e")
	}
	key := devtools.MustGenerateKey("ES256")
	rec, backend := startBackend(t)
	startCaddy(t, caddyGlobal+fmt.Sprintf(`
http://localhost:9080 {
	log {
		output file %[1]s
	}
	log_append mcp_client {http.auth.user.client_id}
	log_append mcp_reason {http.auth.result}
	handle /mcp* {
		mcp_token {
			issuer %[2]s
			audience %[3]s
			public_key <<PEM_END
%[4]sPEM_END
			authorization_servers https://as.example
			rate_limit 3 1m
			audit
			allow_if %[5]s
		}
		reverse_proxy %[6]s {
			header_up X-Email {http.auth.user.claim.email}
			header_up X-Groups {http.auth.user.claim.groups}
			header_up X-Tenant {http.auth.user.claim.org.tenant}
		}
	}
}
`, caddyLogFile, e2eIssuer, e2eAudience, mustPEM(t, key), "`"+policyDeployRule+"`", backend), "caddyfile")

	token := func(sub string, claims map[string]any) string {
		claims["client_id"] = "cli-" + sub
		tok := key.MustToken(devtools.TokenOptions{Subject: sub, Issuer: e2eIssuer, Audience: []string{e2eAudience}, Claims: claims, ExpiresIn: time.Hour})
		remember(tok)
		return tok
	}
	ops := map[string]any{"email": "bob@example.com", "groups": []any{"ops", "dev"}, "org": map[string]any{"tenant": "acme"}}
	bob := token("bob", ops)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	t.Run("claims reach the backend as headers", func(t *testing.T) {
		s, err := connect(ctx, e2eBase+"/mcp", bob)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}}); err != nil {
			t.Fatal(err)
		}
		h := rec.Last()
		if h.Get("X-Email") != "bob@example.com" || h.Get("X-Groups") != "ops,dev" || h.Get("X-Tenant") != "acme" {
			t.Fatalf("headers X-Email %q X-Groups %q X-Tenant %q", h.Get("X-Email"), h.Get("X-Groups"), h.Get("X-Tenant"))
		}
	})

	t.Run("an absent claim forwards an empty header", func(t *testing.T) {
		s, err := connect(ctx, e2eBase+"/mcp", token("carol", map[string]any{}))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if _, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}}); err != nil {
			t.Fatal(err)
		}
		h := rec.Last()
		for _, name := range []string{"X-Email", "X-Groups", "X-Tenant"} {
			if v := h.Get(name); v != "" {
				t.Errorf("%s %q, want empty", name, v)
			}
		}
	})

	t.Run("a claim with CR/LF cannot inject a header", func(t *testing.T) {
		evil := token("eve", map[string]any{"email": "eve@example.com\r\nX-Injected: yes", "groups": []any{"dev\nX-Injected: 2"}})
		resp, body := post(t, e2eBase+"/mcp", evil, echoCall)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
		h := rec.Last()
		if h.Get("X-Injected") != "" || strings.ContainsAny(h.Get("X-Email"), "\r\n") || h.Get("X-Email") != "eve@example.com  X-Injected: yes" {
			t.Fatalf("headers %v", h)
		}
	})

	deploy := func(t *testing.T, tok, service string) error {
		t.Helper()
		s, err := connect(ctx, e2eBase+"/mcp", tok)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		_, err = s.CallTool(ctx, &mcp.CallToolParams{Name: "deploy", Arguments: map[string]any{"service": service}})
		return err
	}
	for _, tc := range []struct {
		name, sub string
		groups    []any
		service   string
		allowed   bool
	}{
		{"ops deploys web", "bob", []any{"ops"}, "web", true},
		{"dev may not deploy", "dan", []any{"dev"}, "web", false},
		{"ops may not deploy billing", "bob", []any{"ops"}, "billing", false},
		{"alice of ops deploys billing", "alice", []any{"ops"}, "billing", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := rec.Ran("deploy")
			err := deploy(t, token(tc.sub, map[string]any{"groups": tc.groups}), tc.service)
			if tc.allowed != (err == nil) {
				t.Fatalf("allowed %v, error %v", tc.allowed, err)
			}
			if ran := rec.Ran("deploy") - before; ran != map[bool]int{true: 1, false: 0}[tc.allowed] {
				t.Fatalf("deploy ran %d times", ran)
			}
			if !tc.allowed && !strings.Contains(err.Error(), "Forbidden") {
				t.Fatalf("error %v, want a 403", err)
			}
		})
	}

	t.Run("dev does not see deploy listed", func(t *testing.T) {
		s, err := connect(ctx, e2eBase+"/mcp", token("dan", map[string]any{"groups": []any{"dev"}}))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		res, err := s.ListTools(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, tool := range res.Tools {
			if tool.Name == "deploy" {
				t.Fatal("deploy listed for a caller no rule allows")
			}
		}
		if len(res.Tools) != 2 {
			t.Fatalf("%d tools, want echo and whoami", len(res.Tools))
		}
	})

	// A 403 from the rule, a 401 and a 429, as the access log shows them.
	dan := token("dan", map[string]any{"groups": []any{"dev"}})
	resp, body := post(t, e2eBase+"/mcp", dan, `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"deploy","arguments":{"service":"web"}}}`)
	if resp.StatusCode != 403 || strings.Contains(resp.Header.Get("WWW-Authenticate"), "scope=") {
		t.Fatalf("deploy by dev: %d %q %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
	}
	bad := devtools.MustGenerateKey("ES256").MustToken(devtools.TokenOptions{Issuer: e2eIssuer, Audience: []string{e2eAudience}})
	remember(bad)
	statuses := []int{}
	for i := 0; i < 5; i++ {
		resp, _ := post(t, e2eBase+"/mcp", bad, toolsList)
		statuses = append(statuses, resp.StatusCode)
		if resp.StatusCode == 429 {
			break
		}
	}
	if statuses[0] != 401 || statuses[len(statuses)-1] != 429 {
		t.Fatalf("statuses %v: want 401s, then 429", statuses)
	}

	// The access line of a request is written after its response: wait
	// (bounded) until the last request's line is there.
	var access, audit []map[string]any
	for deadline := time.Now().Add(5 * time.Second); ; {
		access, audit = readE2ELog(t)
		if hasAccess(access, 429) && len(audit) == len(access) || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	want := []struct {
		status int
		client string
		reason string
	}{
		{403, "cli-dan", "policy_denied"},
		{401, "", "bad_signature"},
		{429, "", "rate_limited"},
		{200, "cli-bob", "accepted"},
	}
	for _, w := range want {
		found := false
		for _, l := range access {
			if s, _ := l["status"].(float64); int(s) == w.status && l["mcp_client"] == w.client && l["mcp_reason"] == w.reason {
				found = true
			}
		}
		if !found {
			t.Errorf("no access log line with status %d, mcp_client %q, mcp_reason %q", w.status, w.client, w.reason)
		}
	}
	// One audit line per decision: as many as access lines of /mcp.
	if len(audit) == 0 || len(audit) != len(access) {
		t.Errorf("%d audit lines for %d requests", len(audit), len(access))
	}
	for _, reason := range []string{"accepted", "policy_denied", "bad_signature", "rate_limited"} {
		found := false
		for _, l := range audit {
			if l["reason"] == reason && l["level"] == "info" {
				found = true
			}
		}
		if !found {
			t.Errorf("no audit line for %s", reason)
		}
	}
}

// readE2ELog returns the access log lines of the policy test's site and
// the audit lines, from the e2e log file.
func readE2ELog(t *testing.T) (access, audit []map[string]any) {
	t.Helper()
	f, err := os.Open(caddyLogFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			continue
		}
		switch logger, _ := m["logger"].(string); {
		case strings.HasPrefix(logger, "http.log.access") && m["mcp_reason"] != nil:
			access = append(access, m)
		case logger == "http.handlers.mcp_token.audit":
			audit = append(audit, m)
		}
	}
	return access, audit
}

func hasAccess(lines []map[string]any, status int) bool {
	for _, l := range lines {
		if s, _ := l["status"].(float64); int(s) == status {
			return true
		}
	}
	return false
}
