package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

const heyReport = `
Summary:
  Total:	2.0012 secs
  Requests/sec:	12345.6789

Status code distribution:
  [200]	24000 responses
`

// TestParseHey: req/s and the answers read; any status but 200, or an
// error line, fails the run.
func TestParseHey(t *testing.T) {
	r, err := parseHey(heyReport)
	if err != nil || r.rps != 12345.6789 || r.responses != 24000 {
		t.Fatalf("%+v %v", r, err)
	}
	for _, bad := range []string{
		heyReport + "  [401]\t3 responses\n",
		strings.Replace(heyReport, "[200]", "[503]", 1),
		heyReport + "\nError distribution:\n  [5]\tGet http://...: connection refused\n",
		"no report",
	} {
		if _, err := parseHey(bad); err == nil {
			t.Fatalf("accepted:\n%s", bad)
		}
	}
}

// TestProcCPU: the process's own CPU time, read from /proc, grows with
// work done (in clock ticks: at least a few of them within 10 s of work).
func TestProcCPU(t *testing.T) {
	before, err := procCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for start := time.Now(); time.Since(start) < 10*time.Second; {
		for i := 0; i < 1_000_000; i++ {
			x += i
		}
		after, err := procCPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if after-before >= 3*clockTick {
			return
		}
	}
	t.Fatalf("no CPU time counted after 10 s of work (%d)", x)
}
