package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/mcptoken/caddy-mcp-token/devtools"
	"github.com/mcptoken/caddy-mcp-token/internal/mcpdemo"
)

// Demo identity: the static development token and the JWT's claims.
const (
	demoStaticToken = "dev-token-123"
	demoIssuer      = "https://demo.mcp-token.local"
	demoAudience    = "mcp-demo"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "mcp-demo",
		Usage: "[--listen <addr>]",
		Short: "Runs a demo MCP server behind mcp_token (development only)",
		Long: `
Starts a small MCP server (official Go SDK) on a loopback port and Caddy in
front of it with mcp_token, using a freshly generated RSA key pair and a
static development token. Prints the tokens and a curl command to try.`,
		CobraFunc: func(cmd *cobra.Command) {
			cmd.Flags().String("listen", "localhost:8080", "address Caddy listens on")
			cmd.RunE = caddycmd.WrapCommandFuncForCobra(runDemo)
		},
	})
}

// demoCaddyfile returns the demo's Caddyfile. It is also what a user would
// write in front of their own MCP server.
func demoCaddyfile(listen, publicKeyPEM, backend string) string {
	return fmt.Sprintf(`{
	admin off
	auto_https off
}

http://%s {
	bind %s
	mcp_token /mcp* {
		issuer %s
		audience %s
		public_key <<PEM_END
%sPEM_END
		required_scopes mcp:read
		tool_scopes deploy mcp:write
		resource_name "caddy-mcp-token demo"
		static_token %s dev-user mcp:read mcp:write
	}
	handle /mcp* {
		reverse_proxy %s {
			header_up X-MCP-Client {http.auth.user.client_id}
			header_up X-MCP-Scopes {http.auth.user.scopes}
		}
	}
	handle {
		respond "caddy-mcp-token demo: the MCP endpoint is /mcp" 200
	}
}
`, listen, bindHost(listen), demoIssuer, demoAudience, publicKeyPEM, demoStaticToken, backend)
}

// bindHost is the host part of listen, so the demo listens only where
// asked (loopback by default); "" or ":8080" means every interface.
func bindHost(listen string) string {
	host, _, err := net.SplitHostPort(listen)
	if err != nil || host == "" {
		return "0.0.0.0"
	}
	return host
}

func runDemo(fl caddycmd.Flags) (int, error) {
	listen := fl.String("listen")
	kp, err := devtools.GenerateKey("RS256", 2048, "demo-key")
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	pub, err := kp.PublicPEM()
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	jwt, err := kp.Token(devtools.TokenOptions{
		Subject: "demo-user", Issuer: demoIssuer, Audience: []string{demoAudience},
		Scopes: []string{"mcp:read", "mcp:write"}, ExpiresIn: 24 * time.Hour,
		Claims: map[string]any{"client_id": "demo-client"},
	})
	if err != nil {
		return caddy.ExitCodeFailedStartup, err
	}
	backend, stop, err := mcpdemo.Serve(nil)
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("starting the demo MCP server: %w", err)
	}
	defer stop()
	cfg, warnings, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(demoCaddyfile(listen, pub, backend)), nil)
	if err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("adapting the demo config: %w", err)
	}
	for _, w := range warnings {
		fmt.Fprintln(os.Stderr, "warning:", w.String())
	}
	if err := caddy.Load(cfg, true); err != nil {
		return caddy.ExitCodeFailedStartup, fmt.Errorf("starting Caddy: %w", err)
	}
	base := "http://" + listen
	fmt.Printf(`
caddy-mcp-token demo (development only)
  MCP endpoint : %[1]s/mcp  ->  Go SDK MCP server on %[2]s
  static token : %[3]s   (client dev-user, scopes mcp:read mcp:write)
  JWT (24h)    : %[4]s
                 (RS256, iss %[5]s, aud %[6]s, client demo-client)

Try it:
  curl -s %[1]s/mcp -H 'Authorization: Bearer %[3]s' \
    -H 'Content-Type: application/json' -H 'Accept: application/json, text/event-stream' \
    -d '{"jsonrpc":"2.0","id":1,"method":"tools/list"}'
  curl -si %[1]s/mcp -d '{}'    # no token: 401 with a Bearer challenge
  curl -s %[1]s/.well-known/oauth-protected-resource/mcp    # RFC 9728 metadata

Press Ctrl+C to stop.
`, base, backend, demoStaticToken, jwt, demoIssuer, demoAudience)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	fmt.Println(strings.TrimSpace("\nstopping"))
	if err := caddy.Stop(); err != nil {
		return caddy.ExitCodeFailedQuit, err
	}
	return caddy.ExitCodeSuccess, nil
}
