package mcptoken

import (
	"encoding/json"
	"net/http"
	"sync"

	"github.com/caddyserver/caddy/v2"
	"go.uber.org/zap"
)

// Challenges name a resource_metadata URL. The mcp_token Caddyfile
// directive adds the route that serves it; a JSON configuration must add
// it by hand, and one that does not advertises a URL that answers 404, so
// MCP clients cannot find the authorization server. A handler cannot see
// the routes around it, so metadata handlers register the path they
// describe here, and the first challenge a core sends checks that one of
// them covers its path; if none does, it logs one WARN with the JSON route
// to add. The URL is still advertised: the document may be served in a way
// this registry cannot see (a file_server, the MCP server itself).

// metadataHandlers maps each provisioned MetadataHandler to the resource
// path it describes ("" when it derives it from the request, which then
// covers any path routed to it).
var metadataHandlers = struct {
	sync.Mutex
	paths map[*MetadataHandler]string
}{paths: map[*MetadataHandler]string{}}

// register records the handler as serving the metadata of its path; its
// Provision calls it.
func (m *MetadataHandler) register() {
	metadataHandlers.Lock()
	defer metadataHandlers.Unlock()
	metadataHandlers.paths[m] = m.configuredPath()
}

// Cleanup unregisters the handler.
func (m *MetadataHandler) Cleanup() error {
	metadataHandlers.Lock()
	defer metadataHandlers.Unlock()
	delete(metadataHandlers.paths, m)
	return nil
}

// metadataServed reports whether a provisioned metadata handler describes
// the resource at path.
func metadataServed(path string) bool {
	metadataHandlers.Lock()
	defer metadataHandlers.Unlock()
	for _, p := range metadataHandlers.paths {
		if p == path || p == "" {
			return true
		}
	}
	return false
}

// checkMetadataServed runs once per core, at its first challenge naming
// metadataURL: see the comment at the top of this file.
func (c *core) checkMetadataServed(r *http.Request, metadataURL string) {
	if c.metaChecked.Load() || !c.metaChecked.CompareAndSwap(false, true) {
		return
	}
	path := c.resource.resourcePath(r)
	if metadataServed(path) {
		return
	}
	c.logger.Warn("challenges name a resource_metadata URL that no mcp_token_metadata handler in this configuration serves, "+
		"so MCP clients cannot discover the authorization server: add the route in add_route to this server's routes, "+
		"before the route of mcp_token (the mcp_token Caddyfile directive adds it on its own)",
		zap.String("resource_metadata", metadataURL), zap.String("add_route", metadataRoute(c.resource, path)))
}

// metadataRoute is the JSON route that serves the metadata of the
// resource at path: the path-suffixed well-known URL and the root one.
func metadataRoute(pr ProtectedResource, path string) string {
	if pr.Resource == "" {
		pr.ResourcePath = path
	}
	paths := []string{WellKnownPath}
	if path != "" {
		paths = []string{WellKnownPath + path, WellKnownPath}
	}
	route := map[string]any{
		"match": []map[string]any{{"path": paths}},
		"handle": []any{struct {
			Handler string `json:"handler"`
			ProtectedResource
		}{"mcp_token_metadata", pr}},
	}
	out, _ := json.Marshal(route)
	return string(out)
}

// Interface guards
var _ caddy.CleanerUpper = (*MetadataHandler)(nil)
