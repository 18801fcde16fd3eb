package verifiers_test

import (
	"encoding/json"
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

func TestParseNumericDate(t *testing.T) {
	cases := []struct {
		name    string
		v       any
		want    time.Time // zero: no date
		present bool
		bad     bool
	}{
		{"absent", nil, time.Time{}, false, false},
		{"integer", float64(1700000000), time.Unix(1700000000, 0), true, false},
		{"fraction", 1700000000.25, time.Unix(1700000000, 250000000), true, false},
		{"json.Number", json.Number("1700000000"), time.Unix(1700000000, 0), true, false},
		{"int64", int64(1700000000), time.Unix(1700000000, 0), true, false},
		{"int", 1700000000, time.Unix(1700000000, 0), true, false},
		{"epoch", float64(0), time.Unix(0, 0), true, false},
		{"last second of 9999", float64(253402300799), time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC), true, false},
		{"year 10000", float64(253402300800), time.Time{}, true, true},
		{"int64 year 10000", int64(253402300800), time.Time{}, true, true},
		{"1e300", 1e300, time.Time{}, true, true},
		{"json.Number 1e300", json.Number("1e300"), time.Time{}, true, true},
		{"json.Number 1e400", json.Number("1e400"), time.Time{}, true, true},
		{"negative", float64(-1), time.Time{}, true, true},
		{"negative int64", int64(-1), time.Time{}, true, true},
		{"min int64", int64(math.MinInt64), time.Time{}, true, true},
		{"-1e300", -1e300, time.Time{}, true, true},
		{"NaN", math.NaN(), time.Time{}, true, true},
		{"+Inf", math.Inf(1), time.Time{}, true, true},
		{"beyond int64 seconds", 9.3e18, time.Time{}, true, true},
		{"string", "1700000000", time.Time{}, true, true},
		{"bool", true, time.Time{}, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, present, err := verifiers.ParseNumericDate(tc.v)
			if present != tc.present || (err != nil) != tc.bad {
				t.Fatalf("present %v err %v, want present %v bad %v", present, err, tc.present, tc.bad)
			}
			if tc.bad && !errors.Is(err, verifiers.ErrMalformed) {
				t.Fatalf("want ErrMalformed, got %v", err)
			}
			if !got.Equal(tc.want) {
				t.Fatalf("date %v, want %v", got, tc.want)
			}
			// NumericDate is the same rule: ok only for a good date.
			if d, ok := verifiers.NumericDate(tc.v); ok != (present && !tc.bad) || !d.Equal(tc.want) {
				t.Fatalf("NumericDate = %v, %v", d, ok)
			}
		})
	}
}

func TestCheckTimeClaims(t *testing.T) {
	cases := []struct {
		name   string
		claims map[string]any
		bad    string // the claim named in the error, "" for none
	}{
		{"none", map[string]any{"sub": "x"}, ""},
		{"all good", map[string]any{"exp": 1.7e9, "nbf": 1.6e9, "iat": json.Number("1600000000")}, ""},
		{"nbf 1e300", map[string]any{"exp": 1.7e9, "nbf": 1e300}, "nbf"},
		{"iat 1e300", map[string]any{"iat": 1e300}, "iat"},
		{"exp 1e300", map[string]any{"exp": 1e300}, "exp"},
		{"nbf null", map[string]any{"nbf": nil}, "nbf"},
		{"iat a string", map[string]any{"iat": "yesterday"}, "iat"},
		{"exp negative", map[string]any{"exp": json.Number("-5")}, "exp"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := verifiers.CheckTimeClaims(tc.claims)
			if tc.bad == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, verifiers.ErrMalformed) || !strings.HasPrefix(err.Error(), tc.bad+":") {
				t.Fatalf("want ErrMalformed naming %s, got %v", tc.bad, err)
			}
		})
	}
}

// An introspection answer goes through FromClaims: an exp it cannot read
// must not read as "never expires".
func TestFromClaimsBadExpReadsAsExpired(t *testing.T) {
	for _, exp := range []any{1e300, -1.0, json.Number("1e400"), "soon", true} {
		tok := verifiers.FromClaims(map[string]any{"exp": exp})
		if tok.ExpiresAt.IsZero() || tok.ExpiresAt.After(time.Unix(0, 0)) {
			t.Errorf("exp %v: ExpiresAt %v, want the epoch", exp, tok.ExpiresAt)
		}
	}
	if tok := verifiers.FromClaims(map[string]any{"exp": json.Number("1700000000")}); !tok.ExpiresAt.Equal(time.Unix(1700000000, 0)) {
		t.Errorf("good exp read as %v", tok.ExpiresAt)
	}
	if tok := verifiers.FromClaims(map[string]any{}); !tok.ExpiresAt.IsZero() {
		t.Errorf("absent exp read as %v", tok.ExpiresAt)
	}
}

func TestSplitScope(t *testing.T) {
	cases := []struct{ in, want string }{ // want: parts joined by |
		{"a b c", "a|b|c"},
		{"  a   b ", "a|b"},
		{"", ""},
		{"   ", ""},
		{"mcp:read\u00a0deploy:write", "mcp:read\u00a0deploy:write"},
		{"a\tb", "a\tb"},
		{"a\nb\rc", "a\nb\rc"},
		{"a\u2028b\u3000c\u0085d", "a\u2028b\u3000c\u0085d"},
		{"a\u00a0 b", "a\u00a0|b"},
	}
	for _, tc := range cases {
		t.Run(tc.in, func(t *testing.T) {
			if got := strings.Join(verifiers.SplitScope(tc.in), "|"); got != tc.want {
				t.Fatalf("%q, want %q", got, tc.want)
			}
			// FromClaims (JWTs and introspection answers alike) uses it
			// for scope and for scp as a string.
			for _, claim := range []string{"scope", "scp"} {
				if got := strings.Join(verifiers.FromClaims(map[string]any{claim: tc.in}).Scopes, "|"); got != tc.want {
					t.Fatalf("%s: %q, want %q", claim, got, tc.want)
				}
			}
		})
	}
}
