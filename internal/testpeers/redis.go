package testpeers

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"
)

// RedisServer is Debian's redis-server on a loopback port, without
// persistence, that a test can stop and start again on the same port.
type RedisServer struct {
	URL  string // redis://127.0.0.1:<port>/0
	Addr string // 127.0.0.1:<port>

	bin  string
	port int
	mu   sync.Mutex
	cmd  *exec.Cmd
}

// StartRedis starts redis-server on a free loopback port and stops it
// when the test ends (or when stop is called). It fails (never skips)
// without redis-server.
func StartRedis(t testing.TB) (url string, stop func()) {
	t.Helper()
	s := StartRedisServer(t)
	return s.URL, s.Stop
}

// StartRedisServer is StartRedis with a server that can be restarted.
func StartRedisServer(t testing.TB) *RedisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatalf("redis-server not found (apt-get install redis-server): %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &RedisServer{bin: bin, port: port, Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	s.URL = fmt.Sprintf("redis://%s/0", s.Addr)
	t.Cleanup(s.Stop)
	s.Start(t)
	return s
}

// Start starts the server (again) on its port and waits until it answers
// PING (at most 10s).
func (s *RedisServer) Start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		t.Fatal("redis-server already running")
	}
	cmd := exec.Command(s.bin, "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for !pingRedis(s.Addr) {
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s did not answer PING within 10s", s.Addr)
		}
		time.Sleep(20 * time.Millisecond) // readiness poll, bounded by the deadline
	}
}

// Stop kills the server; stopping a stopped server does nothing.
func (s *RedisServer) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
		s.cmd = nil
	}
}

// pingRedis sends an inline PING and reads +PONG.
func pingRedis(addr string) bool {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return false
	}
	line, err := bufio.NewReader(conn).ReadString('\n')
	return err == nil && line == "+PONG\r\n"
}
