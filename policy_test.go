package mcptoken

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	_ "github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mcptoken/caddy-mcp-token/internal/limiter"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// deployRule: deploy only for members of ops, and to prod only for alice.
const deployRule = `mcp.name != "deploy" || ("ops" in claims.groups && (mcp.arguments.env != "prod" || sub in ["alice"]))`

func policyCore(t testing.TB, tok *verifiers.AccessToken, rules ...string) (*core, *observer.ObservedLogs) {
	t.Helper()
	p, err := newPolicy(rules)
	if err != nil {
		t.Fatal(err)
	}
	zc, logs := observer.New(zapcore.DebugLevel)
	logger := zap.New(zc)
	return &core{
		verifier: fakeVerifier{tok: tok}, logger: logger, audit: logger.Named("audit"),
		maxBody: 4096, allow: p, filterLists: p != nil, corsPreflight: true,
	}, logs
}

func toolCall(name, args string) string {
	return fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":%q,"arguments":%s}}`, name, args)
}

func okNext(w http.ResponseWriter, r *http.Request) error {
	w.WriteHeader(http.StatusOK)
	return nil
}

func TestAllowIfDeploy(t *testing.T) {
	ops := map[string]any{"groups": []any{"ops", "dev"}}
	dev := map[string]any{"groups": []any{"dev"}}
	cases := []struct {
		name   string
		sub    string
		claims map[string]any
		body   string
		status int
	}{
		{"ops deploys to staging", "bob", ops, toolCall("deploy", `{"env":"staging"}`), 200},
		{"dev may not deploy", "bob", dev, toolCall("deploy", `{"env":"staging"}`), 403},
		{"ops may not deploy to prod", "bob", ops, toolCall("deploy", `{"env":"prod"}`), 403},
		{"alice of ops deploys to prod", "alice", ops, toolCall("deploy", `{"env":"prod"}`), 200},
		{"alice outside ops may not", "alice", dev, toolCall("deploy", `{"env":"prod"}`), 403},
		{"other tools for anyone", "bob", dev, toolCall("echo", `{"text":"hi"}`), 200},
		{"deploy without env fails closed", "bob", ops, toolCall("deploy", `{}`), 403},
		{"a batch needs every call allowed", "bob", dev, "[" + toolCall("echo", `{}`) + "," + toolCall("deploy", `{"env":"dev"}`) + "]", 403},
		{"no groups claim fails closed", "bob", nil, toolCall("deploy", `{"env":"dev"}`), 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := policyCore(t, &verifiers.AccessToken{ClientID: "c1", Subject: tc.sub, Claims: tc.claims}, deployRule)
			w := serve(t, c, tc.body, nil, okNext)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if tc.status == 403 {
				ch := w.Header().Get("WWW-Authenticate")
				if strings.Contains(ch, "scope=") || !strings.Contains(ch, "access policy") {
					t.Errorf("challenge %q: want a policy description and no scope", ch)
				}
				if !strings.Contains(w.Body.String(), "policy") {
					t.Errorf("body %s", w.Body)
				}
			}
		})
	}
}

func TestAllowIfByGroupWithoutArguments(t *testing.T) {
	rule := `mcp.name != "deploy" || claims.groups.exists(g, g == "ops")`
	for _, tc := range []struct {
		groups []any
		status int
	}{{[]any{"ops"}, 200}, {[]any{"dev"}, 403}} {
		t.Run(fmt.Sprint(tc.groups), func(t *testing.T) {
			c, _ := policyCore(t, &verifiers.AccessToken{ClientID: "c1", Claims: map[string]any{"groups": tc.groups}}, rule)
			before := argsDecoded.Load()
			w := serve(t, c, toolCall("deploy", `{"env":"prod"}`), nil, okNext)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d", w.Code, tc.status)
			}
			if n := argsDecoded.Load() - before; n != 0 {
				t.Errorf("arguments decoded %d times for a rule that does not read them", n)
			}
		})
	}
}

func TestAllowIfRuntimeErrorRefusesAndLogs(t *testing.T) {
	// level is a string: comparing it with a number is an evaluation error.
	c, logs := policyCore(t, &verifiers.AccessToken{ClientID: "c1", Claims: map[string]any{"level": "high"}}, `claims.level > 3`)
	w := serve(t, c, toolCall("echo", `{}`), nil, okNext)
	if w.Code != 403 {
		t.Fatalf("status %d, want 403 (fail closed)", w.Code)
	}
	found := false
	for _, e := range logs.FilterMessage("bearer token rejected").All() {
		m := e.ContextMap()
		if m["reason"] == "policy_denied" && strings.Contains(fmt.Sprint(m["error"]), "evaluation failed") {
			found = true
		}
	}
	if !found {
		t.Fatalf("no debug line naming the evaluation error: %v", logs.All())
	}
}

func TestAllowIfRequestVariables(t *testing.T) {
	c, _ := policyCore(t, &verifiers.AccessToken{ClientID: "c1", Issuer: "https://idp", Scopes: []string{"mcp:read"}},
		`request.path == "/mcp" && request.method == "POST" && iss == "https://idp" && "mcp:read" in scopes && client_id == "c1" && request.remote_ip == "192.0.2.1"`)
	if w := serve(t, c, toolCall("echo", `{}`), nil, okNext); w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
}

func TestReadsArguments(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want bool
	}{
		{`mcp.name == "deploy"`, false},
		{`mcp.method == "tools/call" && "ops" in claims.groups`, false},
		{`mcp.arguments.env != "prod"`, true},
		{`mcp["arguments"].env != "prod"`, true},
		{`has(mcp.arguments.env)`, true},
		{`size(mcp) > 0`, true},
		{`"x" in claims`, false},
	} {
		t.Run(tc.src, func(t *testing.T) {
			_, args, err := compileRule(tc.src)
			if err != nil {
				t.Fatal(err)
			}
			if args != tc.want {
				t.Errorf("reads arguments %v, want %v", args, tc.want)
			}
		})
	}
}

func TestCompileRuleErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{`claims.groups.exists(g, g == "ops"`, "Syntax error"},
		{`nope == 1`, "undeclared reference to 'nope'"},
		{`client_id + 1`, "found no matching overload"},
		{`client_id`, "not a bool"},
	} {
		t.Run(tc.src, func(t *testing.T) {
			if _, _, err := compileRule(tc.src); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func TestAllowIfAdaptNamesTheLine(t *testing.T) {
	caddyfileText := "{\n\tadmin off\n}\n:8080 {\n\tmcp_token {\n\t\thmac_secret {env.S}\n\t\tauthorization_servers https://idp.example\n\t\tallow_if `claims.groups.exists(g, g == \"ops\"`\n\t}\n\trespond ok\n}\n"
	_, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfileText), map[string]any{"filename": "Caddyfile"})
	if err == nil || !strings.Contains(err.Error(), "Caddyfile:8") || !strings.Contains(err.Error(), "Syntax error") {
		t.Fatalf("adapt error %v: want the line (Caddyfile:8) and CEL's message", err)
	}
	good := strings.Replace(caddyfileText, `"ops"`+"`", `"ops")`+"`", 1)
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(good), map[string]any{"filename": "Caddyfile"})
	if err != nil || !strings.Contains(string(cfg), `"allow_if":["claims.groups.exists(g, g == \"ops\")"]`) {
		t.Fatalf("%v %s", err, cfg)
	}
}

func TestProvisionRefusesBadRule(t *testing.T) {
	h := &Handler{module{Config: Config{KeyConfig: KeyConfig{HMACSecret: strings.Repeat("s", 32)}, AllowIf: []string{`true`, `sub ==`}}}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	err := h.Provision(ctx)
	if err == nil || !strings.Contains(err.Error(), "allow_if 2") {
		t.Fatalf("provision: %v", err)
	}
}

func TestAllowIfFiltersLists(t *testing.T) {
	for _, tc := range []struct {
		name   string
		groups []any
		rule   string
		want   string
	}{
		{"ops sees deploy", []any{"ops"}, deployRule, "echo deploy admin_reset"},
		{"dev does not", []any{"dev"}, deployRule, "echo admin_reset"},
		{"rule by name only", []any{"dev"}, `mcp.name != "admin_reset"`, "echo deploy"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := policyCore(t, &verifiers.AccessToken{ClientID: "c1", Subject: "bob", Claims: map[string]any{"groups": tc.groups}}, tc.rule)
			w := serve(t, c, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, nil, respond("application/json", 200, toolsResult))
			if got := toolNames(t, w.Body.String()); got != tc.want {
				t.Fatalf("tools %s, want %s", got, tc.want)
			}
		})
	}
}

func TestClaimPlaceholder(t *testing.T) {
	claims := map[string]any{
		"email":                     "a@example.com",
		"groups":                    []any{"ops", "dev"},
		"org":                       map[string]any{"tenant": "t1", "n": 2.0},
		"realm_access":              map[string]any{"roles": []any{"r1", "r2"}},
		"admin":                     true,
		"level":                     3.0,
		"mixed":                     []any{"a", 1.0},
		"evil":                      "x\r\nX-Injected: 1",
		"c1":                        "a\u0085b",
		"https://example.com/roles": []any{"x"},
		"null":                      nil,
	}
	for _, tc := range []struct{ path, want string }{
		{"email", "a@example.com"},
		{"groups", "ops,dev"},
		{"org.tenant", "t1"},
		{"org", `{"n":2,"tenant":"t1"}`},
		{"realm_access.roles", "r1,r2"},
		{"admin", "true"},
		{"level", "3"},
		{"mixed", `["a",1]`},
		{"evil", "x  X-Injected: 1"},
		{"c1", "a b"},
		{"https://example.com/roles", "x"},
		{"absent", ""},
		{"org.absent", ""},
		{"email.x", ""},
		{"null", ""},
	} {
		t.Run(tc.path, func(t *testing.T) {
			if got := claimPlaceholder(claims, tc.path); got != tc.want {
				t.Errorf("%q, want %q", got, tc.want)
			}
		})
	}
}

// TestPlaceholdersOnEveryDecision: {http.auth.result}, the identity (also
// when a later rule refused) and the MCP placeholders, never their
// literal text.
func TestPlaceholdersOnEveryDecision(t *testing.T) {
	tok := &verifiers.AccessToken{ClientID: "c1", Subject: "bob", Claims: map[string]any{"email": "b@x", "groups": []any{"dev"}}}
	const tmpl = "{http.auth.result}|{http.auth.user.client_id}|{http.auth.user.claim.email}|{http.auth.user.claim.nope}|{http.auth.mcp.method}|{http.auth.mcp.name}|{http.auth.mcp.protocol_version}"
	for _, tc := range []struct {
		name, auth, body string
		rules            []string
		want             string
	}{
		{"accepted, body not read", "Bearer abc", toolCall("deploy", `{}`), nil, "accepted|c1|b@x||||"},
		{"accepted, body read", "Bearer abc", toolCall("echo", `{}`), []string{deployRule}, "accepted|c1|b@x||tools/call|echo|2025-11-25"},
		{"refused by a rule", "Bearer abc", toolCall("deploy", `{"env":"x"}`), []string{deployRule}, "policy_denied|c1|b@x||tools/call|deploy|2025-11-25"},
		{"no token", "", toolCall("deploy", `{}`), nil, "missing_token||||||"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := policyCore(t, tok, tc.rules...)
			r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(tc.body))
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			r.Header.Set("Mcp-Protocol-Version", "2025-11-25")
			r.Header.Set("Content-Type", "application/json")
			repl := caddy.NewReplacer()
			r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, repl))
			if err := (&Handler{module{core: c}}).ServeHTTP(httptest.NewRecorder(), r, caddyhttp.HandlerFunc(okNext)); err != nil {
				t.Fatal(err)
			}
			if got := repl.ReplaceKnown(tmpl, ""); got != tc.want {
				t.Errorf("%s, want %s", got, tc.want)
			}
		})
	}
}

// TestAuditOneLinePerDecision: one INFO line on the audit logger per
// decision of each class, never the token.
func TestAuditOneLinePerDecision(t *testing.T) {
	const token = "abc.secret-token-value"
	ok := &verifiers.AccessToken{ClientID: "c1", Subject: "bob", Issuer: "https://idp", KeyID: "k1", Claims: map[string]any{"groups": []any{"dev"}}}
	cases := []struct {
		name     string
		verifier verifiers.Verifier
		body     string
		limited  bool
		maxBody  int64
		status   int
		reason   string
	}{
		{"accepted", fakeVerifier{tok: ok}, toolCall("echo", `{"text":"a-secret-argument"}`), false, 0, 200, "accepted"},
		{"refused by a tool rule", fakeVerifier{tok: ok}, toolCall("deploy", `{"env":"a-secret-argument"}`), false, 0, 403, "policy_denied"},
		{"invalid token", fakeVerifier{err: fmt.Errorf("%w: x", verifiers.ErrBadSignature)}, toolCall("echo", `{}`), false, 0, 401, "bad_signature"},
		{"rate limited", fakeVerifier{err: fmt.Errorf("%w: x", verifiers.ErrBadSignature)}, toolCall("echo", `{}`), true, 0, 429, "rate_limited"},
		{"unavailable", fakeVerifier{err: fmt.Errorf("%w: down", verifiers.ErrUnavailable)}, toolCall("echo", `{}`), false, 0, 503, "unavailable"},
		{"body too large", fakeVerifier{tok: ok}, toolCall("echo", `{"text":"`+strings.Repeat("x", 100)+`"}`), false, 64, 413, "body_too_large"},
		{"bad body", fakeVerifier{tok: ok}, `{"method":`, false, 0, 400, "bad_body"},
		{"not JSON", fakeVerifier{tok: ok}, toolCall("echo", `{}`), false, 0, 415, "unsupported_media_type"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := policyCore(t, nil, deployRule)
			zc, logs := observer.New(zapcore.DebugLevel)
			c.audit = zap.New(zc).Named("http.handlers.mcp_token").Named("audit")
			c.verifier = tc.verifier
			if tc.maxBody > 0 {
				c.maxBody = tc.maxBody
			}
			if tc.limited {
				c.limiter = limiter.New(1, time.Minute, 10)
				c.limiter.Fail("192.0.2.1")
			}
			r := httptest.NewRequest(http.MethodPost, "/mcp", strings.NewReader(tc.body))
			r.Header.Set("Authorization", "Bearer "+token)
			if tc.name != "not JSON" { // no Content-Type: 415
				r.Header.Set("Content-Type", "application/json")
			}
			r = r.WithContext(context.WithValue(r.Context(), caddy.ReplacerCtxKey, caddy.NewReplacer()))
			w := httptest.NewRecorder()
			if err := (&Handler{module{core: c}}).ServeHTTP(w, r, caddyhttp.HandlerFunc(okNext)); err != nil {
				t.Fatal(err)
			}
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d", w.Code, tc.status)
			}
			lines := logs.All()
			if len(lines) != 1 {
				t.Fatalf("%d audit lines, want 1: %v", len(lines), lines)
			}
			e := lines[0]
			m := e.ContextMap()
			if e.Level != zapcore.InfoLevel || e.LoggerName != "http.handlers.mcp_token.audit" {
				t.Errorf("level %v logger %q", e.Level, e.LoggerName)
			}
			if m["reason"] != tc.reason || m["status"] != int64(tc.status) || m["token_hash"] != TokenHash(token) {
				t.Errorf("fields %v", m)
			}
			text := fmt.Sprint(m)
			if strings.Contains(text, "secret-token") || strings.Contains(text, "a-secret-argument") {
				t.Errorf("token or argument value in the audit line: %s", text)
			}
			if tc.status == 200 || tc.status == 403 {
				if m["client_id"] != "c1" || m["sub"] != "bob" || m["kid"] != "k1" || m["mcp_method"] != "tools/call" {
					t.Errorf("identity or MCP fields missing: %v", m)
				}
			}
		})
	}
}

func TestAuditOffWritesNothing(t *testing.T) {
	c, _ := policyCore(t, &verifiers.AccessToken{ClientID: "c1"})
	c.audit = nil
	zc, logs := observer.New(zapcore.DebugLevel)
	c.logger = zap.New(zc)
	serve(t, c, toolCall("echo", `{}`), nil, okNext)
	if logs.Len() != 0 {
		t.Fatalf("lines without audit: %v", logs.All())
	}
}

func TestPolicyErrorIsPolicyDenied(t *testing.T) {
	err := &policyError{call: "x", cause: errors.New("boom")}
	if !errors.Is(err, verifiers.ErrPolicyDenied) || verifiers.Classify(err).Status != 403 || verifiers.Classify(err).Reason != "policy_denied" {
		t.Fatal(verifiers.Classify(err))
	}
}

// TestREADMELogBlocksAdapt: the README's log blocks (query-string filter,
// log_append of who and why, audit routing) are valid Caddyfile.
func TestREADMELogBlocksAdapt(t *testing.T) {
	const text = "{\n\tadmin off\n\tlog audit {\n\t\toutput stderr\n\t\tinclude http.handlers.mcp_token.audit\n\t}\n\tlog default {\n\t\texclude http.handlers.mcp_token.audit\n\t}\n}\n" +
		":8080 {\n\tlog {\n\t\toutput stderr\n\t\tformat filter {\n\t\t\twrap json\n\t\t\tfields {\n\t\t\t\trequest>uri query {\n\t\t\t\t\tdelete access_token\n\t\t\t\t}\n\t\t\t}\n\t\t}\n\t}\n" +
		"\tlog_append mcp_client {http.auth.user.client_id}\n\tlog_append mcp_reason {http.auth.result}\n" +
		"\tmcp_token /mcp* {\n\t\thmac_secret {env.S}\n\t\tauthorization_servers https://idp.example\n\t\taudit\n\t}\n\trespond ok\n}\n"
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(text), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"audit":true`, `"include":["http.handlers.mcp_token.audit"]`, `"access_token"`, `"mcp_reason"`} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("adapted config lacks %s", want)
		}
	}
}

// TestProviderRefusesAllowIf: the authentication provider cannot apply
// rules, so a config with rules fails to load rather than ignore them.
func TestProviderRefusesAllowIf(t *testing.T) {
	a := &Authenticator{module: module{Config: Config{KeyConfig: KeyConfig{HMACSecret: strings.Repeat("s", 32)}, AllowIf: []string{`true`}}}}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	if err := a.Provision(ctx); err == nil || !strings.Contains(err.Error(), "allow_if needs the mcp_token handler") {
		t.Fatalf("provision: %v", err)
	}
}
