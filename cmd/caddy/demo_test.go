package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// runMainEnv makes the test binary run this command's main instead of the
// tests, so the demo test starts the real `caddy mcp-demo` without a build.
const runMainEnv = "MCP_TOKEN_TEST_RUN_CADDY_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// freeAddr returns a 127.0.0.1 address with a port nobody listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// TestMCPDemoCommand runs the README's first command, `caddy mcp-demo`, on
// a free port: the printed static token and JWT are accepted (the MCP
// server answers), a call without a token gets the 401 challenge, the
// metadata is published, and Ctrl+C stops it cleanly.
func TestMCPDemoCommand(t *testing.T) {
	listen := freeAddr(t)
	cmd := exec.Command(os.Args[0], "mcp-demo", "--listen", listen)
	cmd.Env = append(os.Environ(), runMainEnv+"=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})

	// Read the banner up to "Press Ctrl+C", with a deadline.
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var banner strings.Builder
	deadline := time.After(60 * time.Second)
read:
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("mcp-demo exited before it was ready:\n%s\nstderr:\n%s", banner.String(), stderr.String())
			}
			banner.WriteString(l + "\n")
			if strings.Contains(l, "Press Ctrl+C") {
				break read
			}
		case <-deadline:
			t.Fatalf("mcp-demo printed no banner within 60s:\n%s\nstderr:\n%s", banner.String(), stderr.String())
		}
	}
	out := banner.String()
	base := "http://" + listen
	if !strings.Contains(out, "MCP endpoint : "+base+"/mcp") {
		t.Fatalf("banner does not name %s/mcp:\n%s", base, out)
	}
	static := match(t, out, `static token : (\S+)`)
	jwt := match(t, out, `JWT \(24h\)    : (\S+)`)

	call := func(token, body string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+"/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, string(b)
	}
	const list = `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`
	for _, tc := range []struct{ name, token string }{{"static token", static}, {"JWT", jwt}} {
		t.Run("with the printed "+tc.name, func(t *testing.T) {
			resp, body := call(tc.token, list)
			if resp.StatusCode != 200 || !strings.Contains(body, `"deploy"`) {
				t.Fatalf("tools/list: %d %s", resp.StatusCode, body)
			}
			// Both tokens carry mcp:write: the deploy tool runs.
			resp, body = call(tc.token, `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"deploy","arguments":{"service":"api"}}}`)
			if resp.StatusCode != 200 || !strings.Contains(body, "deployed api") {
				t.Fatalf("tools/call deploy: %d %s", resp.StatusCode, body)
			}
		})
	}
	t.Run("without a token", func(t *testing.T) {
		resp, body := call("", list)
		want := `Bearer scope="mcp:read", resource_metadata="` + base + `/.well-known/oauth-protected-resource/mcp"` +
			`, DPoP algs="ES256 ES384 ES512 EdDSA PS256 PS384 PS512 RS256"` // dpop is allowed by default
		if resp.StatusCode != 401 || resp.Header.Get("WWW-Authenticate") != want {
			t.Fatalf("no token: %d %q (want 401 %q) %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), want, body)
		}
		if strings.Contains(body, "deploy") {
			t.Fatalf("the 401 carries the backend's answer: %s", body)
		}
	})
	t.Run("with a wrong token", func(t *testing.T) {
		resp, _ := call("not-the-demo-token", list)
		if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Fatalf("wrong token: %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	})
	t.Run("metadata", func(t *testing.T) {
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(base + "/.well-known/oauth-protected-resource/mcp")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var doc struct {
			Resource string `json:"resource"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || resp.StatusCode != 200 || doc.Resource != base+"/mcp" {
			t.Fatalf("metadata: %d %+v %v", resp.StatusCode, doc, err)
		}
	})

	// Ctrl+C stops it with exit status 0.
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err // for the cleanup
		if err != nil {
			t.Fatalf("mcp-demo after Ctrl+C: %v\nstderr:\n%s", err, stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("mcp-demo did not stop within 30s of Ctrl+C")
	}
	if _, err := net.DialTimeout("tcp", listen, time.Second); err == nil {
		t.Fatalf("%s still accepts connections after the demo stopped", listen)
	}
}

func match(t *testing.T, text, pattern string) string {
	t.Helper()
	m := regexp.MustCompile(pattern).FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("%q not in the banner:\n%s", pattern, text)
	}
	return m[1]
}
