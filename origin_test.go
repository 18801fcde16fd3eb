package mcptoken

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

// proxiedRequest is a POST to target as Caddy prepares it: trusted says
// whether the connection came from a trusted_proxies address.
func proxiedRequest(target string, trusted bool, header map[string][]string) *http.Request {
	r := newRequestFrom(httptest.NewRequest(http.MethodPost, target, strings.NewReader("{}")))
	for k, v := range header {
		r.Header[http.CanonicalHeaderKey(k)] = v
	}
	vars := map[string]any{caddyhttp.TrustedProxyVarKey: trusted}
	return r.WithContext(context.WithValue(r.Context(), caddyhttp.VarsCtxKey, vars))
}

// TestDPoPRequestURI: the htu a proof must name, and the origin of the
// metadata URL, come from one derivation: the configured resource, else a
// trusted proxy's well-formed X-Forwarded-Proto/Host (the last element),
// else the connection; the path is the request's before any rewrite.
func TestDPoPRequestURI(t *testing.T) {
	forwarded := map[string][]string{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"mcp.example.com"}}
	fwdHost := func(v ...string) map[string][]string {
		return map[string][]string{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": v}
	}
	tests := []struct {
		name     string
		target   string
		tls      bool
		trusted  bool
		header   map[string][]string
		resource string
		want     string
	}{
		{name: "the connection", target: "http://localhost:9080/mcp?session=1", want: "http://localhost:9080/mcp"},
		{name: "a TLS connection", target: "https://localhost:9443/mcp", tls: true, want: "https://localhost:9443/mcp"},
		{name: "trusted proxy", target: "http://localhost:9080/mcp", trusted: true, header: forwarded, want: "https://mcp.example.com/mcp"},
		{name: "untrusted peer with the same headers", target: "http://localhost:9080/mcp", header: forwarded, want: "http://localhost:9080/mcp"},
		{name: "trusted proxy, proto only", target: "http://mcp.example.com/mcp", trusted: true,
			header: map[string][]string{"X-Forwarded-Proto": {"https"}}, want: "https://mcp.example.com/mcp"},
		{name: "trusted proxy, lists: the last element", target: "http://localhost:9080/mcp", trusted: true,
			header: map[string][]string{"X-Forwarded-Proto": {"http, https"}, "X-Forwarded-Host": {"evil.example, mcp.example.com"}},
			want:   "https://mcp.example.com/mcp"},
		{name: "trusted proxy, repeated fields: the last one", target: "http://localhost:9080/mcp", trusted: true,
			header: fwdHost("evil.example", "mcp.example.com"), want: "https://mcp.example.com/mcp"},
		{name: "trusted proxy, host with a port", target: "http://localhost:9080/mcp", trusted: true,
			header: fwdHost("mcp.example.com:8443"), want: "https://mcp.example.com:8443/mcp"},
		{name: "trusted proxy, IPv6 host", target: "http://localhost:9080/mcp", trusted: true,
			header: fwdHost("[2001:db8::1]:8443"), want: "https://[2001:db8::1]:8443/mcp"},
		{name: "bad proto ignored", target: "http://localhost:9080/mcp", trusted: true,
			header: map[string][]string{"X-Forwarded-Proto": {"ftp"}, "X-Forwarded-Host": {"mcp.example.com"}}, want: "http://mcp.example.com/mcp"},
		{name: "host with user information ignored", target: "http://localhost:9080/mcp", trusted: true, header: fwdHost("a@evil.example"), want: "https://localhost:9080/mcp"},
		{name: "host with a path ignored", target: "http://localhost:9080/mcp", trusted: true, header: fwdHost("evil.example/x"), want: "https://localhost:9080/mcp"},
		{name: "host with a percent-encoding ignored", target: "http://localhost:9080/mcp", trusted: true, header: fwdHost("ev%69l.example"), want: "https://localhost:9080/mcp"},
		{name: "port out of range ignored", target: "http://localhost:9080/mcp", trusted: true, header: fwdHost("evil.example:99999"), want: "https://localhost:9080/mcp"},
		{name: "empty port ignored", target: "http://localhost:9080/mcp", trusted: true, header: fwdHost("evil.example:"), want: "https://localhost:9080/mcp"},
		{name: "unclosed IPv6 ignored", target: "http://localhost:9080/mcp", trusted: true, header: fwdHost("[::1"), want: "https://localhost:9080/mcp"},
		{name: "IPv6 with a zone ignored", target: "http://localhost:9080/mcp", trusted: true, header: fwdHost("[fe80::1%25eth0]"), want: "https://localhost:9080/mcp"},
		{name: "empty last element ignored", target: "http://localhost:9080/mcp", trusted: true, header: fwdHost("evil.example,"), want: "https://localhost:9080/mcp"},
		{name: "resource wins over the connection", target: "http://localhost:9080/mcp", resource: "https://mcp.example.com/mcp", want: "https://mcp.example.com/mcp"},
		{name: "resource wins over a trusted proxy", target: "http://localhost:9080/mcp", trusted: true,
			header: fwdHost("other.example"), resource: "https://mcp.example.com/mcp", want: "https://mcp.example.com/mcp"},
		{name: "the path is never mapped", target: "http://localhost:9080/mcp", resource: "https://mcp.example.com/prefix/mcp", want: "https://mcp.example.com/mcp"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := proxiedRequest(tc.target, tc.trusted, tc.header)
			if tc.tls {
				r.TLS = &tls.ConnectionState{}
			}
			p := &ProtectedResource{Resource: tc.resource, ResourcePath: "/mcp"}
			if got := requestURI(r, p); got != tc.want {
				t.Fatalf("requestURI = %q, want %q", got, tc.want)
			}
			u, _ := url.Parse(tc.want)
			wantMeta := u.Scheme + "://" + u.Host + WellKnownPath + "/mcp"
			if tc.resource != "" {
				ru, _ := url.Parse(tc.resource)
				wantMeta = u.Scheme + "://" + u.Host + WellKnownPath + ru.Path
			}
			if got := p.MetadataURL(r); got != wantMeta {
				t.Fatalf("MetadataURL = %q, want %q", got, wantMeta)
			}
		})
	}
	t.Run("the path before a rewrite", func(t *testing.T) {
		r := proxiedRequest("http://localhost:9080/backend/mcp", false, nil)
		orig := *r
		orig.URL = &url.URL{Path: "/mcp"}
		r = r.WithContext(context.WithValue(r.Context(), caddyhttp.OriginalRequestCtxKey, orig))
		if got := requestURI(r, &ProtectedResource{}); got != "http://localhost:9080/mcp" {
			t.Fatalf("requestURI = %q", got)
		}
	})
}

// TestMetadataBehindProxy: the document a trusted proxy fetches names the
// public resource and varies on the forwarded headers; an untrusted peer's
// forwarded headers change nothing.
func TestMetadataBehindProxy(t *testing.T) {
	forwarded := map[string][]string{"X-Forwarded-Proto": {"https"}, "X-Forwarded-Host": {"mcp.example.com"}}
	for _, tc := range []struct {
		name     string
		trusted  bool
		resource string
		vary     string
	}{
		{"trusted proxy", true, "https://mcp.example.com/mcp", "Host,X-Forwarded-Host, X-Forwarded-Proto"},
		{"untrusted peer", false, "http://localhost:9080/mcp", "Host"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := &MetadataHandler{ProtectedResource: ProtectedResource{ResourcePath: "/mcp"}}
			r := proxiedRequest("http://localhost:9080"+WellKnownPath+"/mcp", tc.trusted, forwarded)
			r.Method = http.MethodGet
			w := httptest.NewRecorder()
			if err := m.ServeHTTP(w, r, nil); err != nil {
				t.Fatal(err)
			}
			if body := w.Body.String(); !strings.Contains(body, `"resource":"`+tc.resource+`"`) {
				t.Fatalf("document %s, want resource %s", body, tc.resource)
			}
			if got := strings.Join(w.Header().Values("Vary"), ","); got != tc.vary {
				t.Fatalf("Vary %q, want %q", got, tc.vary)
			}
		})
	}
}

// TestDPoPUnparsableRequestURI: a DPoP request whose own URI does not
// parse (its Host) is refused as a bad proof (401), not as an outage
// (503), through the handler and the authentication provider alike.
func TestDPoPUnparsableRequestURI(t *testing.T) {
	c := newDPoPCore(t, DPoPAllowed)
	client := newDPoPClient(t)
	token := dpopToken(t, client.jkt)
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		t.Error("the request reached next")
		return nil
	})
	for _, host := range []string{"a@b", "a%zz", "[::1", "example.com:port"} {
		t.Run(host, func(t *testing.T) {
			r := newRequest("DPoP " + token)
			r.Host = host
			r.Header.Set("DPoP", client.proof(t, "POST", "http://example.com/mcp", token))
			w := httptest.NewRecorder()
			if err := (&Handler{module{core: c}}).ServeHTTP(w, r, next); err != nil {
				t.Fatal(err)
			}
			if www := w.Header().Get("WWW-Authenticate"); w.Code != 401 || !strings.Contains(www, `error="invalid_dpop_proof"`) {
				t.Fatalf("handler: %d %q", w.Code, www)
			}
			r = newRequest("DPoP " + token)
			r.Host = host
			r.Header.Set("DPoP", client.proof(t, "POST", "http://example.com/mcp", token))
			w = httptest.NewRecorder()
			a := &Authenticator{module: module{core: c}}
			if _, ok, err := a.Authenticate(w, r); ok || err != nil || !strings.Contains(w.Header().Get("WWW-Authenticate"), `error="invalid_dpop_proof"`) {
				t.Fatalf("provider: ok %v, err %v, %q", ok, err, w.Header().Get("WWW-Authenticate"))
			}
		})
	}
}
