package mcptoken

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mcptoken/caddy-mcp-token/internal/mcpdemo"
	"github.com/mcptoken/caddy-mcp-token/internal/testpeers"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// TestE2EIntrospectionWithOIDCProvider runs Caddy in front of an MCP
// backend against a real OAuth server (oidc-provider): opaque tokens by
// introspection with and without the cache, revocation, JWT access tokens
// from the same provider through its JWKS, and a mixed configuration.
func TestE2EIntrospectionWithOIDCProvider(t *testing.T) {
	op := testpeers.StartOIDC(t)
	rec := &mcpdemo.Recorder{}
	backend, stop, err := mcpdemo.Serve(rec)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	echoRec, echo := startEcho(t)
	// /cached's entries expire after cacheTTL; /cachedlong's never do
	// during the test, so "served from the cache after revocation" holds
	// however slowly the machine runs.
	const cacheTTL = 4 * time.Second
	startCaddy(t, caddyGlobal+fmt.Sprintf(`
http://localhost:9080 {
	handle /nocache/* {
		mcp_token {
			introspection %[1]s {
				client_id %[3]s
				client_secret %[5]s
				cache_ttl 0
				issuer %[2]s
				audience urn:mcp:opaque
				require_audience
			}
			required_scopes mcp:read
		}
		reverse_proxy %[6]s {
			header_up X-MCP-Client {http.auth.user.client_id}
		}
	}
	handle /cached/* {
		mcp_token {
			introspection %[1]s {
				client_id %[4]s
				client_secret %[5]s
				auth_method post
				cache_ttl %[7]s
			}
		}
		reverse_proxy %[6]s
	}
	handle /cachedlong/* {
		mcp_token {
			introspection %[1]s {
				client_id %[4]s
				client_secret %[5]s
				auth_method post
				cache_ttl 1h
			}
		}
		reverse_proxy %[6]s
	}
	handle /jwt/* {
		mcp_token {
			issuer %[2]s
			audience urn:mcp:jwt
			jwks_uri %[2]s/jwks
			token_type at+jwt
			required_scopes mcp:read
		}
		reverse_proxy %[6]s {
			header_up X-MCP-Client {http.auth.user.client_id}
		}
	}
	handle /mixed/* {
		mcp_token {
			issuer %[2]s
			audience urn:mcp:jwt
			jwks_uri %[2]s/jwks
			introspection %[1]s {
				client_id %[3]s
				client_secret %[5]s
				audience urn:mcp:opaque
			}
		}
		%[8]s
	}
}
`, op.IntrospectionURL(), op.Issuer, testpeers.GatewayID, testpeers.GatewayPostID, testpeers.GatewaySecret,
		backend, cacheTTL, echoProxy(echo, "kid={http.auth.user.kid} aud={http.auth.user.aud} client={http.auth.user.client_id}")), "caddyfile")

	opaque := op.Token(t, testpeers.OpaqueResource, "mcp:read")
	if verifiers.LooksLikeJWS(opaque) {
		t.Fatalf("the provider issued a JWT for the opaque resource: %s", opaque[:20])
	}

	// An opaque client-credentials token reaches the MCP backend. The
	// /cached entry is made after cachedFrom, so it cannot expire before
	// cachedFrom+cacheTTL.
	cachedFrom := time.Now()
	for _, path := range []string{"/nocache/mcp", "/cached/mcp", "/cachedlong/mcp"} {
		resp, body := post(t, e2eBase+path, opaque, toolsList)
		if resp.StatusCode != 200 || !strings.Contains(body, `"echo"`) {
			t.Fatalf("%s with an active opaque token: %d %s", path, resp.StatusCode, body)
		}
		if path == "/nocache/mcp" {
			if got := rec.Last().Get("X-MCP-Client"); got != testpeers.ClientID {
				t.Fatalf("backend saw client %q", got)
			}
		}
	}

	// Revocation at the provider: refused at once without the cache...
	op.Revoke(t, opaque)
	before := rec.Count()
	resp, _ := post(t, e2eBase+"/nocache/mcp", opaque, toolsList)
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error_description="Token is not active"`) {
		t.Fatalf("revoked token without cache: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	reached(t, rec, before, 0, "the revoked token without a cache")
	// ...served from the cache within its TTL (1h: no scheduling delay
	// reaches it)...
	if resp, body := post(t, e2eBase+"/cachedlong/mcp", opaque, toolsList); resp.StatusCode != 200 || !strings.Contains(body, `"echo"`) {
		t.Fatalf("revoked token within the cache TTL: %d (the cache should still answer)", resp.StatusCode)
	}
	// ...and refused once the TTL has passed, never before it.
	if got := waitStatus(t, e2eBase+"/cached/mcp", opaque, 401); got != 401 {
		t.Fatalf("revoked token after the cache TTL: %d", got)
	}
	if waited := time.Since(cachedFrom); waited < cacheTTL {
		t.Fatalf("the cached result was dropped %s after it was made, before its %s TTL", waited, cacheTTL)
	}

	// A token without the required scope is 403, as for JWTs.
	noScope := op.Token(t, testpeers.OpaqueResource, "mcp:write")
	before = rec.Count()
	resp, _ = post(t, e2eBase+"/nocache/mcp", noScope, toolsList)
	if resp.StatusCode != 403 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `scope="mcp:read"`) {
		t.Fatalf("opaque token without mcp:read: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	reached(t, rec, before, 0, "the opaque token without the scope")

	// A JWT access token from the same provider, verified through its JWKS.
	jwtTok := op.Token(t, testpeers.JWTResource, "mcp:read", "mcp:write")
	if !verifiers.LooksLikeJWS(jwtTok) {
		t.Fatal("the provider did not issue a JWT for the JWT resource")
	}
	if got := waitStatus(t, e2eBase+"/jwt/mcp", jwtTok, 200); got != 200 {
		t.Fatalf("JWT access token through the JWKS: %d", got)
	}
	if got := rec.Last().Get("X-MCP-Client"); got != testpeers.ClientID {
		t.Fatalf("JWT client at the backend: %q", got)
	}

	// Mixed: each token goes to the right verifier.
	fresh := op.Token(t, testpeers.OpaqueResource, "mcp:read")
	_, body := post(t, e2eBase+"/mixed/x", jwtTok, toolsList)
	if want := "kid=" + testpeers.SigningKID + " aud=urn:mcp:jwt client=" + testpeers.ClientID; body != want {
		t.Fatalf("mixed, JWT: %q, want %q", body, want)
	}
	_, body = post(t, e2eBase+"/mixed/x", fresh, toolsList)
	if want := "kid= aud=urn:mcp:opaque client=" + testpeers.ClientID; body != want {
		t.Fatalf("mixed, opaque: %q, want %q", body, want)
	}
	// Mixed, refused: the revoked opaque token never reaches the backend.
	before = echoRec.Count()
	if resp, _ := post(t, e2eBase+"/mixed/x", opaque, toolsList); resp.StatusCode != 401 {
		t.Fatalf("mixed, revoked opaque token: %d", resp.StatusCode)
	}
	reached(t, echoRec, before, 0, "the revoked token on the mixed route")
}

// TestE2ETypeScriptClientCredentialsFlow: the official TypeScript SDK,
// with its ClientCredentialsProvider and nothing but a client id and
// secret, completes OAuth against the real provider through Caddy: the
// 401's resource_metadata, the protected resource metadata, the
// authorization server's metadata, the token endpoint, then tools/list and
// a tool call with the token, which the backend runs for that client.
func TestE2ETypeScriptClientCredentialsFlow(t *testing.T) {
	resource := e2eBase + "/mcp"
	op := testpeers.StartOIDCWith(t, testpeers.OIDCOptions{JWTResources: []string{resource}})
	rec, backend := startBackend(t)
	startCaddy(t, caddyGlobal+fmt.Sprintf(`
http://localhost:9080 {
	mcp_token /mcp* {
		issuer %[1]s
		jwks_uri %[1]s/jwks
		audience %[2]s
		token_type at+jwt
		required_scopes mcp:read
	}
	handle /mcp* {
		reverse_proxy %[3]s {
			header_up X-MCP-Client {http.auth.user.client_id}
		}
	}
}
`, op.Issuer, resource, backend), "caddyfile")
	remember(testpeers.ClientSecret)

	res := testpeers.RunTSClientCredentials(t, resource, op.Issuer, "mcp:read")
	t.Logf("SDK requests: %v (reconnected: %v)", res.Requests, res.Reconnected)
	if res.Error != "" || !strings.Contains(strings.Join(res.Tools, ","), "echo") || !strings.Contains(string(res.Echo), "from typescript") {
		t.Fatalf("TypeScript SDK client-credentials flow: %+v", res)
	}
	// The flow, in order: each step found where the previous one pointed.
	steps := []struct{ what, prefix string }{
		{"the MCP request refused with 401", "POST " + resource + " 401"},
		{"the challenge's resource_metadata", "GET " + e2eBase + "/.well-known/oauth-protected-resource/mcp 200"},
		{"the authorization server's metadata", "GET " + op.Issuer + "/.well-known/"},
		{"the token request", "POST " + op.TokenURL() + " 200"},
		{"the MCP request with the token", "POST " + resource + " 200"},
	}
	i := 0
	for _, req := range res.Requests {
		if i < len(steps) && strings.HasPrefix(req, steps[i].prefix) && (i != 2 || strings.HasSuffix(req, " 200")) {
			i++
		}
	}
	if i != len(steps) {
		t.Fatalf("the flow stopped before %s (%q); requests: %v", steps[i].what, steps[i].prefix, res.Requests)
	}
	// The backend ran the tool for the client the provider issued the token to.
	runs := rec.ToolRuns()
	if len(runs) != 1 || runs[0].Name != "echo" || runs[0].Client != testpeers.ClientID {
		t.Fatalf("backend tool runs: %+v, want one echo by %s", runs, testpeers.ClientID)
	}

	// The same SDK flow with a scope the gateway does not accept: the token
	// is issued, the gateway refuses it, and no tool runs.
	res = testpeers.RunTSClientCredentials(t, resource, op.Issuer, "mcp:write")
	t.Logf("without mcp:read: %s; requests %v", res.Error, res.Requests)
	if !strings.Contains(res.Error, "403") {
		t.Fatalf("a token without mcp:read: want the SDK to end on the gateway's 403, got %+v", res)
	}
	if n := rec.Ran(""); n != 1 {
		t.Fatalf("a refused client ran tools: %+v", rec.ToolRuns())
	}
}
