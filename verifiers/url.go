package verifiers

import (
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/idna"
)

// CheckURL refuses a URL that is not absolute http(s); with production set,
// it must be https and its host must not be local (see LocalHost).
func CheckURL(raw string, production bool) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("%q is not an absolute http(s) URL", raw)
	}
	if production {
		if LocalHost(u.Hostname()) {
			return fmt.Errorf("cannot use localhost URL %q in production (ENVIRONMENT=production): the host is a loopback or unspecified address", raw)
		}
		if u.Scheme != "https" {
			return fmt.Errorf("cannot use plain http URL %q in production (ENVIRONMENT=production): use https", raw)
		}
	}
	return nil
}

// localNames are host names that resolve to a loopback address on common
// systems (RFC 6761 §6.3 for localhost and its subdomains; Debian's
// /etc/hosts for the rest).
var localNames = []string{"localhost", "localhost.localdomain", "localhost6", "localhost6.localdomain6",
	"ip6-localhost", "ip6-loopback"}

// LocalHost reports a host (as url.URL.Hostname returns it) that names
// this machine: a loopback or unspecified address in any spelling a
// resolver accepts, or a local name. Addresses are read with net/netip,
// after unmapping IPv4-mapped IPv6 (::ffff:127.0.0.1) and dropping a zone;
// the numeric IPv4 forms inet_aton accepts (2130706433, 0x7f.1, 0177.0.0.1,
// 127.1) are read as the address they stand for; names are compared
// without case and without trailing dots (localhost.), after the IDNA
// mapping HTTP clients apply to non-ASCII hosts (fullwidth digits).
func LocalHost(host string) bool {
	if !isASCII(host) {
		// Go's HTTP client maps non-ASCII hosts with IDNA before resolving
		// them: fullwidth digits and dots (１２７．０．０．１) become ASCII.
		ascii, err := idna.Lookup.ToASCII(host)
		if err != nil {
			return true // not a name any client would reach: refuse
		}
		host = ascii
	}
	host = strings.ToLower(strings.TrimRight(host, "."))
	for _, n := range localNames {
		if host == n || strings.HasSuffix(host, "."+n) {
			return true
		}
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		var ok bool
		if addr, ok = parseInetAton(host); !ok {
			return false
		}
	}
	addr = addr.WithZone("").Unmap()
	return addr.IsLoopback() || addr.IsUnspecified() ||
		(addr.Is4() && addr.As4()[0] == 0) // 0.0.0.0/8, "this network"
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// parseInetAton reads the IPv4 forms of BSD inet_aton, which getaddrinfo
// and many HTTP clients accept: one to four parts, each decimal, octal
// (leading 0) or hex (leading 0x); the last part fills the remaining bytes.
func parseInetAton(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if s == "" || len(parts) > 4 {
		return netip.Addr{}, false
	}
	var vals []uint64
	for _, p := range parts {
		base := 10
		switch {
		case len(p) > 2 && (p[:2] == "0x"):
			base, p = 16, p[2:]
		case len(p) > 1 && p[0] == '0':
			base, p = 8, p[1:]
		}
		v, err := strconv.ParseUint(p, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		vals = append(vals, v)
	}
	var n uint64
	for i, v := range vals[:len(vals)-1] {
		if v > 0xff {
			return netip.Addr{}, false
		}
		n |= v << (24 - 8*i)
	}
	last := vals[len(vals)-1]
	if last >= 1<<(8*(5-len(vals))) {
		return netip.Addr{}, false
	}
	n |= last
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}
