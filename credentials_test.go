package mcptoken

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// TestCredentials: the Authorization header parsed once, Bearer or (with
// DPoP on) DPoP, without copying the request; the b64token syntax checked
// on a cache miss, before anything else judges the token.
func TestCredentials(t *testing.T) {
	tests := []struct {
		name   string
		values []string
		dpopOn bool
		token  string
		isDPoP bool
		err    error // nil, ErrMissingToken or ErrBadRequest (parse or syntax)
	}{
		{"bearer", []string{"Bearer abc.def"}, false, "abc.def", false, nil},
		{"bearer, case and spaces", []string{"  bEaReR   abc=  "}, true, "abc=", false, nil},
		{"dpop", []string{"DPoP abc"}, true, "abc", true, nil},
		{"dpop scheme case", []string{"dpop abc"}, true, "abc", true, nil},
		{"dpop when off is no credentials", []string{"DPoP abc"}, false, "", false, verifiers.ErrMissingToken},
		{"none", nil, true, "", false, verifiers.ErrMissingToken},
		{"basic", []string{"Basic dXNlcg=="}, true, "", false, verifiers.ErrMissingToken},
		{"two headers", []string{"Bearer a", "Bearer b"}, true, "", false, verifiers.ErrBadRequest},
		{"empty bearer", []string{"Bearer "}, true, "", false, verifiers.ErrBadRequest},
		{"bad characters", []string{"Bearer a,b"}, false, "a,b", false, verifiers.ErrBadRequest},
		{"dpop bad characters", []string{"DPoP a b"}, true, "a b", true, verifiers.ErrBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.values != nil {
				h["Authorization"] = tt.values
			}
			token, isDPoP, err := parseAuthorization(h, tt.dpopOn)
			if err == nil {
				err = checkTokenSyntax(token)
			}
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			if err == nil && (token != tt.token || isDPoP != tt.isDPoP) {
				t.Fatalf("token %q dpop %v, want %q %v", token, isDPoP, tt.token, tt.isDPoP)
			}
			if n := testing.AllocsPerRun(50, func() { _, _, _ = parseAuthorization(h, tt.dpopOn) }); tt.err != verifiers.ErrBadRequest && n != 0 {
				t.Fatalf("parsing allocates %v times", n)
			}
		})
	}

	// The request path: a malformed token is 400 on a miss, before the
	// verifiers (and the limiter); a cached token is served.
	c := newDPoPCore(t, DPoPAllowed)
	good := dpopToken(t, "")
	r := newRequest("Bearer " + good)
	if out := c.authenticate(r, true); out.err != nil || out.cache != cacheMiss {
		t.Fatalf("first: %+v", out)
	}
	if out := c.authenticate(newRequest("Bearer "+good), true); out.err != nil || out.cache != cacheHit {
		t.Fatalf("second: cache %v err %v, want a hit", out.cache, out.err)
	}
	for _, auth := range []string{"Bearer " + good + ",x", "DPoP " + good + " x", "Bearer " + good + "\x00"} {
		if out := c.authenticate(newRequest(auth), true); !errors.Is(out.err, verifiers.ErrBadRequest) {
			t.Fatalf("%q: %v, want a malformed request", auth, out.err)
		}
	}
}

// TestB64TokenSyntax: RFC 6750 §2.1's b64token, byte by byte: 1*( ALPHA /
// DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func TestB64TokenSyntax(t *testing.T) {
	const allowed = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~+/"
	for c := 0; c < 256; c++ {
		want := strings.IndexByte(allowed, byte(c)) >= 0
		if got := isB64Token("a" + string([]byte{byte(c)}) + "b"); got != want {
			t.Errorf("byte %#x: %v, want %v", c, got, want)
		}
	}
	for tok, want := range map[string]bool{
		"abc": true, "abc=": true, "abc==": true, "a.b-c_d~e+f/g": true,
		"": false, "=": false, "==": false, "a=b": false, "a b": false, "ab\x00": false, "é": false,
	} {
		if got := isB64Token(tok); got != want {
			t.Errorf("isB64Token(%q) = %v, want %v", tok, got, want)
		}
	}
}
