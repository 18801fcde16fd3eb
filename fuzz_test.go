package mcptoken

import "testing"

// FuzzParseCalls: any body is parsed or refused, never a panic; a parsed
// body yields at least one call.
func FuzzParseCalls(f *testing.F) {
	for _, seed := range []string{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deploy"}}`,
		`[{"method":"a"},{"method":"b","params":{"uri":"x"}}]`, `{"method":"a","method":"b"}`, `[]`, `{`, `"x"`, `{"params":[1,2]}`, ``} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		calls, _, err := parseCalls(body)
		if err == nil && len(calls) == 0 {
			t.Fatalf("no calls and no error for %q", body)
		}
	})
}
