package mcptoken

import (
	"crypto/rand"
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
	// accepted and refused are the ids of the requests sent with expect;
	// statuses counts their answers.
	accepted, refused []string
	statuses          map[int]int
}

// newFleet builds ./cmd/caddy and starts Redis (with a password, which no
// log may show) and the backend.
func newFleet(t *testing.T) *fleet {
	t.Helper()
	f := &fleet{bin: testpeers.BuildCaddy(t), secret: string(dpopSecret), password: "fleet-redis-password-7c1e9a", statuses: map[int]int{}}
	f.redis = testpeers.StartRedisServer(t, testpeers.RedisOptions{Password: f.password})
	f.backend = &recordingBackend{seen: map[string]bool{}, from: map[string]string{}}
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
	resp, id := f.post(t, inst, httpClient, toolsList, header)
	return resp.StatusCode, id
}

// post posts body to an instance through client (clientFrom: another
// source address) with the headers and a request id the backend records;
// it returns the response and the id.
func (f *fleet) post(t *testing.T, inst *testpeers.CaddyProcess, client *http.Client, body string, header map[string]string) (*http.Response, string) {
	t.Helper()
	id := fmt.Sprintf("%s-%d", inst.Name, f.ids.Add(1))
	h := map[string]string{"X-Fleet-Request": id}
	for k, v := range header {
		h[k] = v
	}
	resp, _ := do(t, client, "POST", inst.BaseURL()+"/mcp", body, h)
	return resp, id
}

// token is an HS256 access token for fleetResource, bound to jkt unless
// it is empty.
func (f *fleet) token(t *testing.T, jkt string) string {
	t.Helper()
	claims := jwt.MapClaims{"sub": "s1", "client_id": "c1"}
	if jkt != "" {
		claims["cnf"] = map[string]any{"jkt": jkt}
	}
	return f.sign(t, f.secret, claims)
}

// userToken is a new token for sub: its own jti makes it a token no
// instance has cached yet, so it meets the failed-attempt limiter.
func (f *fleet) userToken(t *testing.T, sub string) string {
	t.Helper()
	return f.sign(t, f.secret, jwt.MapClaims{"sub": sub, "client_id": "c1", "jti": fmt.Sprintf("fleet-%d", f.ids.Add(1))})
}

// badToken is a token signed with another key: a failed attempt.
func (f *fleet) badToken(t *testing.T) string {
	t.Helper()
	return f.sign(t, "not-the-fleet-secret-0f3d", jwt.MapClaims{"sub": "mallory", "jti": fmt.Sprintf("fleet-%d", f.ids.Add(1))})
}

// sign signs claims (plus aud and exp) with HS256 under key.
func (f *fleet) sign(t *testing.T, key string, claims jwt.MapClaims) string {
	t.Helper()
	claims["aud"], claims["exp"] = fleetResource, time.Now().Add(time.Hour).Unix()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString([]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	remember(s)
	return s
}

// recordingBackend answers 200 and records the X-Fleet-Request of every
// request that reached it, with the X-Forwarded-For Caddy set (the client
// address the gateway saw). It answers initialize with a new
// Mcp-Session-Id, as a stateful MCP server does.
type recordingBackend struct {
	mu   sync.Mutex
	seen map[string]bool
	from map[string]string
}

func (b *recordingBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	b.mu.Lock()
	id := r.Header.Get("X-Fleet-Request")
	b.seen[id], b.from[id] = true, r.Header.Get("X-Forwarded-For")
	if strings.Contains(string(body), `"method":"initialize"`) {
		w.Header().Set(sessionHeader, "fleet-session-"+rand.Text())
	}
	b.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"jsonrpc":"2.0","id":1,"result":{"tools":[]}}`)
}

func (b *recordingBackend) reached(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.seen[id]
}

// forwardedFor is the client address the gateway reported for a request
// that reached the backend.
func (b *recordingBackend) forwardedFor(id string) string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.from[id]
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
	f.statuses[status]++
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

// TestE2EFleet (issue 14, must-show 4): two Caddy processes on one Redis,
// both with rate_limit 4 60s and bind_sessions.
//  1. A DPoP proof accepted by A is refused by B as a replay.
//  2. Failed attempts add up: 2 at A and 2 at B from one address, and a
//     new valid token from it gets 429 with Retry-After at both; a token A
//     has cached is still served at A; another address is not limited.
//     A session alice opened at A is refused at B for bob (404, before the
//     backend) and served at B for alice.
//  3. Redis killed: DPoP requests get 503 at both; bearer tokens (new ones
//     too, which meet the limiter) keep working; session bindings answer
//     from memory (bob still refused at both), limits count per instance;
//     a WARN for each kind in each log.
//  4. Redis back on the same port: DPoP works again, replays are refused
//     again, a session opened at B is refused at A for bob, failures at
//     both add up again; each log has the recovery INFO lines.
//  5. No refused request reached the backend, and neither log holds a
//     token, secret or session id (the Redis password included).
func TestE2EFleet(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: builds Caddy and runs two processes")
	}
	f := newFleet(t)
	a, b := f.start(t, "A", fleetExtra), f.start(t, "B", fleetExtra)
	both := []*testpeers.CaddyProcess{a, b}
	client := newDPoPClient(t)
	bound, plain := f.token(t, client.jkt), f.token(t, "")
	alice, bob := f.userToken(t, "alice"), f.userToken(t, "bob")
	dpop := func(proof string) map[string]string {
		return map[string]string{"Authorization": "DPoP " + bound, "DPoP": proof}
	}
	fresh := func() map[string]string { return dpop(client.proof(t, "POST", fleetResource, bound)) }
	// replayedAt sends a proof inst's peer accepted and checks that inst
	// refused it as a replay (its log's reason), not for another reason.
	replayedAt := func(inst *testpeers.CaddyProcess, proof, what string) {
		t.Helper()
		before := inst.CountLog(`"reason":"dpop_replay"`)
		f.expect(t, inst, dpop(proof), 401, what)
		deadline := time.Now().Add(30 * time.Second)
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

	// 2. One limit and one set of session bindings across the fleet.
	f.limitsAddUp(t, a, b, "127.0.0.3", "127.0.0.2")
	session := f.openSession(t, a, alice)
	f.sessionOwned(t, b, session, alice, bob, "opened at A")

	// 3. Redis down: replay checks fail closed, bearer tokens still pass,
	// limits and sessions answer from memory.
	f.redis.Stop()
	for _, inst := range both {
		f.expect(t, inst, fresh(), 503, "a fresh proof with Redis down")
		f.expect(t, inst, bearerOf(plain), 200, "a new bearer token with Redis down")
		f.sessionOwned(t, inst, session, alice, bob, "with Redis down")
	}
	f.limitsInMemory(t, a, b, "127.0.0.4")
	for _, kind := range []string{"mcp_token redis store failed", "mcp_token redis store (failed-attempt limits) failed", "mcp_token redis store (session bindings) failed"} {
		waitLogs(t, "WARN "+kind, both, `"level":"warn"`, kind)
	}

	// 4. Redis back on the same port: DPoP works again (go-redis dials
	// anew on its own; answers are 503 until it has), replays refused,
	// limits and sessions shared again.
	f.redis.Restart(t)
	for _, inst := range both {
		deadline := time.Now().Add(60 * time.Second)
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
	}
	proof = client.proof(t, "POST", fleetResource, bound)
	f.expect(t, b, dpop(proof), 200, "a fresh proof after the restart")
	replayedAt(a, proof, "the proof B accepted after the restart")
	f.sessionOwned(t, a, f.openSession(t, b, alice), alice, bob, "opened at B after the restart")
	f.limitsAddUp(t, a, b, "127.0.0.5", "127.0.0.6")
	for _, kind := range []string{"mcp_token redis store recovered", "mcp_token redis store (failed-attempt limits) recovered", "mcp_token redis store (session bindings) recovered"} {
		waitLogs(t, "INFO "+kind, both, `"level":"info"`, kind)
	}

	// 5. The backend saw exactly the accepted requests; no log leaks.
	t.Logf("%d requests accepted, %d refused (answers %v); %d and %d WARN lines, replays refused: A %d, B %d",
		len(f.accepted), len(f.refused), f.statuses, a.CountLog(`"level":"warn"`, "mcp_token redis store"),
		b.CountLog(`"level":"warn"`, "mcp_token redis store"), a.CountLog(`"reason":"dpop_replay"`), b.CountLog(`"reason":"dpop_replay"`))
	f.checkBackend(t)
	f.checkLogs(t, a, b)
}
