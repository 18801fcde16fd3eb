package mcptoken

import (
	"net/http/httptest"
	"testing"
)

// TestQueryTokenDecodedKeys (issue 10 item 6): every spelling a backend
// decodes to access_token is refused, and keys that only look alike pass.
func TestQueryTokenDecodedKeys(t *testing.T) {
	cases := []struct {
		name  string
		query string
		want  bool
	}{
		{"plain", "access_token=x", true},
		{"after another pair", "a=1&access_token=x", true},
		{"no value", "access_token", true},
		{"percent-encoded underscore", "access%5Ftoken=x", true},
		{"percent-encoded lowercase hex", "access%5ftoken=x", true},
		{"percent-encoded letter", "%61ccess_token=x", true},
		{"all percent-encoded", "%61%63%63%65%73%73%5F%74%6F%6B%65%6E=x", true},
		{"semicolon separator", "a=1;access_token=x", true},
		{"array suffix", "access_token[]=x", true},
		{"indexed suffix", "access_token[0]=x", true},
		{"encoded bracket", "access_token%5B%5D=x", true},
		{"upper case", "ACCESS_TOKEN=x", true},
		{"bad escape elsewhere in the key", "access_token%zz", false},
		{"bad escape kept raw", "access_token[%zz]=x", true},
		{"double-encoded is another key", "access%255Ftoken=x", false},
		{"value only", "q=access_token", false},
		{"other key", "access_token_hint=x", false},
		{"plus is a space", "access+token=x", false},
		{"empty", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("POST", "/mcp", nil)
			r.URL.RawQuery = tc.query
			if got := hasQueryToken(r); got != tc.want {
				t.Fatalf("hasQueryToken(%q) = %v, want %v", tc.query, got, tc.want)
			}
		})
	}
}
