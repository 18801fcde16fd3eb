// Command throughput measures what mcp_token costs a real Caddy: it builds
// ./cmd/caddy, starts it with three sites on 127.0.0.1 that all answer
// with `respond` — one without the directive (the baseline), one with
// mcp_token verifying an RS256 token from a JWKS endpoint, one with
// per-tool scope rules too (the body is a 1 KiB tools/call) — and loads
// them with `hey` (installed from Debian when missing), 16 keep-alive
// connections reusing one token as MCP clients do, in alternating rounds
// so that both sides see the same machine. It prints each round and the
// ratios of the medians.
//
//	go run ./internal/throughput [-rounds 5] [-duration 5s] [-c 16]
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/mcptoken/caddy-mcp-token/devtools"
)

func main() {
	rounds := flag.Int("rounds", 5, "alternating rounds per comparison")
	duration := flag.Duration("duration", 5*time.Second, "length of each load run")
	conns := flag.Int("c", 16, "concurrent keep-alive connections")
	flag.Parse()
	if err := run(*rounds, *duration, *conns); err != nil {
		fmt.Fprintln(os.Stderr, "throughput:", err)
		os.Exit(1)
	}
}

func run(rounds int, duration time.Duration, conns int) error {
	hey, err := ensureHey()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "mcp-throughput-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	caddyBin := filepath.Join(dir, "caddy")
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

	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	plain, gated, rules := ports[0], ports[1], ports[2]
	caddyfile := fmt.Sprintf(`{
	admin off
	auto_https off
	log default {
		level ERROR
	}
}
http://127.0.0.1:%[1]d {
	respond /mcp* "ok" 200
}
http://127.0.0.1:%[2]d {
	mcp_token /mcp* {
		issuer %[4]s
		audience %[5]s
		jwks_uri %[6]s
	}
	respond /mcp* "ok" 200
}
http://127.0.0.1:%[3]d {
	mcp_token /mcp* {
		issuer %[4]s
		audience %[5]s
		jwks_uri %[6]s
		method_scopes tools/call mcp:read
		tool_scopes deploy deploy:write
	}
	respond /mcp* "ok" 200
}
`, plain, gated, rules, iss, aud, jwks.JWKSURL())
	cfgPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(caddyfile), 0o600); err != nil {
		return err
	}
	caddy := exec.Command(caddyBin, "run", "--config", cfgPath, "--adapter", "caddyfile")
	caddy.Stderr = os.Stderr
	if err := caddy.Start(); err != nil {
		return err
	}
	defer func() { _ = caddy.Process.Kill(); _ = caddy.Wait() }()

	body := toolsCall(1024)
	bodyPath := filepath.Join(dir, "body.json")
	if err := os.WriteFile(bodyPath, []byte(body), 0o600); err != nil {
		return err
	}
	url := func(port int) string { return fmt.Sprintf("http://127.0.0.1:%d/mcp", port) }
	if err := waitReady(url(gated), token, body); err != nil {
		return err
	}
	load := func(port int) (float64, error) {
		args := []string{"-z", duration.String(), "-c", strconv.Itoa(conns), "-m", "POST",
			"-T", "application/json", "-D", bodyPath, "-H", "Authorization: Bearer " + token, url(port)}
		out, err := exec.Command(hey, args...).CombinedOutput()
		if err != nil {
			return 0, fmt.Errorf("hey: %v\n%s", err, out)
		}
		return requestsPerSecond(string(out))
	}

	fmt.Printf("loading with hey: %d connections, %s per run, %d alternating rounds, one RS256 token from a JWKS\n", conns, duration, rounds)
	compare := func(name string, port int) (float64, error) {
		var base, with []float64
		for i := 0; i < rounds; i++ {
			order := []int{plain, port}
			if i%2 == 1 {
				order = []int{port, plain}
			}
			for _, p := range order {
				rps, err := load(p)
				if err != nil {
					return 0, err
				}
				if p == plain {
					base = append(base, rps)
				} else {
					with = append(with, rps)
				}
			}
			fmt.Printf("  %-28s round %d: without %8.0f req/s, with %8.0f req/s\n", name, i+1, base[i], with[i])
		}
		return median(with) / median(base), nil
	}
	r1, err := compare("mcp_token", gated)
	if err != nil {
		return err
	}
	r2, err := compare("mcp_token + tool rules", rules)
	if err != nil {
		return err
	}
	fmt.Printf("ratio mcp_token / without: %.3f (goal >= 0.95)\n", r1)
	fmt.Printf("ratio mcp_token with per-tool rules on 1 KiB tools/call / without: %.3f (goal >= 0.90)\n", r2)
	return nil
}

// ensureHey finds hey, installing Debian's package when it is missing.
func ensureHey() (string, error) {
	if p, err := exec.LookPath("hey"); err == nil {
		return p, nil
	}
	fmt.Println("installing hey (Debian package) ...")
	for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "hey"}} {
		cmd := exec.Command("apt-get", args...)
		cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("apt-get %s: %v (install hey by hand)", strings.Join(args, " "), err)
		}
	}
	return exec.LookPath("hey")
}

// toolsCall is a tools/call request of about size bytes.
func toolsCall(size int) string {
	head := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"text":"`
	tail := `"}}}`
	return head + strings.Repeat("x", max(0, size-len(head)-len(tail))) + tail
}

func freePorts(n int) ([]int, error) {
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// waitReady waits until the gated site accepts the token (Caddy started
// and the JWKS loaded).
func waitReady(url, token, body string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	last := "no answer"
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+token)
		req.Header.Set("Content-Type", "application/json")
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("caddy not ready after 30s: %s", last)
}

var rpsLine = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)

func requestsPerSecond(out string) (float64, error) {
	m := rpsLine.FindStringSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("no Requests/sec in hey's output:\n%s", out)
	}
	if strings.Contains(out, "[401]") || strings.Contains(out, "[403]") || strings.Contains(out, "[503]") {
		return 0, fmt.Errorf("refused requests during the load:\n%s", out)
	}
	return strconv.ParseFloat(m[1], 64)
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}
