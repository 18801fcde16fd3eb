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
	"sync/atomic"
	"testing"

	"github.com/mcptoken/caddy-mcp-token/internal/testpeers"
)

// caddyLogFile receives every log line of the e2e Caddy configs.
var caddyLogFile = filepath.Join(os.TempDir(), fmt.Sprintf("caddy-mcp-token-e2e-%d.log", os.Getpid()))

// caddyStarted is set by startCaddy once a config is loaded: from then on
// the log file must exist.
var caddyStarted atomic.Bool

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
	"dev-forward-token", "dev-metrics-token", "dev-cors-on-token", "dev-cors-off-token", testpeers.GatewaySecret, testpeers.ClientSecret,
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
	fullRun := flag.Lookup("test.run") == nil || flag.Lookup("test.run").Value.String() == ""
	return checkLogFile(caddyLogFile, caddyStarted.Load(), fullRun && !testing.Short())
}

// checkLogFile scans path for tokens and secrets. started says Caddy ran
// (so the log must exist and hold lines); full says every e2e test ran (so
// rejections and debug lines must be there too).
func checkLogFile(path string, started, full bool) error {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		// Only a run in which no e2e test started Caddy may have no log.
		if started || full {
			return fmt.Errorf("the Caddy log file %s is missing (Caddy started: %v): the scan would have checked nothing", path, started)
		}
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	remember(configSecrets...)
	secretsMu.Lock()
	defer secretsMu.Unlock()
	lines, rejections, debug, audits := 0, 0, 0, 0
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
		if strings.Contains(line, `"logger":"http.handlers.mcp_token.audit"`) {
			audits++ // scanned like every line; counted so a full run proves it saw some
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
	if (started && lines == 0) || (full && (rejections == 0 || debug == 0 || audits == 0)) {
		return fmt.Errorf("the log has %d lines, %d at debug, %d rejections, %d audit lines: logging was not captured", lines, debug, rejections, audits)
	}
	if path != caddyLogFile {
		return nil
	}
	fmt.Printf("log leak check: %d log lines (%d debug, %d rejections, %d audit) scanned for %d tokens and secrets: none found\n",
		lines, debug, rejections, audits, len(secrets))
	return nil
}

// TestLogLeakCheckFailsLoudly: the end-of-run scan cannot pass by finding
// nothing to scan, and it catches what it looks for.
func TestLogLeakCheckFailsLoudly(t *testing.T) {
	dir := t.TempDir()
	const secret = "leak-check-test-secret-5b1e"
	remember(secret)
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	debugLine := `{"level":"debug","msg":"bearer token rejected","reason":"bad_signature","token_hash":"ab12"}` + "\n" +
		`{"level":"info","logger":"http.handlers.mcp_token.audit","msg":"decision","reason":"bad_signature","token_hash":"ab12"}` + "\n"
	cases := []struct {
		name          string
		path          string
		started, full bool
		want          string // "" means no error
	}{
		{"missing file after Caddy ran", filepath.Join(dir, "missing.log"), true, false, "is missing"},
		{"missing file in a full run", filepath.Join(dir, "missing.log"), false, true, "is missing"},
		{"missing file, no e2e test ran", filepath.Join(dir, "missing.log"), false, false, ""},
		{"empty file after Caddy ran", write("empty.log", ""), true, false, "logging was not captured"},
		{"full run without rejections", write("info.log", `{"level":"debug","msg":"x"}`+"\n"), true, true, "logging was not captured"},
		{"a remembered secret", write("secret.log", debugLine+`{"level":"info","msg":"x `+secret+`"}`+"\n"), true, true, "a token or secret"},
		{"a JWS-shaped string", write("jws.log", debugLine+`{"level":"info","msg":"eyJhbGciOi.eyJzdWIiOi.sig"}`+"\n"), true, true, "JWS-shaped"},
		{"a rejection without a token hash", write("nohash.log", `{"level":"debug","msg":"bearer token rejected","reason":"expired"}`+"\n"), true, true, "without a token hash"},
		{"full run without audit lines", write("noaudit.log", `{"level":"debug","msg":"bearer token rejected","reason":"bad_signature","token_hash":"ab12"}`+"\n"), true, true, "logging was not captured"},
		{"a secret in an audit line", write("audit.log", debugLine+`{"level":"info","logger":"http.handlers.mcp_token.audit","msg":"decision","path":"/`+secret+`"}`+"\n"), true, true, "a token or secret"},
		{"a clean log", write("clean.log", debugLine), true, true, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := checkLogFile(tc.path, tc.started, tc.full)
			if tc.want == "" && err != nil {
				t.Fatalf("want no error, got %v", err)
			}
			if tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("want an error containing %q, got %v", tc.want, err)
			}
		})
	}
}
