package main

import (
	"strings"
	"testing"
)

func TestSummary(t *testing.T) {
	cases := []struct {
		name   string
		input  string
		line   string
		ok     bool
		output string
	}{
		{"all passed", `{"Action":"run","Package":"p","Test":"TestA"}
{"Action":"output","Package":"p","Test":"TestA","Output":"=== RUN   TestA\n"}
{"Action":"pass","Package":"p","Test":"TestA/sub"}
{"Action":"pass","Package":"p","Test":"TestA"}
{"Action":"pass","Package":"p"}`, "tests: 2 passed, 0 failed, 0 skipped (1 packages, 0 failed)", true, "=== RUN   TestA\n"},
		{"a failed test", `{"Action":"pass","Package":"p","Test":"TestA"}
{"Action":"fail","Package":"p","Test":"TestB"}
{"Action":"fail","Package":"p"}`, "tests: 1 passed, 1 failed, 0 skipped (1 packages, 1 failed)", false, ""},
		{"a skipped test", `{"Action":"pass","Package":"p","Test":"TestA"}
{"Action":"skip","Package":"p","Test":"TestB"}
{"Action":"pass","Package":"p"}`, "tests: 1 passed, 0 failed, 1 skipped (1 packages, 0 failed)", true, ""},
		{"a build failure", `{"Action":"pass","Package":"p","Test":"TestA"}
build error: undefined: x
{"Action":"fail","Package":"q"}`, "tests: 1 passed, 0 failed, 0 skipped (1 packages, 1 failed)", false, "build error: undefined: x\n"},
		{"nothing ran", `{"Action":"skip","Package":"p"}`, "tests: 0 passed, 0 failed, 0 skipped (1 packages, 0 failed)", false, ""},
		{"empty input", ``, "tests: 0 passed, 0 failed, 0 skipped (0 packages, 0 failed)", false, ""},
		{"go test -v text", "=== RUN   TestA\n--- PASS: TestA (0.00s)\n    --- SKIP: TestA/sub (0.00s)\nPASS\nok  \tgithub.com/x/p\t0.012s\n?   \tgithub.com/x/q\t[no test files]\n",
			"tests: 1 passed, 0 failed, 1 skipped (1 packages, 0 failed)", true,
			"=== RUN   TestA\n--- PASS: TestA (0.00s)\n    --- SKIP: TestA/sub (0.00s)\nPASS\nok  \tgithub.com/x/p\t0.012s\n?   \tgithub.com/x/q\t[no test files]\n"},
		{"go test -v text with a failure", "--- FAIL: TestB (0.01s)\nFAIL\nFAIL\tgithub.com/x/p\t0.020s\nFAIL\tgithub.com/x/r [build failed]\n",
			"tests: 0 passed, 1 failed, 0 skipped (2 packages, 2 failed)", false,
			"--- FAIL: TestB (0.01s)\nFAIL\nFAIL\tgithub.com/x/p\t0.020s\nFAIL\tgithub.com/x/r [build failed]\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			s, err := run(strings.NewReader(tc.input), &out)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(tc.line, s.countLine()+" (") {
				t.Fatalf("count line %q is not the start of %q", s.countLine(), tc.line)
			}
			if s.line() != tc.line || s.ok() != tc.ok {
				t.Fatalf("%q ok=%v, want %q ok=%v", s.line(), s.ok(), tc.line, tc.ok)
			}
			if out.String() != tc.output {
				t.Fatalf("output %q, want %q", out.String(), tc.output)
			}
		})
	}
}
