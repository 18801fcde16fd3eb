package testpeers

import (
	"bufio"
	"fmt"
	"net"
	"net/url"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"
)

// StartRedis starts Debian's redis-server on a free loopback port, without
// persistence, and stops it when the test ends (or when stop is called).
// It fails (never skips) without redis-server.
func StartRedis(t testing.TB) (url string, stop func()) {
	t.Helper()
	r := StartRedisServer(t)
	return r.URL, r.Stop
}

// RedisOptions configures StartRedisServer.
type RedisOptions struct {
	// Password, when set, is required of clients (requirepass) and is in
	// URL; tests use it to check that no log ever shows it.
	Password string
}

// Redis is a redis-server the test started: it can be stopped (killed, as
// an outage) and restarted on the same port.
type Redis struct {
	// URL is redis://[:password@]127.0.0.1:<port>/0.
	URL string
	// Addr is 127.0.0.1:<port>.
	Addr string

	bin      string
	args     []string
	password string
	mu       sync.Mutex
	cmd      *exec.Cmd // nil while stopped
}

// StartRedisServer starts redis-server on a free loopback port, without
// persistence; it is killed when the test ends. It fails (never skips)
// without redis-server.
func StartRedisServer(t testing.TB, options ...RedisOptions) *Redis {
	t.Helper()
	var opts RedisOptions
	if len(options) > 0 {
		opts = options[0]
	}
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found (apt-get install redis-server): %v", err)
	}
	port := FreePort(t)
	r := &Redis{
		Addr:     net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
		bin:      bin,
		args:     []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"},
		password: opts.Password,
	}
	u := url.URL{Scheme: "redis", Host: r.Addr, Path: "/0"}
	if opts.Password != "" {
		r.args = append(r.args, "--requirepass", opts.Password)
		u.User = url.UserPassword("", opts.Password)
	}
	r.URL = u.String()
	t.Cleanup(r.Stop)
	r.start(t)
	return r
}

// start runs redis-server and waits until it answers PING.
func (r *Redis) start(t testing.TB) {
	t.Helper()
	cmd := exec.Command(r.bin, r.args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r.mu.Lock()
	r.cmd = cmd
	r.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for !pingRedis(r.Addr, r.password) {
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s did not answer PING within 10s", r.Addr)
		}
		time.Sleep(20 * time.Millisecond) // readiness poll, bounded by the deadline
	}
}

// Stop kills the server (SIGKILL: an outage, not a shutdown) and waits
// for it to exit. Stopping a stopped server does nothing.
func (r *Redis) Stop() {
	r.mu.Lock()
	cmd := r.cmd
	r.cmd = nil
	r.mu.Unlock()
	if cmd != nil {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
}

// Start starts a stopped server again on the same port (empty: no
// persistence), waiting until it answers; it fails the test if the server
// is running.
func (r *Redis) Start(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	running := r.cmd != nil
	r.mu.Unlock()
	if running {
		t.Fatal("redis-server already running")
	}
	r.start(t)
}

// Restart starts a stopped server again on the same port (empty: no
// persistence), waiting until it answers.
func (r *Redis) Restart(t testing.TB) {
	t.Helper()
	r.Stop()
	r.start(t)
}

// pingRedis sends an inline PING (after AUTH when password is set) and
// reads +PONG.
func pingRedis(addr, password string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	rd := bufio.NewReader(conn)
	if password != "" {
		if _, err := fmt.Fprintf(conn, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(password), password); err != nil {
			return false
		}
		if line, err := rd.ReadString('\n'); err != nil || line != "+OK\r\n" {
			return false
		}
	}
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := rd.ReadString('\n')
	return err == nil && line == "+PONG\r\n"
}
