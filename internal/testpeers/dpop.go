package testpeers

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"testing"
	"time"
)

// DPoPClientResult is what testdata/node/dpop-client.mjs reports.
type DPoPClientResult struct {
	// Token is the DPoP-bound access token the provider issued.
	Token string `json:"token"`
	// Key is the client's private proof key as a JWK (EC P-256), so a
	// test can sign proofs of its own with it.
	Key map[string]any `json:"key"`
	// Proofs are the DPoP headers sent to the resource, in order.
	Proofs []string `json:"proofs"`
	// Statuses are the resource's answers, in order.
	Statuses []int `json:"statuses"`
	// NonceRetry: the first answer was use_dpop_nonce and the client
	// retried with the nonce.
	NonceRetry bool   `json:"nonceRetry"`
	Body       string `json:"body"`
	Error      string `json:"error"`
}

// RunDPoPClient runs the oauth4webapi DPoP client: a DPoP-bound token by
// the client credentials grant at issuer for resource and scope, then body
// POSTed to resource with a proof (one retry on use_dpop_nonce).
func RunDPoPClient(t testing.TB, issuer, resource, scope, body string) DPoPClientResult {
	t.Helper()
	EnsureNode(t)
	cmd := exec.Command("node", "dpop-client.mjs", issuer, resource, scope, body)
	cmd.Dir = NodeDir()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	timer := time.AfterFunc(60*time.Second, func() {
		if cmd.Process != nil {
			_ = cmd.Process.Kill()
		}
	})
	defer timer.Stop()
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dpop-client.mjs: %v\n%s", err, stderr.String())
	}
	var res DPoPClientResult
	if err := json.Unmarshal(bytes.TrimSpace(out), &res); err != nil {
		t.Fatalf("dpop-client.mjs printed %q: %v\n%s", out, err, stderr.String())
	}
	return res
}
