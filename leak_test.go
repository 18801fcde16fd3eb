package mcptoken

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/mcptoken/caddy-mcp-token/internal/testpeers"
)

// caddyLogFile receives every log line of the e2e Caddy configs.
var caddyLogFile = filepath.Join(os.TempDir(), fmt.Sprintf("caddy-mcp-token-e2e-%d.log", os.Getpid()))

var (
	secretsMu sync.Mutex
	secrets   = map[string]bool{}
)

// remember registers a token or secret that must never appear in a log.
func remember(values ...string) {
	secretsMu.Lock()
	defer secretsMu.Unlock()
	for _, v := range values {
		if len(v) >= 8 {
			secrets[v] = true
		}
	}
}

// configSecrets are the secrets written into the e2e configurations.
var configSecrets = []string{
	"dev-forward-token", "dev-metrics-token", testpeers.GatewaySecret, testpeers.ClientSecret,
}

// jwsInLog matches anything shaped like a compact JWS.
var jwsInLog = regexp.MustCompile(`eyJ[A-Za-z0-9_-]{4,}\.eyJ[A-Za-z0-9_-]{4,}\.`)

// TestMain runs the tests, then checks that no log line, at any level,
// contains a token or a secret used during the run.
func TestMain(m *testing.M) {
	_ = os.Remove(caddyLogFile)
	code := m.Run()
	if err := checkLogs(); err != nil {
		fmt.Fprintln(os.Stderr, "FAIL: log leak check:", err)
		code = 1
	}
	_ = os.Remove(caddyLogFile)
	os.Exit(code)
}

func checkLogs() error {
	f, err := os.Open(caddyLogFile)
	if os.IsNotExist(err) {
		return nil // no e2e test ran
	}
	if err != nil {
		return err
	}
	defer f.Close()
	remember(configSecrets...)
	secretsMu.Lock()
	defer secretsMu.Unlock()
	lines, rejections, debug := 0, 0, 0
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		lines++
		if strings.Contains(line, `"level":"debug"`) {
			debug++
		}
		if strings.Contains(line, "bearer token rejected") {
			rejections++
			if !strings.Contains(line, `"token_hash":"`) && !strings.Contains(line, `"reason":"missing_token"`) && !strings.Contains(line, `"reason":"bad_request"`) {
				return fmt.Errorf("a rejection line without a token hash: %s", line)
			}
		}
		if m := jwsInLog.FindString(line); m != "" {
			return fmt.Errorf("a JWS-shaped string in the log: %s", line)
		}
		for s := range secrets {
			if strings.Contains(line, s) {
				return fmt.Errorf("a token or secret (%d chars, starts %q) in the log: %s", len(s), s[:4], line)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	fullRun := flag.Lookup("test.run") == nil || flag.Lookup("test.run").Value.String() == ""
	if fullRun && (rejections == 0 || debug == 0) {
		return fmt.Errorf("the log has %d lines, %d at debug, %d rejections: logging was not captured", lines, debug, rejections)
	}
	fmt.Printf("log leak check: %d log lines (%d debug, %d rejections) scanned for %d tokens and secrets: none found\n",
		lines, debug, rejections, len(secrets))
	return nil
}
