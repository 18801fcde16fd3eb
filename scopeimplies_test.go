package mcptoken

import (
	"reflect"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"go.uber.org/zap"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

func TestScopeImpliesCaddyfile(t *testing.T) {
	cases := []struct {
		name  string
		input string
		want  map[string][]string
		err   string
	}{
		{"one line, several narrow", "mcp_token {\n hmac_secret {env.S}\n scope_implies mcp:admin mcp:write mcp:read\n}",
			map[string][]string{"mcp:admin": {"mcp:write", "mcp:read"}}, ""},
		{"lines add up", "mcp_token {\n hmac_secret {env.S}\n scope_implies mcp:admin mcp:write\n scope_implies mcp:write mcp:read\n scope_implies mcp:admin mcp:write files:read\n}",
			map[string][]string{"mcp:admin": {"mcp:write", "files:read"}, "mcp:write": {"mcp:read"}}, ""},
		{"no narrow scope", "mcp_token {\n hmac_secret {env.S}\n scope_implies mcp:admin\n}", nil,
			"scope_implies: want <broad> <narrow> [<narrow>...] (for example scope_implies mcp:admin mcp:write mcp:read), at Testfile:3"},
		{"self", "mcp_token {\n hmac_secret {env.S}\n scope_implies a b a\n}", nil,
			"scope_implies: this line closes a cycle (a → a); a broader scope implies narrower ones, never the reverse, at Testfile:3"},
		{"transitive cycle names the closing line", "mcp_token {\n hmac_secret {env.S}\n scope_implies mcp:admin mcp:write\n scope_implies mcp:write mcp:read\n scope_implies mcp:read mcp:admin\n}", nil,
			"scope_implies: this line closes a cycle (mcp:read → mcp:admin → mcp:write → mcp:read); a broader scope implies narrower ones, never the reverse, at Testfile:5"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c Config
			err := c.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("want error containing %q, got %v", tc.err, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.ScopeImplies, tc.want) {
				t.Fatalf("scope_implies %v, want %v", c.ScopeImplies, tc.want)
			}
		})
	}
}

// TestScopeImpliesJSONCycle: a cycle written in JSON fails provisioning
// with the scopes that form it.
func TestScopeImpliesJSONCycle(t *testing.T) {
	cfg := Config{KeyConfig: KeyConfig{HMACSecret: strings.Repeat("s", 32)},
		ScopeImplies: map[string][]string{"a": {"b"}, "b": {"c"}, "c": {"a"}}}
	_, err := cfg.buildChain(nil, guards{}, sources{})
	if err == nil || !strings.Contains(err.Error(), "scope_implies: scope implications form a cycle: c → a → b → c") {
		t.Fatalf("got %v", err)
	}
}

// TestScopeChallengeNamesAll: a token refused for a global scope, on a
// request that also needs a tool scope, gets one challenge naming both.
func TestScopeChallengeNamesAll(t *testing.T) {
	tok := &verifiers.AccessToken{ClientID: "c", Scopes: []string{"other"}}
	cases := []struct {
		name, body, want string
	}{
		{"tool scope added", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deploy"}}`, `scope="mcp:read mcp:write"`},
		{"nothing to add", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`, `scope="mcp:read"`},
		{"unreadable body keeps the challenge", `garbage`, `scope="mcp:read"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := &core{
				verifier: fakeVerifier{tok: tok, err: &verifiers.ScopeError{Required: []string{"mcp:read"}, Missing: []string{"mcp:read"}}},
				logger:   zap.NewNop(), maxBody: DefaultMaxBody, requiredScopes: []string{"mcp:read"},
				rules: scopeRules{tool: map[string][]string{"deploy": {"mcp:write"}}},
			}
			w := serve(t, c, tc.body, nil, respond("application/json", 200, "{}"))
			if w.Code != 403 || !strings.Contains(w.Header().Get("WWW-Authenticate"), tc.want) {
				t.Fatalf("%d %q, want %s", w.Code, w.Header().Get("WWW-Authenticate"), tc.want)
			}
		})
	}
}
