package testpeers

import (
	"strings"
	"testing"
)

func TestCheckNodeVersion(t *testing.T) {
	cases := []struct{ version, want string }{
		{"v20.20.2\n", ""},
		{"v22.1.0", ""},
		{"v18.19.0\n", "node v18.19.0 is too old: the test peers need Node.js 20 or newer"},
		{"v8.0.0", "too old"},
		{"", "not a version"},
		{"garbage", "not a version"},
	}
	for _, tc := range cases {
		t.Run(strings.TrimSpace(tc.version), func(t *testing.T) {
			err := checkNodeVersion(tc.version)
			if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("checkNodeVersion(%q) = %v, want %q", tc.version, err, tc.want)
			}
		})
	}
}
