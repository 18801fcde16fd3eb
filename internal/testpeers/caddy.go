package testpeers

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Real Caddy processes for tests that need more than one gateway (a
// fleet): caddytest runs one Caddy per test process on fixed ports; these
// run the repository's own Caddy (./cmd/caddy) on free loopback ports,
// each with its own admin port, storage and log file.

// caddytestPorts are the fixed ports of caddytest (admin, http, https),
// never handed out by FreePort.
var caddytestPorts = map[int]bool{2999: true, 9080: true, 9443: true}

// FreePort is a free TCP port on 127.0.0.1 (never one of caddytest's).
func FreePort(t testing.TB) int {
	t.Helper()
	for range 10 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if !caddytestPorts[port] {
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// BuildCaddy builds ./cmd/caddy (Caddy with this module) into a test
// directory and returns the binary's path. Build once per test and start
// as many instances as needed from it.
func BuildCaddy(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "caddy")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/caddy")
	cmd.Dir = filepath.Join(NodeDir(), "..", "..")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build ./cmd/caddy: %v\n%s", err, out)
	}
	return bin
}

// CaddyOptions describes one Caddy process.
type CaddyOptions struct {
	// Name names the instance in messages and files.
	Name string
	// Global holds extra lines for the global options block (the harness
	// writes admin, ports, storage and logging itself).
	Global string
	// Sites returns the site blocks, given the instance's HTTP port.
	Sites func(httpPort int) string
	// Env holds extra KEY=value environment variables ({env.KEY}).
	Env []string
}

// CaddyProcess is a running Caddy.
type CaddyProcess struct {
	Name      string
	HTTPPort  int
	AdminPort int
	// LogFile receives every log line, down to DEBUG, as JSON.
	LogFile string
	// OutputFile receives the process's stdout and stderr.
	OutputFile string

	cmd    *exec.Cmd
	exited chan struct{}
}

// BaseURL is http://127.0.0.1:<HTTPPort>.
func (c *CaddyProcess) BaseURL() string { return fmt.Sprintf("http://127.0.0.1:%d", c.HTTPPort) }

// StartCaddy starts bin with a Caddyfile made from opts on free loopback
// ports and waits until its admin endpoint answers; it is stopped when the
// test ends.
func StartCaddy(t testing.TB, bin string, opts CaddyOptions) *CaddyProcess {
	t.Helper()
	dir := t.TempDir()
	c := &CaddyProcess{Name: opts.Name, HTTPPort: FreePort(t), AdminPort: FreePort(t),
		LogFile: filepath.Join(dir, "caddy.log"), OutputFile: filepath.Join(dir, "output.log"), exited: make(chan struct{})}
	config := fmt.Sprintf(`{
	admin 127.0.0.1:%d
	http_port %d
	https_port %d
	auto_https off
	persist_config off
	grace_period 1ns
	skip_install_trust
	storage file_system %s
	log {
		output file %s
		format json
		level DEBUG
	}
%s
}
`, c.AdminPort, c.HTTPPort, FreePort(t), filepath.Join(dir, "storage"), c.LogFile, opts.Global)
	if opts.Sites != nil {
		config += opts.Sites(c.HTTPPort)
	}
	cfgPath := filepath.Join(dir, "Caddyfile")
	if err := os.WriteFile(cfgPath, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(c.OutputFile)
	if err != nil {
		t.Fatal(err)
	}
	c.cmd = exec.Command(bin, "run", "--config", cfgPath, "--adapter", "caddyfile")
	c.cmd.Stdout, c.cmd.Stderr = out, out
	c.cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	c.cmd.Env = append(c.cmd.Env, opts.Env...)
	if err := c.cmd.Start(); err != nil {
		out.Close()
		t.Fatal(err)
	}
	go func() {
		_ = c.cmd.Wait()
		out.Close()
		close(c.exited)
	}()
	t.Cleanup(c.Stop)
	admin := fmt.Sprintf("http://127.0.0.1:%d/config/", c.AdminPort)
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case <-c.exited:
			t.Fatalf("caddy %s exited at start:\n%s\n%s", c.Name, readFile(c.OutputFile), readFile(c.LogFile))
		default:
		}
		if resp, err := client.Get(admin); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return c
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("caddy %s: admin endpoint not up within 30s:\n%s", c.Name, readFile(c.OutputFile))
		}
		time.Sleep(50 * time.Millisecond) // readiness poll, bounded by the deadline
	}
}

// Stop asks Caddy to stop (SIGTERM), then kills it after 5 s.
func (c *CaddyProcess) Stop() {
	select {
	case <-c.exited:
		return
	default:
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(5 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

// Logs is everything the process logged so far: the log file, then its
// output.
func (c *CaddyProcess) Logs() string {
	return readFile(c.LogFile) + readFile(c.OutputFile)
}

// WaitLog waits up to timeout for a log line containing every one of
// parts, and reports whether one appeared.
func (c *CaddyProcess) WaitLog(timeout time.Duration, parts ...string) bool {
	deadline := time.Now().Add(timeout)
	for {
		if c.CountLog(parts...) > 0 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond) // poll, bounded by the deadline
	}
}

// CountLog is the number of log lines containing every one of parts.
func (c *CaddyProcess) CountLog(parts ...string) int {
	n := 0
	for _, line := range strings.Split(c.Logs(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all && line != "" {
			n++
		}
	}
	return n
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
