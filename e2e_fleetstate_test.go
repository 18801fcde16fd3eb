package mcptoken

import (
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/mcptoken/caddy-mcp-token/internal/testpeers"
)

// The fleet's failed-attempt limits and session bindings (issue 14,
// must-show 4: "failed attempts against both add up to one limit"): the
// steps TestE2EFleet runs with fleetExtra at both instances.

// fleetExtra are the mcp_token lines of every instance: the same
// settings, so that their limiters count under one Redis namespace.
// Sessions are bound by default; the line says it.
const fleetExtra = "rate_limit 4 60s\n\t\tbind_sessions on"

// fleetLimit is fleetExtra's rate_limit: attempts, window.
const (
	fleetLimit  = 4
	fleetWindow = 60 * time.Second
)

// fleetInitialize opens an MCP session (the backend answers it with an
// Mcp-Session-Id).
const fleetInitialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"fleet","version":"1"}}}`

func bearerOf(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token}
}

// expectFrom is expect through client (clientFrom: another source
// address) with any body; it returns the response and the request's id.
func (f *fleet) expectFrom(t *testing.T, inst *testpeers.CaddyProcess, client *http.Client, body string, header map[string]string, want int, what string) (*http.Response, string) {
	t.Helper()
	resp, id := f.post(t, inst, client, body, header)
	if resp.StatusCode != want {
		t.Fatalf("%s at %s: %d, want %d\n%s", what, inst.Name, resp.StatusCode, want, inst.Logs())
	}
	f.record(id, resp.StatusCode)
	return resp, id
}

// from checks that the gateway saw the request id as coming from addr
// (the X-Forwarded-For Caddy gave the backend: the client address the
// limiter counts under, clientAddress in gate.go).
func (f *fleet) from(t *testing.T, id, addr string) {
	t.Helper()
	if got := f.backend.forwardedFor(id); got != addr {
		t.Fatalf("request %s sent from %s reached the backend from %q: the limiter would not tell the clients apart", id, addr, got)
	}
}

// fail sends a token signed with another key from client to each of
// insts in turn: one failed attempt each (401).
func (f *fleet) fail(t *testing.T, client *http.Client, insts ...*testpeers.CaddyProcess) {
	t.Helper()
	for _, inst := range insts {
		f.expectFrom(t, inst, client, toolsList, bearerOf(f.badToken(t)), http.StatusUnauthorized, "a token signed with another key")
	}
}

// limited checks that a valid token no instance has cached, sent from
// client, gets 429 with a Retry-After within the window at each of insts.
func (f *fleet) limited(t *testing.T, client *http.Client, what string, insts ...*testpeers.CaddyProcess) {
	t.Helper()
	for _, inst := range insts {
		resp, _ := f.expectFrom(t, inst, client, toolsList, bearerOf(f.userToken(t, "erin")), http.StatusTooManyRequests, what)
		retry, err := strconv.Atoi(resp.Header.Get("Retry-After"))
		if err != nil || retry < 1 || retry > int(fleetWindow/time.Second) {
			t.Fatalf("%s at %s: Retry-After %q, want 1..%d", what, inst.Name, resp.Header.Get("Retry-After"), int(fleetWindow/time.Second))
		}
	}
}

// notLimited checks that a valid token no instance has cached, sent from
// client (whose address is addr), is served at each of insts.
func (f *fleet) notLimited(t *testing.T, client *http.Client, addr, what string, insts ...*testpeers.CaddyProcess) {
	t.Helper()
	for _, inst := range insts {
		_, id := f.expectFrom(t, inst, client, toolsList, bearerOf(f.userToken(t, "dave")), http.StatusOK, what)
		f.from(t, id, addr)
	}
}

// limitsAddUp: failed attempts from one address add up across the
// fleet. With a token A has cached, addr fails twice at A and twice at B
// (each instance alone stays under fleetLimit); then a new valid token
// from addr gets 429 at both, the cached token is still served at A
// (cached tokens skip the limiter), and another address, other, is not
// limited at either.
func (f *fleet) limitsAddUp(t *testing.T, a, b *testpeers.CaddyProcess, addr, other string) {
	t.Helper()
	client := clientFrom(addr)
	cached := f.userToken(t, "carol")
	_, id := f.expectFrom(t, a, client, toolsList, bearerOf(cached), http.StatusOK, "a valid token before the failures")
	f.from(t, id, addr)
	f.fail(t, client, a, b, a, b) // fleetLimit failures, half at each
	f.limited(t, client, "a new valid token after 2+2 failures", a, b)
	f.expectFrom(t, a, client, toolsList, bearerOf(cached), http.StatusOK, "the token A cached, from the limited address")
	f.notLimited(t, clientFrom(other), other, "a new valid token from another address", a, b)
}

// limitsInMemory: with Redis down each instance counts alone. addr fails
// twice at A and twice at B: a new token from addr is still served at A;
// two more failures at A and A limits addr from its own memory.
func (f *fleet) limitsInMemory(t *testing.T, a, b *testpeers.CaddyProcess, addr string) {
	t.Helper()
	client := clientFrom(addr)
	f.fail(t, client, a, b, a, b)
	f.notLimited(t, client, addr, "a new valid token after 2+2 failures with Redis down (per instance meanwhile)", a)
	f.fail(t, client, a, a)
	f.limited(t, client, "a new valid token after 4 failures at A with Redis down", a)
}

// openSession sends initialize for alice's token to inst; the backend's
// Mcp-Session-Id binds the session to alice. It returns the session id.
func (f *fleet) openSession(t *testing.T, inst *testpeers.CaddyProcess, alice string) string {
	t.Helper()
	resp, _ := f.expectFrom(t, inst, httpClient, fleetInitialize, bearerOf(alice), http.StatusOK, "alice's initialize")
	session := resp.Header.Get(sessionHeader)
	if session == "" {
		t.Fatalf("no %s in the answer to initialize at %s", sessionHeader, inst.Name)
	}
	return session
}

// sessionOwned checks at inst that bob's request with alice's session is
// refused as an unknown session (404, before the backend) and alice's is
// served.
func (f *fleet) sessionOwned(t *testing.T, inst *testpeers.CaddyProcess, session, alice, bob, what string) {
	t.Helper()
	with := func(token string) map[string]string {
		return map[string]string{"Authorization": "Bearer " + token, sessionHeader: session}
	}
	_, id := f.expectFrom(t, inst, httpClient, toolsList, with(bob), http.StatusNotFound, "bob with alice's session "+what)
	if f.backend.reached(id) {
		t.Fatalf("bob's request with alice's session reached the backend through %s", inst.Name)
	}
	f.expectFrom(t, inst, httpClient, toolsList, with(alice), http.StatusOK, "alice with her session "+what)
}

// waitLogs waits for a log line holding every one of parts in each
// instance's log.
func waitLogs(t *testing.T, what string, insts []*testpeers.CaddyProcess, parts ...string) {
	t.Helper()
	for _, inst := range insts {
		if !inst.WaitLog(30*time.Second, parts...) {
			t.Fatalf("no %s in %s's log:\n%s", what, inst.Name, inst.Logs())
		}
	}
}
