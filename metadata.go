package mcptoken

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(MetadataHandler{})
}

// WellKnownPath is where RFC 9728 protected-resource metadata lives; the
// metadata of a resource with a path is at WellKnownPath + that path.
const WellKnownPath = "/.well-known/oauth-protected-resource"

// ProtectedResource describes the protected MCP endpoint for RFC 9728
// metadata and for the resource_metadata URL of challenges.
type ProtectedResource struct {
	// The resource identifier (the MCP server's canonical URI, such as
	// https://mcp.example.com/mcp). Default: derived from the request's
	// scheme and host and the protected path. When set, it is also the
	// default accepted audience.
	Resource string `json:"resource,omitempty"`

	// The path of the protected endpoint (such as /mcp), used to derive
	// the resource and the metadata URL when resource is not set. The
	// Caddyfile directive takes it from its path matcher.
	ResourcePath string `json:"resource_path,omitempty"`

	// Authorization servers clients get tokens from. Default: the
	// configured issuers.
	AuthorizationServers []string `json:"authorization_servers,omitempty"`

	// Scopes advertised in the metadata. Default: every scope the
	// configuration requires.
	ScopesSupported []string `json:"scopes_supported,omitempty"`

	// Human-readable name of the resource.
	ResourceName string `json:"resource_name,omitempty"`

	// URL of documentation for developers.
	ResourceDocumentation string `json:"resource_documentation,omitempty"`

	// Proof algorithms advertised as dpop_signing_alg_values_supported
	// (RFC 9449 §5.1). Default: the dpop algorithms, unless dpop is off.
	DPoPSigningAlgs []string `json:"dpop_signing_alg_values_supported,omitempty"`

	// Advertised as dpop_bound_access_tokens_required. Default: true when
	// dpop is required.
	DPoPBoundRequired bool `json:"dpop_bound_access_tokens_required,omitempty"`

	// Advertised as tls_client_certificate_bound_access_tokens (RFC 9728).
	// Default: true unless mtls_bound is off.
	TLSCertBound *bool `json:"tls_client_certificate_bound_access_tokens,omitempty"`
}

// configuredPath is the path of the protected resource as configured:
// from resource, else ResourcePath; "" when neither says.
func (p *ProtectedResource) configuredPath() string {
	if p.Resource != "" {
		if u, err := url.Parse(p.Resource); err == nil {
			return strings.TrimSuffix(u.Path, "/")
		}
	}
	return strings.TrimSuffix(p.ResourcePath, "/")
}

// resourcePath is the configured path, else the request's.
func (p *ProtectedResource) resourcePath(r *http.Request) string {
	if path := p.configuredPath(); path != "" {
		return path
	}
	return strings.TrimSuffix(r.URL.Path, "/")
}

// MetadataURL is the URL of the resource's RFC 9728 metadata document.
func (p *ProtectedResource) MetadataURL(r *http.Request) string {
	return p.origin(r) + WellKnownPath + p.resourcePath(r)
}

// document is the metadata for a request to its well-known URL.
func (p *ProtectedResource) document(r *http.Request) map[string]any {
	resource := p.Resource
	if resource == "" {
		// The configured path when there is one: the request's path may
		// be any variant the path matcher accepts (case, double slashes).
		path := p.configuredPath()
		if path == "" {
			path = r.URL.Path
			if len(path) >= len(WellKnownPath) && strings.EqualFold(path[:len(WellKnownPath)], WellKnownPath) {
				path = path[len(WellKnownPath):]
			}
		}
		resource = p.origin(r) + path
	}
	doc := map[string]any{
		"resource":                 resource,
		"bearer_methods_supported": []string{"header"},
	}
	if len(p.AuthorizationServers) > 0 {
		doc["authorization_servers"] = p.AuthorizationServers
	}
	if len(p.ScopesSupported) > 0 {
		doc["scopes_supported"] = p.ScopesSupported
	}
	if p.ResourceName != "" {
		doc["resource_name"] = p.ResourceName
	}
	if p.ResourceDocumentation != "" {
		doc["resource_documentation"] = p.ResourceDocumentation
	}
	if len(p.DPoPSigningAlgs) > 0 {
		doc["dpop_signing_alg_values_supported"] = p.DPoPSigningAlgs
	}
	if p.DPoPBoundRequired {
		doc["dpop_bound_access_tokens_required"] = true
	}
	if p.TLSCertBound != nil && *p.TLSCertBound {
		doc["tls_client_certificate_bound_access_tokens"] = true
	}
	return doc
}

// metadata is the protected-resource description with its defaults:
// authorization servers from the issuers, scopes_supported from every
// scope the configuration requires.
func (cfg *Config) metadata() ProtectedResource {
	pr := cfg.ProtectedResource
	if len(pr.AuthorizationServers) == 0 {
		var servers []string
		add := func(list ...string) {
			for _, s := range list {
				if s != "" && !slices.Contains(servers, s) && !hasPlaceholder(s) {
					servers = append(servers, s)
				}
			}
		}
		add(cfg.Issuers...)
		for _, ic := range cfg.IssuerConfigs {
			add(ic.Issuer)
		}
		if cfg.Introspection != nil {
			add(cfg.Introspection.Issuers...)
		}
		pr.AuthorizationServers = servers
	}
	if len(pr.ScopesSupported) == 0 {
		var scopes []string
		add := func(list []string) {
			for _, s := range list {
				if !slices.Contains(scopes, s) {
					scopes = append(scopes, s)
				}
			}
		}
		add(cfg.RequiredScopes)
		for _, ic := range cfg.IssuerConfigs {
			add(ic.RequiredScopes)
		}
		if cfg.Introspection != nil {
			add(cfg.Introspection.RequiredScopes)
		}
		for _, k := range slices.Sorted(maps.Keys(cfg.MethodScopes)) {
			add(cfg.MethodScopes[k])
		}
		for _, rules := range []map[string][]string{cfg.ToolScopes, cfg.PromptScopes, cfg.ResourceScopes} {
			for _, k := range slices.Sorted(maps.Keys(rules)) {
				add(rules[k])
			}
		}
		pr.ScopesSupported = scopes
	}
	cfg.dpopMetadata(&pr)
	return pr
}

// MetadataHandler serves RFC 9728 OAuth protected-resource metadata, with
// CORS headers so browser-based MCP clients can read it. It needs no
// token. The mcp_token directive adds it on its own, for
// /.well-known/oauth-protected-resource and the path-suffixed URL of the
// protected path; JSON users route those paths to it.
type MetadataHandler struct {
	ProtectedResource

	// The paths this handler answers, matched as Caddy's path matcher
	// matches them; any other request routed to it goes on to the next
	// handler (a token check, when a protected path covers it). Default:
	// every request routed to it. The mcp_token directive sets them and
	// routes /.well-known/oauth-protected-resource* here, one route per
	// block.
	Paths []string `json:"paths,omitempty"`

	match caddyhttp.MatchPath // Paths, provisioned
}

// CaddyModule returns the Caddy module information.
func (MetadataHandler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.mcp_token_metadata",
		New: func() caddy.Module { return new(MetadataHandler) },
	}
}

// ServeHTTP answers GET/HEAD with the metadata and OPTIONS with CORS. A
// document derived from the request (no resource configured) is sent
// with Vary: Host (and the forwarded headers, from a trusted proxy) and
// private caching only; a configured one is public.
func (m *MetadataHandler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if m.Paths != nil && !m.match.Match(r) {
		return next.ServeHTTP(w, r) // not one of its paths (see Paths)
	}
	hdr := w.Header()
	hdr.Set("Access-Control-Allow-Origin", "*")
	hdr.Set("Access-Control-Allow-Methods", "GET, HEAD, OPTIONS")
	hdr.Set("Access-Control-Allow-Headers", "*")
	hdr.Set("Access-Control-Max-Age", "86400")
	switch r.Method {
	case http.MethodOptions:
		w.WriteHeader(http.StatusNoContent)
		return nil
	case http.MethodGet, http.MethodHead:
	default:
		hdr.Set("Allow", "GET, HEAD, OPTIONS")
		return caddyhttp.Error(http.StatusMethodNotAllowed, nil)
	}
	body, err := json.Marshal(m.document(r))
	if err != nil {
		return err
	}
	hdr.Set("Content-Type", "application/json")
	if m.Resource != "" {
		hdr.Set("Cache-Control", "public, max-age=3600")
	} else {
		// Derived from the request's scheme and Host (origin.go), and
		// from a trusted proxy's X-Forwarded-Proto and X-Forwarded-Host:
		// no shared cache may serve one client's answer to another.
		hdr.Set("Cache-Control", "private, max-age=3600")
		hdr.Add("Vary", "Host")
		if fromTrustedProxy(r) {
			hdr.Add("Vary", "X-Forwarded-Host, X-Forwarded-Proto")
		}
	}
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
	return nil
}

// UnmarshalCaddyfile parses the mcp_token_metadata directive, for layouts
// where mcp_token sits inside a handle block and cannot add the metadata
// routes itself:
//
//	mcp_token_metadata [<matcher>] {
//	    resource               <uri>
//	    resource_path          <path>
//	    authorization_servers  <url...>
//	    scopes_supported       <scope...>
//	    resource_name          <text>
//	    resource_documentation <url>
//	}
func (m *MetadataHandler) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next()
	if d.NextArg() {
		return d.ArgErr()
	}
	for nesting := d.Nesting(); d.NextBlock(nesting); {
		handled, err := m.ProtectedResource.parseOption(d, d.Val())
		if !handled {
			return d.Errf("unrecognized subdirective '%s'", d.Val())
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// checkResource refuses a resource that is not an absolute http(s) URI
// with a host and without a fragment (RFC 9728 §1.2). Every place that
// takes one checks it (the Caddyfile, and Provision for JSON configs):
// the origin of DPoP's htu and of the metadata URL is the resource's
// whenever one is set, never the request's.
func checkResource(resource string) error {
	if u, err := url.Parse(resource); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.Fragment != "" {
		return fmt.Errorf("resource: %q is not an absolute http(s) URI without a fragment (RFC 9728)", resource)
	}
	return nil
}

// parseOption parses the metadata options shared by mcp_token and
// mcp_token_metadata.
func (p *ProtectedResource) parseOption(d *caddyfile.Dispenser, sub string) (bool, error) {
	var err error
	switch sub {
	case "resource":
		if p.Resource, err = singleArg(d); err == nil {
			if cerr := checkResource(p.Resource); cerr != nil {
				err = d.Err(cerr.Error())
			}
		}
	case "resource_path":
		if p.ResourcePath, err = singleArg(d); err == nil && !strings.HasPrefix(p.ResourcePath, "/") {
			err = d.Errf("resource_path: %q must start with /", p.ResourcePath)
		}
	case "authorization_servers":
		p.AuthorizationServers, err = appendArgs(d, p.AuthorizationServers)
	case "scopes_supported":
		p.ScopesSupported, err = appendScopes(d, p.ScopesSupported)
	case "resource_name":
		p.ResourceName, err = singleArg(d)
	case "resource_documentation":
		p.ResourceDocumentation, err = singleArg(d)
	default:
		return false, nil
	}
	return true, err
}

// Interface guards
var (
	_ caddy.Provisioner           = (*MetadataHandler)(nil)
	_ caddyhttp.MiddlewareHandler = (*MetadataHandler)(nil)
	_ caddyfile.Unmarshaler       = (*MetadataHandler)(nil)
)
