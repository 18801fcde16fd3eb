// Package vectors loads the Wycheproof test-vector files in
// testdata/vectors for the tests of several packages.
package vectors

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
)

// Dir is testdata/vectors in this repository.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "vectors")
}

// Wycheproof is the shape shared by the JWS and JWK test files: groups
// with a public and/or private key (or key set), each with tests.
type Wycheproof struct {
	TestGroups []struct {
		Comment string          `json:"comment"`
		Public  json.RawMessage `json:"public"`
		Private json.RawMessage `json:"private"`
		Tests   []struct {
			TcID    int    `json:"tcId"`
			Comment string `json:"comment"`
			JWS     string `json:"jws"`
			Result  string `json:"result"`
		} `json:"tests"`
	} `json:"testGroups"`
}

// LoadWycheproof reads wycheproof/<name>; a file without a single test
// vector is an error.
func LoadWycheproof(name string) (*Wycheproof, error) {
	return loadWycheproofFrom(Dir(), name)
}

func loadWycheproofFrom(dir, name string) (*Wycheproof, error) {
	data, err := os.ReadFile(filepath.Join(dir, "wycheproof", name))
	if err != nil {
		return nil, err
	}
	var w Wycheproof
	if err := json.Unmarshal(data, &w); err != nil {
		return nil, fmt.Errorf("wycheproof/%s: %w", name, err)
	}
	// An empty or truncated file must fail the tests, not pass them with
	// nothing checked.
	tests := 0
	for _, g := range w.TestGroups {
		tests += len(g.Tests)
	}
	if tests == 0 {
		return nil, fmt.Errorf("wycheproof/%s: no test vectors (%d groups)", name, len(w.TestGroups))
	}
	return &w, nil
}
