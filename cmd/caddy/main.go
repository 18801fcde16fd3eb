// Command caddy is Caddy with the standard modules and caddy-mcp-token.
// It also has a `caddy mcp-demo` subcommand that runs a protected demo MCP
// server in one step.
package main

import (
	caddycmd "github.com/caddyserver/caddy/v2/cmd"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/mcptoken/caddy-mcp-token"
)

func main() {
	caddycmd.Main()
}
