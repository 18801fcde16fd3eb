// Command testsummary reads `go test -json` — or the text of `go test -v`
// — on stdin, prints the tests' output as `go test -v` would, and ends
// with one line counting passed, failed and skipped tests (subtests
// included):
//
//	tests: 212 passed, 0 failed, 3 skipped (14 packages, 0 failed)
//
// It exits 1 when a test or a package failed, or when no test ran at all,
// so CI cannot pass on nothing. Used by .ci/run.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"regexp"
	"sort"
	"strings"
)

// event is one line of `go test -json` (cmd/test2json).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

type summary struct {
	passed, failed, skipped int
	packages, failedPkgs    int
	failures, skips         []string
}

func (s *summary) add(e event) {
	switch {
	case e.Test != "" && e.Action == "pass":
		s.passed++
	case e.Test != "" && e.Action == "fail":
		s.failed++
		s.failures = append(s.failures, e.Package+" "+e.Test)
	case e.Test != "" && e.Action == "skip":
		s.skipped++
		s.skips = append(s.skips, e.Package+" "+e.Test)
	case e.Test == "" && (e.Action == "pass" || e.Action == "skip"):
		s.packages++
	case e.Test == "" && e.Action == "fail":
		s.packages++
		s.failedPkgs++
		s.failures = append(s.failures, e.Package+" (package)")
	}
}

// ok reports whether the run passed: nothing failed and something ran.
func (s *summary) ok() bool {
	return s.failed == 0 && s.failedPkgs == 0 && s.passed > 0
}

// countLine is the plain closing line: "tests: N passed, N failed, N skipped".
func (s *summary) countLine() string {
	return fmt.Sprintf("tests: %d passed, %d failed, %d skipped", s.passed, s.failed, s.skipped)
}

func (s *summary) line() string {
	return fmt.Sprintf("tests: %d passed, %d failed, %d skipped (%d packages, %d failed)",
		s.passed, s.failed, s.skipped, s.packages, s.failedPkgs)
}

// run copies the output of the events in r to w and returns the summary.
func run(r io.Reader, w io.Writer) (*summary, error) {
	s := &summary{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil || e.Action == "" {
			fmt.Fprintln(w, sc.Text()) // not an event: pass it through
			if e, ok := textEvent(sc.Text()); ok {
				s.add(e)
			}
			continue
		}
		if e.Output != "" {
			fmt.Fprint(w, e.Output)
		}
		s.add(e)
	}
	return s, sc.Err()
}

// The result lines of `go test -v` text output.
var (
	textTest    = regexp.MustCompile(`^\s*--- (PASS|FAIL|SKIP): (\S+)`)
	textPackage = regexp.MustCompile(`^(ok|FAIL)\s+(\S+)\s+(\(cached\)|[0-9.]+s|\[)`)
)

// textEvent reads a result line of `go test -v` text output as the event
// `go test -json` would have sent.
func textEvent(line string) (event, bool) {
	if m := textTest.FindStringSubmatch(line); m != nil {
		return event{Action: strings.ToLower(m[1]), Test: m[2]}, true
	}
	if m := textPackage.FindStringSubmatch(line); m != nil {
		action := "pass"
		if m[1] == "FAIL" {
			action = "fail"
		}
		return event{Action: action, Package: m[2]}, true
	}
	return event{}, false
}

func main() {
	s, err := run(os.Stdin, os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testsummary: reading go test -json:", err)
		os.Exit(1)
	}
	sort.Strings(s.skips)
	for _, name := range s.skips {
		fmt.Println("skipped:", name)
	}
	for _, name := range s.failures {
		fmt.Println("FAILED:", name)
	}
	if s.passed == 0 && s.failed == 0 {
		fmt.Println("no test ran")
	}
	// The count line alone, as CI runners read it; the packages before it.
	fmt.Printf("packages: %d, %d failed\n", s.packages, s.failedPkgs)
	fmt.Println(s.countLine())
	if !s.ok() {
		os.Exit(1)
	}
}
