package mcptoken

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestReadmeShape keeps the README in the order a newcomer reads it and
// true to the code around it: the sections in order, the two commands
// first, every option of the syntax block in the table in the same order,
// every direct dependency explained, and the license file it names.
func TestReadmeShape(t *testing.T) {
	data, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(data)
	var sections []string
	for _, m := range regexp.MustCompile(`(?m)^## (.+)$`).FindAllStringSubmatch(readme, -1) {
		sections = append(sections, m[1])
	}
	want := []string{"Features", "Quick start", "Building", "A minimal Caddyfile", "Options", "MCP authorization",
		"JSON and the admin API", "Operating it", "Examples", "Troubleshooting", "Security", "Dependencies", "Development", "License"}
	last := -1
	for _, w := range want {
		i := slices.Index(sections, w)
		if i < 0 || i < last {
			t.Fatalf("section %q missing or out of order: %q", w, sections)
		}
		last = i
	}
	first := regexp.MustCompile("(?s)```sh\n(.*?)```").FindStringSubmatch(readme)
	if first == nil || !strings.Contains(first[1], "go run ./cmd/caddy mcp-demo") || !strings.Contains(first[1], "go test -count=1 -v ./...") {
		t.Fatalf("the first command block must run the product and the tests: %q", first)
	}

	opts := readme[strings.Index(readme, "## Options"):strings.Index(readme, "### Placeholders set for the backend")]
	start := strings.Index(opts, "mcp_token [<matcher>] {")
	block := opts[start : start+strings.Index(opts[start:], "\n```\n")]
	table := opts[strings.Index(opts, "| Option | Meaning |"):]
	at := func(name string) int { return strings.Index(table, "| `"+name) }
	lastRow := -1
	for _, line := range strings.Split(block, "\n")[1:] {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] == "}" || strings.HasPrefix(line, "        ") {
			continue // nested options are described in their block's row
		}
		name := f[0]
		i := at(name)
		if i < 0 {
			i = strings.Index(table, "`, `"+name+"`") // a row naming two options
		}
		if i < 0 {
			t.Errorf("option %s has no row in the table", name)
			continue
		}
		if i < lastRow && name != "issuer" { // `issuer <iss> { }` has its own row at the end
			t.Errorf("option %s: the table is not in the syntax block's order", name)
		}
		lastRow = max(lastRow, i)
	}

	gomod, err := os.ReadFile("go.mod")
	if err != nil {
		t.Fatal(err)
	}
	deps := readme[strings.Index(readme, "## Dependencies"):strings.Index(readme, "## Development")]
	direct := regexp.MustCompile(`(?s)require \((.*?)\)`).FindStringSubmatch(string(gomod))[1]
	for _, line := range strings.Split(direct, "\n") {
		if f := strings.Fields(line); len(f) >= 2 && !strings.Contains(line, "// indirect") {
			if !strings.Contains(deps, "`"+f[0]+"`") && !strings.Contains(deps, "`"+f[0]+"` (") {
				t.Errorf("direct dependency %s is not explained in Dependencies", f[0])
			}
		}
	}
	if !strings.Contains(deps, "keyfunc/v3") {
		t.Error("Dependencies must say why keyfunc/v3 is not used")
	}
	license, err := os.ReadFile("LICENSE")
	if err != nil || !strings.Contains(string(license), "Apache License") || !strings.Contains(string(license), "Version 2.0") {
		t.Fatalf("LICENSE: %v", err)
	}
}
