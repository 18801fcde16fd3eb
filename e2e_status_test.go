package mcptoken

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mcptoken/caddy-mcp-token/devtools"
	"github.com/mcptoken/caddy-mcp-token/internal/limiter"
	"github.com/mcptoken/caddy-mcp-token/introspection"
	"github.com/mcptoken/caddy-mcp-token/jwks"
)

// getStatus reads the admin API's status route.
func getStatus(t *testing.T, method string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://localhost:2999"+StatusPath, nil)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestE2EStatusRoute: GET /mcp_token/status on the real admin API lists
// the JWKS cache (kids, last success), the jwks_file, the introspection
// endpoint, the verified-token cache with its hits and the limiter with
// the address it tracks — and never a token or a secret.
func TestE2EStatusRoute(t *testing.T) {
	key := devtools.MustGenerateKey("RS256")
	jwksSrv := devtools.NewJWKSServer(key)
	defer jwksSrv.Close()
	fileKey := mustKey(t, "HS256", "file-kid")
	keyFile := writeJWKS(t, t.TempDir(), "jwks.json", fileKey)
	const introSecret = "status-introspection-secret"
	const opaque = "opaque-status-token-0123456789"
	remember(introSecret, opaque)
	intro := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"active":true,"client_id":"intro-client","exp":%d}`, time.Now().Add(time.Hour).Unix())
	}))
	defer intro.Close()
	_, echo := startEcho(t)
	startCaddyFresh(t, caddyGlobal+fmt.Sprintf(`
http://localhost:9080 {
	handle /jwks/* {
		mcp_token {
			jwks_uri %[1]s
			audience mcp-status
			authorization_servers https://as.example
			rate_limit 5 1m
		}
		%[5]s
	}
	handle /file/* {
		mcp_token {
			jwks_file %[2]s
			audience mcp-status
			authorization_servers https://as.example
		}
		%[5]s
	}
	handle /intro/* {
		mcp_token {
			introspection %[3]s {
				client_id status-rs
				client_secret %[4]s
			}
			authorization_servers https://as.example
		}
		%[5]s
	}
	respond 404
}
`, jwksSrv.JWKSURL(), keyFile, intro.URL, introSecret, echoProxy(echo, "ok")), "caddyfile")

	tok := key.MustToken(devtools.TokenOptions{Audience: []string{"mcp-status"}})
	fileTok := fileKey.MustToken(devtools.TokenOptions{Audience: []string{"mcp-status"}})
	remember(tok, fileTok)
	if got := waitStatus(t, e2eBase+"/jwks/x", tok, 200); got != 200 {
		t.Fatalf("jwks route: %d", got)
	}
	for _, c := range []struct{ path, token string }{{"/jwks/x", tok}, {"/file/x", fileTok}, {"/file/x", fileTok}, {"/intro/x", opaque}} {
		if resp, body := post(t, e2eBase+c.path, c.token, toolsList); resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", c.path, resp.StatusCode, body)
		}
	}
	if resp, _ := post(t, e2eBase+"/jwks/x", "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln", toolsList); resp.StatusCode != 401 {
		t.Fatalf("a bad token: %d", resp.StatusCode)
	}

	code, body := getStatus(t, http.MethodGet)
	if code != 200 {
		t.Fatalf("GET %s: %d %s", StatusPath, code, body)
	}
	for _, secret := range []string{introSecret, opaque, tok, fileTok, string(fileKey.Private.([]byte))} {
		if strings.Contains(body, secret) {
			t.Fatalf("the status view shows a token or secret:\n%s", body)
		}
	}
	t.Logf("GET %s:\n%s", StatusPath, body)
	var st Status
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("%v\n%s", err, body)
	}
	i := slices.IndexFunc(st.JWKS, func(s jwks.Status) bool { return s.Source == jwksSrv.JWKSURL() })
	if i < 0 || !st.JWKS[i].Ready || !slices.Contains(st.JWKS[i].Kids, key.Kid) || st.JWKS[i].LastSuccess.IsZero() || st.JWKS[i].FailureStreak != 0 {
		t.Fatalf("jwks status lacks the source %s with kid %s and a last success:\n%s", jwksSrv.JWKSURL(), key.Kid, body)
	}
	j := slices.IndexFunc(st.JWKSFiles, func(f KeyFileStatus) bool { return f.Path == keyFile })
	if j < 0 || !st.JWKSFiles[j].HMAC || !slices.Equal(st.JWKSFiles[j].Kids, []string{"file-kid"}) {
		t.Fatalf("jwks_files lacks %s:\n%s", keyFile, body)
	}
	k := slices.IndexFunc(st.Introspection, func(s introspection.Status) bool { return s.URL == intro.URL })
	if k < 0 || st.Introspection[k].Stats.Calls < 1 || st.Introspection[k].LastSuccess.IsZero() {
		t.Fatalf("introspection status lacks %s with a call:\n%s", intro.URL, body)
	}
	if !slices.ContainsFunc(st.TokenCaches, func(c TokenCacheStatus) bool { return c.Hits >= 1 && c.Entries >= 1 }) {
		t.Fatalf("no token cache with the file token's hit:\n%s", body)
	}
	if !slices.ContainsFunc(st.RateLimiters, func(l limiter.Status) bool { return l.Tracked >= 1 && l.MaxAttempts == 5 }) {
		t.Fatalf("no limiter tracking the failed attempt:\n%s", body)
	}
	if code, _ := getStatus(t, http.MethodPost); code != http.StatusMethodNotAllowed {
		t.Fatalf("POST %s: %d, want 405", StatusPath, code)
	}
}
