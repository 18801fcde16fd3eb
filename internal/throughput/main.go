// Command throughput measures what mcp_token costs a real Caddy: it builds
// ./cmd/caddy and starts it with sites on 127.0.0.1 (see sites in
// caddy.go), then loads pairs of them with `hey` (installed from Debian
// when missing), 16 keep-alive connections reusing one RS256 token from a
// JWKS as MCP clients do, in alternating rounds so that both sides of a
// pair see the same machine. The comparisons:
//
//   - mcp_token vs the same Caddy answering with `respond` alone;
//   - mcp_token with per-tool rules (a 1 KiB tools/call body) vs the same;
//   - mcp_token with per-tool rules vs a Caddy that only reads the body
//     (`vars body {http.request.body}`): what the rules cost beyond reading;
//   - mcp_token with per-tool rules in front of a Go SDK MCP server
//     (reverse_proxy) vs the same proxy without mcp_token;
//   - an A/A comparison: `respond` alone against the same site on another
//     port, whose ratio should be 1 and whose spread is the measurement's.
//
// For each run it prints the requests per second and the CPU time Caddy
// and the load generator spent per request (from /proc/<pid>/stat and
// hey's rusage): CPU per request barely moves when other work shares the
// machine, while req/s does. It ends with the ratios of the medians and
// the CPU mcp_token adds per request. Any answer other than 200 fails the
// run.
//
//	go run ./internal/throughput [-rounds 5] [-duration 5s] [-c 16] [-cpuprofile DIR] [-only mcp_token,rules]
//
// -cpuprofile DIR enables Caddy's admin endpoint on a free loopback port,
// saves a CPU profile of Caddy for each run in DIR (<comparison>-<round>-
// <side>.pprof) and copies the Caddy binary there for `go tool pprof
// DIR/caddy DIR/<profile>`.
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mcptoken/caddy-mcp-token/devtools"
	"github.com/mcptoken/caddy-mcp-token/internal/mcpdemo"
)

func main() {
	var o options
	flag.IntVar(&o.rounds, "rounds", 5, "alternating rounds per comparison")
	flag.DurationVar(&o.duration, "duration", 5*time.Second, "length of each load run")
	flag.IntVar(&o.conns, "c", 16, "concurrent keep-alive connections")
	flag.StringVar(&o.profileDir, "cpuprofile", "", "save a CPU profile of Caddy for each run in this directory")
	flag.StringVar(&o.only, "only", "", "run only these comparisons (comma-separated: mcp_token, rules, rules-vs-body, sdk, a-a)")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "throughput:", err)
		os.Exit(1)
	}
}

type options struct {
	rounds     int
	duration   time.Duration
	conns      int
	profileDir string
	only       string
}

// comparison is one pair of sites loaded in alternating rounds.
type comparison struct {
	name       string
	base, with string // site names (see sites)
	goal       float64
	what       string
}

var comparisons = []comparison{
	{"mcp_token", "plain", "gated", 0.95, "mcp_token / respond alone"},
	{"rules", "plain", "rules", 0.90, "mcp_token with per-tool rules on a 1 KiB tools/call / respond alone"},
	{"rules-vs-body", "body", "rules", 0, "mcp_token with per-tool rules / a Caddy that reads the body"},
	{"sdk", "sdk", "sdk-rules", 0, "mcp_token with per-tool rules / reverse_proxy alone, to a Go SDK MCP server"},
	{"a-a", "plain", "plain2", 0, "respond alone / the same site on another port: the spread of the measurement itself"},
}

func run(o options) error {
	if o.rounds < 1 || o.duration < time.Second || o.conns < 1 {
		return errors.New("want -rounds >= 1, -duration >= 1s, -c >= 1")
	}
	hey, err := ensureHey()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "mcp-throughput-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	binDir := dir
	if o.profileDir != "" {
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return err
		}
		binDir = o.profileDir // pprof needs the binary
	}
	caddyBin := filepath.Join(binDir, "caddy")
	fmt.Println("building ./cmd/caddy ...")
	if out, err := exec.Command("go", "build", "-o", caddyBin, "./cmd/caddy").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}

	key, err := devtools.GenerateKey("RS256", 2048, "bench-rs256")
	if err != nil {
		return err
	}
	jwks := devtools.NewJWKSServer(key)
	defer jwks.Close()
	const iss, aud = "https://issuer.bench.example", "urn:mcp:bench"
	token, err := key.Token(devtools.TokenOptions{Issuer: iss, Audience: []string{aud},
		Scopes: []string{"mcp:read"}, ExpiresIn: 24 * time.Hour})
	if err != nil {
		return err
	}
	sdkAddr, stopSDK, err := mcpdemo.Serve(nil)
	if err != nil {
		return err
	}
	defer stopSDK()

	c, err := startCaddy(caddyBin, dir, o.profileDir != "", siteParams{issuer: iss, audience: aud, jwksURL: jwks.JWKSURL(), sdkAddr: sdkAddr})
	if err != nil {
		return err
	}
	defer c.stop()
	body := toolsCall(1024)
	bodyPath := filepath.Join(dir, "body.json")
	if err := os.WriteFile(bodyPath, []byte(body), 0o600); err != nil {
		return err
	}
	l := &loader{hey: hey, caddy: c, token: token, body: body, bodyPath: bodyPath, opts: o}
	for _, name := range siteNames {
		if err := l.ready(name); err != nil {
			return err
		}
	}

	fmt.Printf("loading with hey: %d connections, %s per run, %d alternating rounds, one RS256 token from a JWKS, a 1 KiB tools/call\n",
		o.conns, o.duration, o.rounds)
	fmt.Println("CPU per request: Caddy's (and hey's) user+system time over the run, divided by the answers")
	var summary []string
	for _, cmp := range comparisons {
		if o.only != "" && !slices.Contains(strings.Split(o.only, ","), cmp.name) {
			continue
		}
		base, with, err := l.compare(cmp)
		if err != nil {
			return err
		}
		ratio := median(with, rps) / median(base, rps)
		line := fmt.Sprintf("%-14s req/s ratio %.3f", cmp.name, ratio)
		if cmp.goal > 0 {
			line += fmt.Sprintf(" (goal >= %.2f)", cmp.goal)
		}
		line += fmt.Sprintf("; Caddy CPU/request %.1f µs vs %.1f µs (%+.1f µs)  [%s]",
			median(with, caddyCPU), median(base, caddyCPU), median(with, caddyCPU)-median(base, caddyCPU), cmp.what)
		summary = append(summary, line)
	}
	fmt.Println("\nmedians:")
	fmt.Println(strings.Join(summary, "\n"))
	if o.profileDir != "" {
		fmt.Printf("CPU profiles in %s: go tool pprof %s %s/<profile>\n", o.profileDir, caddyBin, o.profileDir)
	}
	return nil
}

// toolsCall is a tools/call request of about size bytes.
func toolsCall(size int) string {
	head := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"`
	tail := `"}}}`
	return head + strings.Repeat("x", max(0, size-len(head)-len(tail))) + tail
}
