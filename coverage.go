package mcptoken

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// checkCoverage refuses a path matcher that protects an MCP endpoint
// without covering its subpaths, or subpaths without the endpoint: `mcp_token
// /mcp` protects /mcp but not /mcp/ or /mcp/?x, which Express (non-strict
// routing) sends to the same handler, so an unauthenticated call would run;
// `mcp_token /mcp/*` leaves /mcp itself, the resource it publishes, open.
//
// It refuses rather than rewrites: a Caddy user expects the Caddyfile to
// mean what it says, and `caddy adapt` to fail at the line with the fix
// ("use mcp_token /mcp*"), not a warning in a log nobody reads while the
// directive quietly protects other paths than the ones written.
//
// Each path entry whose only wildcard is a trailing one is judged, without
// case (Caddy's path matcher ignores it): /p* covers /p and everything
// below; /p is covered when /p/* is listed too, and /p/* when /p (or /p/)
// is. A method matcher is refused too: it leaves the endpoint's other
// methods (GET streams, DELETE) open. Other matchers (regular expressions,
// inner wildcards, not, headers) are left to the user. A matcher on the enclosing handle block is not visible
// here; the README says to give mcp_token its own path matcher.
func checkCoverage(set caddy.ModuleMap) error {
	if _, ok := set["method"]; ok {
		return fmt.Errorf("a method matcher leaves the endpoint's other methods without a token (MCP uses POST, GET for streams and DELETE to end a session); give mcp_token a path matcher only, such as mcp_token /mcp*")
	}
	raw, ok := set["path"]
	if !ok {
		return nil
	}
	var paths caddyhttp.MatchPath
	if json.Unmarshal(raw, &paths) != nil {
		return nil
	}
	lower := make([]string, len(paths))
	for i, p := range paths {
		lower[i] = strings.ToLower(p)
	}
	has := func(p string) bool { return slices.Contains(lower, p) }
	for _, p := range lower {
		trimmed := strings.TrimSuffix(p, "*")
		if strings.ContainsAny(trimmed, "*") || !strings.HasPrefix(p, "/") {
			continue
		}
		base := strings.TrimSuffix(trimmed, "/")
		if base == "" || has(base+"*") {
			continue // /*, or a prefix match that covers all
		}
		endpoint := has(base) || has(base+"/")
		subpaths := has(base + "/*")
		if endpoint && subpaths {
			continue
		}
		if !strings.HasSuffix(p, "*") {
			return fmt.Errorf("path %s protects only that exact path, not %s, %s/ and its subpaths, which MCP servers such as Express route to the same endpoint; use mcp_token %s* to cover %s, %s/ and its subpaths",
				p, base, base, base, base, base)
		}
		return fmt.Errorf("path %s protects the subpaths of %s but not %s itself; use mcp_token %s* to cover %s, %s/ and its subpaths",
			p, base, base, base, base, base)
	}
	return nil
}
