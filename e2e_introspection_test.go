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
			authorization_servers %[2]s
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
		respond "kid={http.auth.user.kid} aud={http.auth.user.aud} client={http.auth.user.client_id}" 200
	}
}
`, op.IntrospectionURL(), op.Issuer, testpeers.GatewayID, testpeers.GatewayPostID, testpeers.GatewaySecret,
		backend, cacheTTL), "caddyfile")

	opaque := op.Token(t, testpeers.OpaqueResource, "mcp:read")
	if verifiers.LooksLikeJWS(opaque) {
		t.Fatalf("the provider issued a JWT for the opaque resource: %s", opaque[:20])
	}

	// An opaque client-credentials token reaches the MCP backend.
	for _, path := range []string{"/nocache/mcp", "/cached/mcp"} {
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
	cachedAt := time.Now()

	// Revocation at the provider: refused at once without the cache...
	op.Revoke(t, opaque)
	resp, _ := post(t, e2eBase+"/nocache/mcp", opaque, toolsList)
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error_description="Token is not active"`) {
		t.Fatalf("revoked token without cache: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	// ...and with the cache, served until the TTL, then refused.
	resp, _ = post(t, e2eBase+"/cached/mcp", opaque, toolsList)
	if time.Since(cachedAt) < cacheTTL-time.Second && resp.StatusCode != 200 {
		t.Fatalf("revoked token within the cache TTL: %d (the cache should still answer)", resp.StatusCode)
	}
	if got := waitStatus(t, e2eBase+"/cached/mcp", opaque, 401); got != 401 {
		t.Fatalf("revoked token after the cache TTL: %d", got)
	}
	if waited := time.Since(cachedAt); waited < cacheTTL-500*time.Millisecond {
		t.Fatalf("the cached result was dropped after %s, before its %s TTL", waited, cacheTTL)
	}

	// A token without the required scope is 403, as for JWTs.
	noScope := op.Token(t, testpeers.OpaqueResource, "mcp:write")
	resp, _ = post(t, e2eBase+"/nocache/mcp", noScope, toolsList)
	if resp.StatusCode != 403 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `scope="mcp:read"`) {
		t.Fatalf("opaque token without mcp:read: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}

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
}
