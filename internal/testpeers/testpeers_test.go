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

// TestRedisRestart: a stopped redis-server is down, and restarted it
// answers on the same address, with its password.
func TestRedisRestart(t *testing.T) {
	r := StartRedisServer(t, RedisOptions{Password: "restart-test-password"})
	if !pingRedis(r.Addr, "restart-test-password") || pingRedis(r.Addr, "wrong") {
		t.Fatal("the password is not required")
	}
	if !strings.Contains(r.URL, ":restart-test-password@"+r.Addr) {
		t.Fatalf("URL %s", r.URL)
	}
	r.Stop()
	if pingRedis(r.Addr, "restart-test-password") {
		t.Fatal("still answering after Stop")
	}
	r.Restart(t)
	if !pingRedis(r.Addr, "restart-test-password") {
		t.Fatal("not answering after Restart")
	}
}
