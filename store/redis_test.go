package store_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/redis/go-redis/v9"

	"github.com/mcptoken/caddy-mcp-token/internal/testpeers"
	"github.com/mcptoken/caddy-mcp-token/store"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

func startRedis(t testing.TB) (string, func()) { return testpeers.StartRedis(t) }

func newRedis(t testing.TB, url string, now func() time.Time) *store.Redis {
	t.Helper()
	s, err := store.NewRedis(url, store.RedisOptions{Now: now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestRedisSeen: SET NX PX semantics, shared by every client of the server.
func TestRedisSeen(t *testing.T) {
	url, _ := startRedis(t)
	a, b := newRedis(t, url, nil), newRedis(t, url, nil)
	ctx := context.Background()
	until := time.Now().Add(time.Minute)
	for _, step := range []struct {
		name string
		s    *store.Redis
		key  string
		seen bool
	}{
		{"first at instance A", a, "k1", false},
		{"again at instance B", b, "k1", true},
		{"again at instance A", a, "k1", true},
		{"another key at B", b, "k2", false},
	} {
		seen, err := step.s.Seen(ctx, step.key, until)
		if err != nil || seen != step.seen {
			t.Fatalf("%s: seen %v, %v; want %v", step.name, seen, err, step.seen)
		}
	}
	// An entry expires at its time.
	if seen, err := a.Seen(ctx, "short", time.Now().Add(50*time.Millisecond)); err != nil || seen {
		t.Fatalf("short: %v %v", seen, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		seen, err := b.Seen(ctx, "short", time.Now().Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if !seen {
			break // expired, then recorded again
		}
		if time.Now().After(deadline) {
			t.Fatal("entry did not expire")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// proof signs a DPoP proof with k for the given jti.
func proof(t testing.TB, k *ecdsa.PrivateKey, jti, token string) (string, string) {
	enc := base64.RawURLEncoding.EncodeToString
	jwk := map[string]any{"kty": "EC", "crv": "P-256", "x": enc(k.X.FillBytes(make([]byte, 32))), "y": enc(k.Y.FillBytes(make([]byte, 32)))}
	raw, _ := json.Marshal(jwk)
	jkt, err := verifiers.JWKThumbprint(raw)
	if err != nil {
		t.Fatal(err)
	}
	ath := sha256.Sum256([]byte(token))
	tok := jwt.NewWithClaims(jwt.SigningMethodES256, jwt.MapClaims{
		"jti": jti, "htm": "POST", "htu": "https://mcp.example.com/mcp", "iat": time.Now().Unix(), "ath": enc(ath[:])})
	tok.Header["typ"], tok.Header["jwk"] = "dpop+jwt", jwk
	s, err := tok.SignedString(k)
	if err != nil {
		t.Fatal(err)
	}
	return s, jkt
}

// TestRedisReplayAcrossInstances: two gateway cores (two DPoP checkers,
// each with its own Redis client) share the replay cache: a proof
// accepted by one is refused by the other; with Redis down the check is
// unavailable (503), never a pass.
func TestRedisReplayAcrossInstances(t *testing.T) {
	url, stopRedis := startRedis(t)
	checker := func() *verifiers.DPoPChecker {
		c, err := verifiers.NewDPoPChecker(verifiers.DPoPOptions{Replay: newRedis(t, url, nil)})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	first, second := checker(), checker()
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	const token = "access-token"
	check := func(c *verifiers.DPoPChecker, p, jkt string) error {
		_, err := c.Check(context.Background(), verifiers.DPoPRequest{
			Proofs: []string{p}, Method: "POST", URL: "https://mcp.example.com/mcp", AccessToken: token, JKT: jkt})
		return err
	}
	p, jkt := proof(t, k, "jti-1", token)
	if err := check(first, p, jkt); err != nil {
		t.Fatalf("first instance: %v", err)
	}
	if err := check(second, p, jkt); !errors.Is(err, verifiers.ErrProofReplayed) {
		t.Fatalf("replay at the second instance: %v", err)
	}
	p2, _ := proof(t, k, "jti-2", token)
	if err := check(second, p2, jkt); err != nil {
		t.Fatalf("a fresh proof at the second instance: %v", err)
	}
	stopRedis()
	p3, _ := proof(t, k, "jti-3", token)
	err := check(first, p3, jkt)
	if out := verifiers.Classify(err); !errors.Is(err, verifiers.ErrUnavailable) || out.Status != 503 {
		t.Fatalf("Redis down: %v (%+v), want 503", err, out)
	}
}

// BenchmarkReplayCache: one Seen call, memory vs Redis (loopback).
func BenchmarkReplayCache(b *testing.B) {
	url, _ := startRedis(b)
	caches := []struct {
		name  string
		cache verifiers.ReplayCache
	}{
		{"memory", verifiers.NewMemoryReplayCache(0, nil)},
		{"redis", newRedis(b, url, nil)},
	}
	for _, c := range caches {
		b.Run(c.name, func(b *testing.B) {
			until := time.Now().Add(time.Minute)
			for i := 0; i < b.N; i++ {
				if _, err := c.cache.Seen(context.Background(), strconv.Itoa(i), until); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestRedisURLPasswordNeverInErrors: a URL that does not parse is refused
// without quoting its password.
func TestRedisURLPasswordNeverInErrors(t *testing.T) {
	for _, u := range []string{
		"redis://user:s3cr3t-pass@127.0.0.1:notaport/0",
		"redis://user:s3cr3t-pass@127.0.0.1:6379/notadb",
		"redis://user:s3cr3t-pass@127.0.0.1:6379/0?dial_timeout=soon",
		"http://user:s3cr3t-pass@127.0.0.1:6379/0",
		"redis://user:s3cr3t-pass@[::1/0",
		"redis://:Xk9/s3cr3t+pQ@127.0.0.1:6379/0",   // a '/' in the password ends the host early
		"redis://:s3cr3t/Xk9@127.0.0.1:6379/0",      // its first piece read as a port
		"redis://:Xk9%zzs3cr3t@127.0.0.1:6379/0",    // a bad escape
		"redis://:6379/s3cr3t@127.0.0.1:6379/0",     // the rest read as the database
		"redis://:s3cr3t@127.0.0.1:6379/0?x=s3cr3t", // an unknown option
	} {
		_, err := store.NewRedis(u, store.RedisOptions{})
		if err == nil {
			t.Errorf("%q: accepted", u)
			continue
		}
		for _, piece := range []string{"s3cr3t", "Xk9", "%zz"} {
			if strings.Contains(err.Error(), piece) {
				t.Errorf("%q: %v", u, err)
			}
		}
	}
}

// TestRedisFullRefusesReplayChecks: a full Redis under noeviction answers
// SET with an OOM error reply: a DPoP proof is refused as unavailable
// (503), never passed, at every call (the reply, an answer, pauses
// nothing).
func TestRedisFullRefusesReplayChecks(t *testing.T) {
	srv := testpeers.StartRedisServer(t)
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr})
	t.Cleanup(func() { _ = admin.Close() })
	checker, err := verifiers.NewDPoPChecker(verifiers.DPoPOptions{Replay: newRedis(t, srv.URL, nil)})
	if err != nil {
		t.Fatal(err)
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	const token = "access-token"
	check := func(jti string) error {
		p, jkt := proof(t, k, jti, token)
		_, err := checker.Check(context.Background(), verifiers.DPoPRequest{
			Proofs: []string{p}, Method: "POST", URL: "https://mcp.example.com/mcp", AccessToken: token, JKT: jkt})
		return err
	}
	if err := check("before"); err != nil {
		t.Fatal(err)
	}
	// A limit below the memory already used: every write is refused.
	ctx := context.Background()
	for _, kv := range [][2]string{{"maxmemory-policy", "noeviction"}, {"maxmemory", "1"}} {
		if err := admin.ConfigSet(ctx, kv[0], kv[1]).Err(); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		err := check("full-" + strconv.Itoa(i))
		if out := verifiers.Classify(err); !errors.Is(err, verifiers.ErrUnavailable) || out.Status != 503 || !strings.Contains(err.Error(), "OOM") {
			t.Fatalf("full Redis, proof %d: %v (%+v), want 503 for an OOM reply", i, err, out)
		}
	}
}
