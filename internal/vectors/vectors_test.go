package vectors

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLoadWycheproofRefusesEmptyFiles: the vector tests cannot pass on a
// file that holds no vectors.
func TestLoadWycheproofRefusesEmptyFiles(t *testing.T) {
	cases := []struct{ name, content, want string }{
		{"empty object", `{}`, "no test vectors (0 groups)"},
		{"groups without tests", `{"testGroups":[{"comment":"x","tests":[]}]}`, "no test vectors (1 groups)"},
		{"empty file", ``, "unexpected end of JSON input"},
		{"truncated file", `{"testGroups":[{"tests":[{"tcId":1,`, "unexpected end of JSON input"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := loadFrom(t, tc.content); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	w, err := loadFrom(t, `{"testGroups":[{"tests":[{"tcId":1,"jws":"a.b.c","result":"valid"}]}]}`)
	if err != nil || len(w.TestGroups) != 1 || w.TestGroups[0].Tests[0].TcID != 1 {
		t.Fatalf("one vector: %+v %v", w, err)
	}
}

// TestShippedVectorFilesLoad: the files the tests use are there and hold vectors.
func TestShippedVectorFilesLoad(t *testing.T) {
	for _, name := range []string{"json_web_signature_test.json", "json_web_key_test.json"} {
		w, err := LoadWycheproof(name)
		if err != nil {
			t.Fatal(err)
		}
		if len(w.TestGroups) < 5 {
			t.Fatalf("%s: only %d groups", name, len(w.TestGroups))
		}
	}
}

func loadFrom(t *testing.T, content string) (*Wycheproof, error) {
	t.Helper()
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "wycheproof"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "wycheproof", "x.json"), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return loadWycheproofFrom(dir, "x.json")
}
