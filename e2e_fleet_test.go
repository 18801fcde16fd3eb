package mcptoken

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcptoken/caddy-mcp-token/internal/testpeers"
)

// The fleet harness: gateways as real Caddy processes (testpeers.StartCaddy)
// sharing one redis-server, in front of one recording backend. Extend a
// fleet test with more mcp_token lines per instance (fleet.start's extra:
// rate_limit, bind_sessions, ...).

// fleetResource is the one public URL of every instance (the name a load
// balancer would serve), so a proof made for one instance is valid at
// every other but for its jti.
const fleetResource = "http://mcp.fleet.test/mcp"

// fleet is one redis-server, a recording backend and the built Caddy.
type fleet struct {
	bin      string
	redis    *testpeers.Redis
	backend  *recordingBackend
	addr     string // the backend's host:port
	secret   string // the HS256 key of the tokens
	password string // Redis's
	ids      atomic.Int64
	// accepted and refused are the ids of the requests sent with expect.
	accepted, refused []string
}

// newFleet builds ./cmd/caddy and starts Redis (with a password, which no
// log may show) and the backend.
func newFleet(t *testing.T) *fleet {
	t.Helper()
	f := &fleet{bin: testpeers.BuildCaddy(t), secret: string(dpopSecret), password: "fleet-redis-password-7c1e9a"}
	f.redis = testpeers.StartRedisServer(t, testpeers.RedisOptions{Password: f.password})
	f.backend = &recordingBackend{seen: map[string]bool{}}
	srv := httptest.NewServer(f.backend)
	t.Cleanup(srv.Close)
	f.addr = strings.TrimPrefix(srv.URL, "http://")
	remember(f.secret, f.password, f.redis.URL)
	return f
}

// start starts one gateway: mcp_token on /mcp* (HS256 tokens, resource
// fleetResource, dpop allowed) with the fleet's Redis as the global store,
// plus the extra mcp_token lines.
func (f *fleet) start(t *testing.T, name, extra string) *testpeers.CaddyProcess {
	t.Helper()
	return testpeers.StartCaddy(t, f.bin, testpeers.CaddyOptions{
		Name:   name,
		Global: "\tmcp_token {\n\t\tstore redis {env.MCP_FLEET_REDIS_URL}\n\t}",
		Env:    []string{"MCP_FLEET_REDIS_URL=" + f.redis.URL, "MCP_FLEET_SECRET=" + f.secret},
		Sites: func(port int) string {
			return fmt.Sprintf(`
http://:%d {
	bind 127.0.0.1
	mcp_token /mcp* {
		hmac_secret {env.MCP_FLEET_SECRET}
		resource %s
		authorization_servers https://as.example.com
		%s
	}
	handle /mcp* {
		reverse_proxy %s
	}
}
`, port, fleetResource, extra, f.addr)
		},
	})
}

// send posts tools/list to an instance with the headers and a request id
// the backend records; it returns the status and the id.
func (f *fleet) send(t *testing.T, inst *testpeers.CaddyProcess, header map[string]string) (int, string) {
	t.Helper()
	id := fmt.Sprintf("%s-%d", inst.Name, f.ids.Add(1))
	h := map[string]string{"X-Fleet-Request": id}
	for k, v := range header {
		h[k] = v
	}
	resp, _ := do(t, httpClient, "POST", inst.BaseURL()+"/mcp", toolsList, h)
	return resp.StatusCode, id
}

// token is an HS256 access token for fleetResource, bound to jkt unless
// it is empty.
func (f *fleet) token(t *testing.T, jkt string) string {
	t.Helper()
	claims := jwt.MapClaims{"sub": "s1", "client_id": "c1", "aud": fleetResource, "exp": time.Now().Add(time.Hour).Unix()}
	if jkt != "" {
		claims["cnf"] = map[string]any{"jkt": jkt}
	}
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(f.secret))
	if err != nil {
		t.Fatal(err)
	}
	remember(s)
	return s
}

// recordingBackend answers 200 and records the X-Fleet-Request of every
// request that reached it.
type recordingBackend struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (b *recordingBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, r.Body)
	b.mu.Lock()
	b.seen[r.Header.Get("X-Fleet-Request")] = true
	b.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}`)
}

func (b *recordingBackend) reached(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seen[id]
}

// expect sends a request to inst and fails the test unless it gets want;
// it remembers the request as accepted (200) or refused, for checkBackend.
func (f *fleet) expect(t *testing.T, inst *testpeers.CaddyProcess, header map[string]string, want int, what string) {
	t.Helper()
	status, id := f.send(t, inst, header)
	if status != want {
		t.Fatalf("%s at %s: %d, want %d\n%s", what, inst.Name, status, want, inst.Logs())
	}
	f.record(id, status)
}

func (f *fleet) record(id string, status int) {
	if status == http.StatusOK {
		f.accepted = append(f.accepted, id)
	} else {
		f.refused = append(f.refused, id)
	}
}

// checkBackend: every accepted request reached the backend, no refused one.
func (f *fleet) checkBackend(t *testing.T) {
	t.Helper()
	for _, id := range f.accepted {
		if !f.backend.reached(id) {
			t.Errorf("accepted request %s never reached the backend", id)
		}
	}
	for _, id := range f.refused {
		if f.backend.reached(id) {
			t.Errorf("refused request %s reached the backend", id)
		}
	}
}

// checkLogs stops the instances and scans their logs and output for
// tokens and secrets (leak_test.go's scanner).
func (f *fleet) checkLogs(t *testing.T, insts ...*testpeers.CaddyProcess) {
	t.Helper()
	for _, inst := range insts {
		inst.Stop()
		if err := checkLogFile(inst.LogFile, true, false); err != nil {
			t.Errorf("%s's log: %v", inst.Name, err)
		}
		if err := checkLogFile(inst.OutputFile, false, false); err != nil {
			t.Errorf("%s's output: %v", inst.Name, err)
		}
	}
}

// TestE2EFleet (issue 14, must-show 4): two Caddy processes on one Redis.
// A DPoP proof accepted by A is refused by B as a replay. Redis killed:
// DPoP requests get 503 at both while bearer tokens keep working, with a
// WARN in each log. Redis back on the same port: DPoP works again,
// replays are refused again, and each log has the recovery INFO. No
// refused request reaches the backend, and neither log holds a token or
// secret (the Redis password included).
func TestE2EFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds Caddy and runs two processes")
	}
	f := newFleet(t)
	a, b := f.start(t, "A", ""), f.start(t, "B", "")
	both := []*testpeers.CaddyProcess{a, b}
	client := newDPoPClient(t)
	bound, plain := f.token(t, client.jkt), f.token(t, "")
	dpop := func(proof string) map[string]string {
		return map[string]string{"Authorization": "DPoP " + bound, "DPoP": proof}
	}
	fresh := func() map[string]string { return dpop(client.proof(t, "POST", fleetResource, bound)) }
	bearer := map[string]string{"Authorization": "Bearer " + plain}
	// replayedAt sends a proof inst's peer accepted and checks that inst
	// refused it as a replay (its log's reason), not for another reason.
	replayedAt := func(inst *testpeers.CaddyProcess, proof, what string) {
		t.Helper()
		before := inst.CountLog(`"reason":"dpop_replay"`)
		f.expect(t, inst, dpop(proof), 401, what)
		deadline := time.Now().Add(5 * time.Second)
		for inst.CountLog(`"reason":"dpop_replay"`) != before+1 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s not refused as a replay:\n%s", inst.Name, what, inst.Logs())
			}
			time.Sleep(50 * time.Millisecond) // the log line, bounded by the deadline
		}
	}

	// 1. One proof, once across the fleet.
	proof := client.proof(t, "POST", fleetResource, bound)
	f.expect(t, a, dpop(proof), 200, "a fresh proof")
	replayedAt(b, proof, "the proof A accepted")
	f.expect(t, b, fresh(), 200, "a fresh proof")

	// 2. Redis down: replay checks fail closed, bearer tokens still pass.
	f.redis.Stop()
	for _, inst := range both {
		f.expect(t, inst, fresh(), 503, "a fresh proof with Redis down")
		f.expect(t, inst, bearer, 200, "a bearer token with Redis down")
		if !inst.WaitLog(5*time.Second, `"level":"warn"`, "mcp_token redis store failed") {
			t.Fatalf("no WARN for the Redis outage in %s's log:\n%s", inst.Name, inst.Logs())
		}
	}

	// 3. Redis back on the same port: DPoP works again (go-redis dials
	// anew on its own; answers are 503 until it has), replays refused.
	f.redis.Restart(t)
	for _, inst := range both {
		deadline := time.Now().Add(10 * time.Second)
		for {
			status, id := f.send(t, inst, fresh())
			f.record(id, status)
			if status == http.StatusOK {
				break
			}
			if status != http.StatusServiceUnavailable || time.Now().After(deadline) {
				t.Fatalf("%s after Redis's restart: %d\n%s", inst.Name, status, inst.Logs())
			}
			time.Sleep(100 * time.Millisecond) // retry, bounded by the deadline
		}
		if !inst.WaitLog(10*time.Second, `"level":"info"`, "mcp_token redis store recovered") {
			t.Fatalf("no recovery INFO in %s's log:\n%s", inst.Name, inst.Logs())
		}
	}
	proof = client.proof(t, "POST", fleetResource, bound)
	f.expect(t, b, dpop(proof), 200, "a fresh proof after the restart")
	replayedAt(a, proof, "the proof B accepted after the restart")

	// 4. The backend saw exactly the accepted requests; 5. no log leaks.
	t.Logf("%d requests accepted, %d refused; %d and %d WARN lines, replays refused: A %d, B %d",
		len(f.accepted), len(f.refused), a.CountLog(`"level":"warn"`, "mcp_token redis store"),
		b.CountLog(`"level":"warn"`, "mcp_token redis store"), a.CountLog(`"reason":"dpop_replay"`), b.CountLog(`"reason":"dpop_replay"`))
	f.checkBackend(t)
	f.checkLogs(t, a, b)
}
