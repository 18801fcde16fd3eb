package main

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// loader runs hey against the sites.
type loader struct {
	hey         string
	caddy       *caddyProc
	token, body string
	bodyPath    string
	opts        options
}

// result is one load run.
type result struct {
	rps       float64
	responses int
	caddyCPU  time.Duration // Caddy's user+system time during the run
	heyCPU    time.Duration
}

// Accessors for median.
func rps(r result) float64      { return r.rps }
func caddyCPU(r result) float64 { return perRequest(r.caddyCPU, r.responses) }
func heyCPU(r result) float64   { return perRequest(r.heyCPU, r.responses) }

// perRequest is d per answer, in microseconds.
func perRequest(d time.Duration, n int) float64 {
	if n == 0 {
		return 0
	}
	return d.Seconds() * 1e6 / float64(n)
}

// headers are what every request carries, on every site: an MCP client's.
func (l *loader) headers() map[string]string {
	return map[string]string{
		"Authorization": "Bearer " + l.token,
		"Accept":        "application/json, text/event-stream",
	}
}

// ready waits until site answers the request 200 (Caddy started, the JWKS
// loaded, the backend up).
func (l *loader) ready(site string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	last := "no answer"
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, l.caddy.url(site), strings.NewReader(l.body))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range l.headers() {
			req.Header.Set(k, v)
		}
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
	return fmt.Errorf("site %s not ready after 30s: %s", site, last)
}

// compare loads the two sites of cmp in alternating rounds.
func (l *loader) compare(cmp comparison) (base, with []result, err error) {
	for i := 0; i < l.opts.rounds; i++ {
		order := []string{cmp.base, cmp.with}
		if i%2 == 1 {
			order = []string{cmp.with, cmp.base}
		}
		for _, site := range order {
			side := "base"
			if site == cmp.with {
				side = "with"
			}
			r, err := l.load(site, fmt.Sprintf("%s-%d-%s", cmp.name, i+1, side))
			if err != nil {
				return nil, nil, err
			}
			if site == cmp.with {
				with = append(with, r)
			} else {
				base = append(base, r)
			}
		}
		b, w := base[i], with[i]
		fmt.Printf("  %-13s round %d: %-9s %7.0f req/s, CPU/req Caddy %6.1f µs hey %5.1f µs | %-9s %7.0f req/s, Caddy %6.1f µs hey %5.1f µs\n",
			cmp.name, i+1, cmp.base, b.rps, caddyCPU(b), heyCPU(b), cmp.with, w.rps, caddyCPU(w), heyCPU(w))
	}
	return base, with, nil
}

// load runs hey against site for the run's duration, with a CPU profile
// of Caddy named name when profiles are on.
func (l *loader) load(site, name string) (result, error) {
	args := []string{"-z", l.opts.duration.String(), "-c", strconv.Itoa(l.opts.conns), "-m", "POST",
		"-T", "application/json", "-D", l.bodyPath}
	for k, v := range l.headers() {
		args = append(args, "-H", k+": "+v)
	}
	args = append(args, l.caddy.url(site))
	var profErr chan error
	if l.opts.profileDir != "" {
		profErr = make(chan error, 1)
		secs := max(1, int(l.opts.duration.Seconds())-1)
		go func() { profErr <- l.caddy.profile(secs, filepath.Join(l.opts.profileDir, name+".pprof")) }()
	}
	pid := l.caddy.cmd.Process.Pid
	before, err := procCPU(pid)
	if err != nil {
		return result{}, err
	}
	cmd := exec.Command(l.hey, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return result{}, fmt.Errorf("hey: %v\n%s", err, out)
	}
	after, err := procCPU(pid)
	if err != nil {
		return result{}, err
	}
	if profErr != nil {
		if err := <-profErr; err != nil {
			return result{}, fmt.Errorf("cpu profile: %w", err)
		}
	}
	r, err := parseHey(string(out))
	if err != nil {
		return result{}, fmt.Errorf("site %s: %w", site, err)
	}
	r.caddyCPU = after - before
	r.heyCPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	return r, nil
}

var (
	rpsLine    = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	statusLine = regexp.MustCompile(`\[(\d+)\]\s+(\d+) responses`)
)

// parseHey reads the req/s and the answers of hey's report; an answer
// other than 200, or any error, fails the run.
func parseHey(out string) (result, error) {
	m := rpsLine.FindStringSubmatch(out)
	if m == nil {
		return result{}, fmt.Errorf("no Requests/sec in hey's output:\n%s", out)
	}
	var r result
	r.rps, _ = strconv.ParseFloat(m[1], 64)
	for _, s := range statusLine.FindAllStringSubmatch(out, -1) {
		n, _ := strconv.Atoi(s[2])
		if s[1] != "200" {
			return result{}, fmt.Errorf("%d answers with status %s during the load:\n%s", n, s[1], out)
		}
		r.responses += n
	}
	if strings.Contains(out, "Error distribution") {
		return result{}, fmt.Errorf("errors during the load:\n%s", out)
	}
	if r.responses == 0 {
		return result{}, fmt.Errorf("no answers in hey's output:\n%s", out)
	}
	return r, nil
}

// clockTick is the unit of /proc/<pid>/stat times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// procCPU is the user+system CPU time of process pid so far, all threads.
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may hold spaces: fields count
	// from the last ')'. utime and stime are fields 14 and 15 of stat(5).
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	utime, err1 := strconv.ParseInt(fields[11], 10, 64)
	stime, err2 := strconv.ParseInt(fields[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %q", pid, s)
	}
	return time.Duration(utime+stime) * clockTick, nil
}

// median of f over the results.
func median(rs []result, f func(result) float64) float64 {
	v := make([]float64, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	n := len(v)
	if n%2 == 1 {
		return v[n/2]
	}
	return (v[n/2-1] + v[n/2]) / 2
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
