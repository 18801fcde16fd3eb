package mcptoken

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mcptoken/caddy-mcp-token/devtools"
)

// scrape reads Caddy's /metrics (admin endpoint) and returns the value of
// each sample of this module, keyed by "name{labels}".
func scrape(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://localhost:2999/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out := map[string]float64{}
	line := regexp.MustCompile(`^(caddy_mcp_token_\S+?)(\{[^}]*\})? (\S+)$`)
	for _, l := range strings.Split(string(body), "\n") {
		if m := line.FindStringSubmatch(l); m != nil {
			v, _ := strconv.ParseFloat(m[3], 64)
			out[m[1]+m[2]] = v
		}
	}
	return out
}

func TestE2EMetrics(t *testing.T) {
	key := devtools.MustGenerateKey("RS256")
	srv := devtools.NewJWKSServer(key)
	defer srv.Close()
	rec, echo := startEcho(t)
	startCaddy(t, caddyGlobal+fmt.Sprintf(`
http://localhost:9080 {
	mcp_token /mcp* {
		jwks_uri %s
		audience metrics-api
		required_scopes mcp:read
		static_token dev-metrics-token dev mcp:read
		rate_limit 3 1m
	}
	handle /mcp* {
		%s
	}
}
`, srv.JWKSURL(), echoProxy(echo, "ok")), "caddyfile")
	tok := func(mod func(*devtools.TokenOptions)) string {
		o := devtools.TokenOptions{Audience: []string{"metrics-api"}, Scopes: []string{"mcp:read"}}
		if mod != nil {
			mod(&o)
		}
		return key.MustToken(o)
	}
	good := tok(nil)
	if got := waitStatus(t, e2eBase+"/mcp", good, 200); got != 200 { // JWKS loads in the background
		t.Fatalf("warm-up: %d", got)
	}
	base := scrape(t)
	before := rec.Count()

	send := func(token string, want int) {
		if resp, _ := post(t, e2eBase+"/mcp", token, toolsList); resp.StatusCode != want {
			t.Fatalf("status %d, want %d", resp.StatusCode, want)
		}
	}
	for i := 0; i < 4; i++ {
		send(good, 200)
	}
	send("dev-metrics-token", 200)
	send("", 401)
	send(tok(func(o *devtools.TokenOptions) { o.Scopes = nil }), 403)
	send(tok(func(o *devtools.TokenOptions) { o.Audience = []string{"other"} }), 401)
	send(tok(func(o *devtools.TokenOptions) { o.ExpiresIn = -time.Hour }), 401)
	send(devtools.MustGenerateKey("RS256").MustToken(devtools.TokenOptions{Audience: []string{"metrics-api"}}), 401) // unknown kid
	send(good, 200)                                                                                                  // 3 failures, but a cached token needs no verification
	send(tok(func(o *devtools.TokenOptions) { o.Subject = "fresh" }), 429)                                           // 3 failures: a token to verify is limited

	after := scrape(t)
	reached(t, rec, before, 6, "5 JWT and 1 static accepted, 6 refused")
	want := map[string]float64{
		`caddy_mcp_token_requests_total{reason="accepted",verifier="jwt"}`:           5,
		`caddy_mcp_token_token_cache_hits_total`:                                     5,
		`caddy_mcp_token_requests_total{reason="accepted",verifier="static"}`:        1,
		`caddy_mcp_token_requests_total{reason="missing_token",verifier="none"}`:     1,
		`caddy_mcp_token_requests_total{reason="insufficient_scope",verifier="jwt"}`: 1,
		`caddy_mcp_token_requests_total{reason="bad_audience",verifier="jwt"}`:       1,
		`caddy_mcp_token_requests_total{reason="expired",verifier="jwt"}`:            1,
		`caddy_mcp_token_requests_total{reason="unknown_key",verifier="jwt"}`:        1,
		`caddy_mcp_token_requests_total{reason="rate_limited",verifier="none"}`:      1,
	}
	for k, v := range want {
		if got := after[k] - base[k]; got != v {
			t.Errorf("%s grew by %v, want %v", k, got, v)
		}
	}
	// Verifications timed: the four refused JWTs; the cached good token's
	// requests verified nothing, the limited one never got that far.
	if after[`caddy_mcp_token_verification_duration_seconds_count{verifier="jwt"}`]-base[`caddy_mcp_token_verification_duration_seconds_count{verifier="jwt"}`] != 4 {
		t.Errorf("latency histogram count for jwt: %v", after)
	}
	// The unknown kid made one refetch; all JWKS refreshes succeeded.
	if after[`caddy_mcp_token_jwks_refreshes_total{result="success"}`] < 2 || after[`caddy_mcp_token_jwks_refreshes_total{result="failure"}`] != base[`caddy_mcp_token_jwks_refreshes_total{result="failure"}`] {
		t.Errorf("jwks refreshes: %v", after)
	}
	if _, ok := after[`caddy_mcp_token_introspection_calls_total{result="success"}`]; !ok {
		t.Error("introspection metrics are missing")
	}
}
