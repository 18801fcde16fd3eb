package verifiers

import (
	"strings"
	"testing"
)

// TestCheckURLLocalSpellings (issue 10 item 7): loopback and unspecified
// addresses are refused in production in every spelling a resolver or an
// HTTP client accepts; public hosts that only look alike pass.
func TestCheckURLLocalSpellings(t *testing.T) {
	local := []string{
		"https://localhost/jwks",
		"https://LOCALHOST./jwks",
		"https://localhost../jwks",
		"https://idp.localhost./jwks",
		"https://ip6-localhost/jwks",
		"https://127.0.0.1/jwks",
		"https://127.9.9.9:8443/jwks",
		"https://[::1]/jwks",
		"https://[::ffff:127.0.0.1]/jwks",
		"https://[::ffff:7f00:1]/jwks",
		"https://[0:0:0:0:0:ffff:127.0.0.1]/jwks",
		"https://[::1%25eth0]/jwks",
		"https://0.0.0.0/jwks",
		"https://0/jwks",
		"https://[::]/jwks",
		"https://[::ffff:0.0.0.0]/jwks",
		"https://2130706433/jwks",
		"https://0x7f000001/jwks",
		"https://0x7f.1/jwks",
		"https://0177.0.0.1/jwks",
		"https://127.1/jwks",
		"https://127.0.1/jwks",
		"https://0x7F.0.0.1./jwks",
		"https://017700000001/jwks",
		"https://\uff11\uff12\uff17\uff0e\uff10\uff0e\uff10\uff0e\uff11/jwks",
		"https://\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54/jwks",
		"https://localhost6/jwks",
	}
	for _, u := range local {
		t.Run("refused "+u, func(t *testing.T) {
			err := CheckURL(u, true)
			if err == nil || !strings.Contains(err.Error(), "localhost") {
				t.Fatalf("CheckURL(%q, production) = %v, want a localhost refusal", u, err)
			}
			if err := CheckURL(u, false); err != nil {
				t.Fatalf("outside production: %v", err)
			}
		})
	}
	public := []string{
		"https://idp.example.com/jwks",
		"https://localhost.example.com/jwks",
		"https://mylocalhost/jwks",
		"https://128.0.0.1/jwks",
		"https://[2001:db8::1]/jwks",
		"https://[::ffff:8.8.8.8]/jwks",
		"https://1.2.3.4/jwks",
		"https://0x8.8.8.8/jwks",
		"https://4294967296/jwks", // too large for IPv4: a name
		"https://b\u00fccher.example/jwks",
	}
	for _, u := range public {
		t.Run("accepted "+u, func(t *testing.T) {
			if err := CheckURL(u, true); err != nil {
				t.Fatalf("CheckURL(%q, production) = %v", u, err)
			}
		})
	}
}

func TestParseInetAton(t *testing.T) {
	cases := map[string]string{
		"2130706433": "127.0.0.1", "0x7f.1": "127.0.0.1", "127.1": "127.0.0.1", "0177.0.0.1": "127.0.0.1",
		"10.0x10.1": "10.16.0.1", "1.2.3.4": "1.2.3.4", "0": "0.0.0.0",
		"256.1.1.1": "", "1.2.3.4.5": "", "1.16777216": "", "09": "", "0x": "", "a.b": "", "": "",
	}
	for in, want := range cases {
		addr, ok := parseInetAton(in)
		got := ""
		if ok {
			got = addr.String()
		}
		if got != want {
			t.Errorf("parseInetAton(%q) = %q, want %q", in, got, want)
		}
	}
}
