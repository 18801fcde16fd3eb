package mcptoken

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// clientFrom is an HTTP client whose connections leave from the loopback
// address local (127.0.0.2 stands for a proxy in trusted_proxies).
func clientFrom(local string) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, DialContext: d.DialContext}}
}

// do sends method to url with the headers (and "Host" as the Host) and
// returns the response with its body.
func do(t *testing.T, client *http.Client, method, url, body string, header map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// dpopTokenWith is dpopToken with more claims.
func dpopTokenWith(t *testing.T, jkt string, extra jwt.MapClaims) string {
	t.Helper()
	claims := jwt.MapClaims{"sub": "s1", "client_id": "c1", "exp": time.Now().Add(time.Hour).Unix(), "cnf": map[string]any{"jkt": jkt}}
	for k, v := range extra {
		claims[k] = v
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(dpopSecret)
	if err != nil {
		t.Fatal(err)
	}
	remember(s)
	return s
}

// TestE2EDPoPBehindProxy: behind a TLS-terminating proxy (Caddy's
// trusted_proxies static 127.0.0.2/32), a proof for the public URL
// https://mcp.example.com/mcp is accepted from the proxy's address and
// refused from any other with the same forwarded headers (never reaching
// the backend); challenges and metadata name the public URL too. With
// resource configured it passes from anywhere. A request URI that does
// not parse is a bad proof (401), not an outage.
func TestE2EDPoPBehindProxy(t *testing.T) {
	rec, backend := startBackend(t)
	t.Setenv("MCP_E2E_PROXY_SECRET", string(dpopSecret))
	global := strings.TrimSuffix(strings.TrimSpace(caddyGlobal), "}") + "\tservers {\n\t\ttrusted_proxies static 127.0.0.2/32\n\t}\n}\n"
	site := func(extra string) string {
		return global + fmt.Sprintf(`
http://localhost:9080 {
	mcp_token /mcp* {
		hmac_secret {env.MCP_E2E_PROXY_SECRET}
		authorization_servers https://as.example.com
		dpop required
		%s
	}
	handle /mcp* {
		reverse_proxy %s
	}
}
`, extra, backend)
	}
	startCaddy(t, site(""), "caddyfile")
	const public = "https://mcp.example.com/mcp"
	proxy, direct := clientFrom("127.0.0.2"), clientFrom("127.0.0.1")
	client := newDPoPClient(t)
	token := dpopTokenWith(t, client.jkt, nil)
	forwarded := func(proof string) map[string]string {
		return map[string]string{"Authorization": "DPoP " + token, "DPoP": proof,
			"X-Forwarded-Proto": "https", "X-Forwarded-Host": "mcp.example.com"}
	}
	before := rec.Count()
	if resp, body := do(t, proxy, "POST", e2eBase+"/mcp", toolsList, forwarded(client.proof(t, "POST", public, token))); resp.StatusCode != 200 {
		t.Fatalf("from the trusted proxy: %d %s", resp.StatusCode, body)
	}
	reached(t, rec, before, 1, "from the trusted proxy")
	before = rec.Count()
	resp, body := do(t, direct, "POST", e2eBase+"/mcp", toolsList, forwarded(client.proof(t, "POST", public, token)))
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_dpop_proof"`) {
		t.Fatalf("from an untrusted address with the same headers: %d %q %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
	}
	reached(t, rec, before, 0, "from an untrusted address")
	// What the gateway publishes follows the same rules as what it accepts.
	resp, _ = do(t, proxy, "POST", e2eBase+"/mcp", toolsList, map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "mcp.example.com"})
	if www := resp.Header.Get("WWW-Authenticate"); resp.StatusCode != 401 || !strings.Contains(www, `resource_metadata="https://mcp.example.com`+WellKnownPath+`/mcp"`) {
		t.Fatalf("challenge through the proxy: %d %q", resp.StatusCode, www)
	}
	resp, body = do(t, proxy, "GET", e2eBase+WellKnownPath+"/mcp", "", map[string]string{"X-Forwarded-Proto": "https", "X-Forwarded-Host": "mcp.example.com"})
	if resp.StatusCode != 200 || !strings.Contains(body, `"resource":"`+public+`"`) || !strings.Contains(strings.Join(resp.Header.Values("Vary"), ","), "X-Forwarded-Host") {
		t.Fatalf("metadata through the proxy: %d %v %s", resp.StatusCode, resp.Header.Values("Vary"), body)
	}
	// Issue 14 item 3: a Host Go accepts but no URI parser does.
	before = rec.Count()
	resp, body = do(t, direct, "POST", e2eBase+"/mcp", toolsList, map[string]string{"Host": "localhost:9080x",
		"Authorization": "DPoP " + token, "DPoP": client.proof(t, "POST", "http://localhost:9080x/mcp", token)})
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_dpop_proof"`) {
		t.Fatalf("unparsable request URI: %d %q %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
	}
	reached(t, rec, before, 0, "unparsable request URI")

	// With resource set, the public URL is known: no proxy needed.
	startCaddy(t, site("resource "+public), "caddyfile")
	bound := dpopTokenWith(t, client.jkt, jwt.MapClaims{"aud": public})
	before = rec.Count()
	resp, body = do(t, direct, "POST", e2eBase+"/mcp", toolsList, map[string]string{"Authorization": "DPoP " + bound, "DPoP": client.proof(t, "POST", public, bound)})
	if resp.StatusCode != 200 {
		t.Fatalf("resource set, from anywhere: %d %s", resp.StatusCode, body)
	}
	resp, _ = do(t, direct, "POST", e2eBase+"/mcp", toolsList, map[string]string{"Authorization": "DPoP " + bound, "DPoP": client.proof(t, "POST", e2eBase+"/mcp", bound)})
	if resp.StatusCode != 401 {
		t.Fatalf("resource set, a proof for the connection's URL: %d", resp.StatusCode)
	}
	reached(t, rec, before, 1, "with resource set")
}

// TestE2EDPoPNonceRenewed: with server nonces, a proof whose nonce is past
// half its lifetime is accepted and its 200 (through reverse_proxy)
// carries a fresh DPoP-Nonce (RFC 9449 §8.2), exposed to browsers; a
// proof with a young nonce and a bearer request get none.
func TestE2EDPoPNonceRenewed(t *testing.T) {
	const key = "an e2e renewed nonce key, 32b+!!"
	rec, backend := startBackend(t)
	t.Setenv("MCP_E2E_RENEW_KEY", key)
	t.Setenv("MCP_E2E_RENEW_SECRET", string(dpopSecret))
	startCaddy(t, caddyGlobal+fmt.Sprintf(`
http://localhost:9080 {
	mcp_token /mcp* {
		hmac_secret {env.MCP_E2E_RENEW_SECRET}
		authorization_servers https://as.example.com
		dpop_nonce {env.MCP_E2E_RENEW_KEY}
	}
	handle /mcp* {
		reverse_proxy %s
	}
}
`, backend), "caddyfile")
	remember(key)
	resource := e2eBase + "/mcp"
	client := newDPoPClient(t)
	token := dpopTokenWith(t, client.jkt, nil)
	send := func(proof string, extra map[string]string) *http.Response {
		h := map[string]string{"Authorization": "DPoP " + token, "DPoP": proof}
		for k, v := range extra {
			h[k] = v
		}
		resp, body := postWith(t, resource, "", toolsList, h)
		if resp.StatusCode != 200 && len(extra) == 0 {
			t.Fatalf("%d %q %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), body)
		}
		return resp
	}
	before := rec.Count()
	// The server's own nonce, young: accepted, none renewed.
	first, _ := postWith(t, resource, "", toolsList, map[string]string{"Authorization": "DPoP " + token, "DPoP": client.proof(t, "POST", resource, token)})
	nonce := first.Header.Get("DPoP-Nonce")
	if first.StatusCode != 401 || nonce == "" {
		t.Fatalf("no nonce: %d, DPoP-Nonce %q", first.StatusCode, nonce)
	}
	if resp := send(client.proof(t, "POST", resource, token, nonce), nil); resp.Header.Get("DPoP-Nonce") != "" {
		t.Fatalf("a young nonce renewed: %q", resp.Header.Get("DPoP-Nonce"))
	}
	// A nonce issued three minutes ago (lifetime 5m): still valid, past
	// half its life. Signed with the shared key, as a peer would have.
	past, err := verifiers.NewHMACNonces([]byte(key), 0, func() time.Time { return time.Now().Add(-3 * time.Minute) })
	if err != nil {
		t.Fatal(err)
	}
	old := past.Nonce()
	resp := send(client.proof(t, "POST", resource, token, old), map[string]string{"Origin": "https://app.example"})
	renewed := resp.Header.Get("DPoP-Nonce")
	current, _ := verifiers.NewHMACNonces([]byte(key), 0, nil)
	if resp.StatusCode != 200 || renewed == "" || renewed == old || !current.Valid(renewed) || current.Renew(renewed) {
		t.Fatalf("old nonce: %d, DPoP-Nonce %q", resp.StatusCode, renewed)
	}
	if expose := strings.Join(resp.Header.Values("Access-Control-Expose-Headers"), ","); !strings.Contains(expose, "DPoP-Nonce") {
		t.Fatalf("DPoP-Nonce not exposed to browsers: %q", expose)
	}
	if resp := send(client.proof(t, "POST", resource, token, renewed), nil); resp.Header.Get("DPoP-Nonce") != "" {
		t.Fatalf("the renewed nonce renewed again: %q", resp.Header.Get("DPoP-Nonce"))
	}
	plain := dpopToken(t, "")
	remember(plain)
	if resp, body := post(t, resource, plain, toolsList); resp.StatusCode != 200 || resp.Header.Get("DPoP-Nonce") != "" {
		t.Fatalf("bearer: %d, DPoP-Nonce %q %s", resp.StatusCode, resp.Header.Get("DPoP-Nonce"), body)
	}
	reached(t, rec, before, 4, "accepted requests")
}
