package mcptoken

import (
	"strings"
	"testing"

	"github.com/mcptoken/caddy-mcp-token/devtools"
)

// TestHeredocMarkerSurvivesAnyKey: Caddy's lexer ends a heredoc wherever
// its marker appears, even inside a line, so `public_key <<PEM` breaks on
// a key whose base64 happens to contain "PEM" (about one RSA key in 700).
// The documented marker, PEM_END, cannot occur in base64 (no underscore).
func TestHeredocMarkerSurvivesAnyKey(t *testing.T) {
	var pem string
	for i := 0; i < 200000 && pem == ""; i++ {
		kp, err := devtools.GenerateKey("ES256", 0, "k")
		if err != nil {
			t.Fatal(err)
		}
		p, err := kp.PublicPEM()
		if err != nil {
			t.Fatal(err)
		}
		body := strings.TrimSuffix(strings.TrimPrefix(p, "-----BEGIN PUBLIC KEY-----"), "-----END PUBLIC KEY-----\n")
		if strings.Contains(body, "PEM") {
			pem = p
		}
	}
	if pem == "" {
		t.Fatal("no P-256 key with PEM in its base64 in 200000 tries")
	}
	site := func(marker string) string {
		return "example.com {\n\tmcp_token {\n\t\tauthorization_servers https://as.example\n\t\tpublic_key <<" +
			marker + "\n" + pem + marker + "\n\t}\n}\n"
	}
	if _, err := adaptCaddyfile(t, site("PEM")); err == nil {
		t.Error("<<PEM adapted a key containing PEM: the lexer no longer ends heredocs mid-line; the README's advice can be relaxed")
	}
	out, err := adaptCaddyfile(t, site("PEM_END"))
	if err != nil {
		t.Fatalf("<<PEM_END: %v", err)
	}
	if !strings.Contains(out, `"public_key":"-----BEGIN PUBLIC KEY-----`) {
		t.Errorf("adapted config lacks the key:\n%s", out)
	}
}
