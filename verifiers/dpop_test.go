package verifiers_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// dpopKey is a client's proof key: the private key and its public JWK.
type dpopKey struct {
	alg  string
	priv crypto.Signer
	jwk  map[string]any
}

func b64u(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func newECKey(t testing.TB) *dpopKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &dpopKey{alg: "ES256", priv: k, jwk: map[string]any{
		"kty": "EC", "crv": "P-256", "x": b64u(k.X.FillBytes(make([]byte, 32))), "y": b64u(k.Y.FillBytes(make([]byte, 32))),
	}}
}

func newEdKey(t testing.TB) *dpopKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &dpopKey{alg: "EdDSA", priv: priv, jwk: map[string]any{"kty": "OKP", "crv": "Ed25519", "x": b64u(pub)}}
}

func newRSAKey(t testing.TB) *dpopKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return &dpopKey{alg: "PS256", priv: k, jwk: map[string]any{
		"kty": "RSA", "n": b64u(k.N.Bytes()), "e": b64u([]byte{1, 0, 1}),
	}}
}

func (k *dpopKey) jkt(t testing.TB) string {
	t.Helper()
	raw, _ := json.Marshal(k.jwk)
	jkt, err := verifiers.JWKThumbprint(raw)
	if err != nil {
		t.Fatal(err)
	}
	return jkt
}

// proof signs a DPoP proof; edit changes its header and claims first.
func (k *dpopKey) proof(t testing.TB, claims jwt.MapClaims, edit func(hdr map[string]any)) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.GetSigningMethod(k.alg), claims)
	tok.Header["typ"] = "dpop+jwt"
	tok.Header["jwk"] = k.jwk
	if edit != nil {
		edit(tok.Header)
	}
	s, err := tok.SignedString(k.priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func athOf(token string) string {
	sum := sha256.Sum256([]byte(token))
	return b64u(sum[:])
}

const (
	dpopToken = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
	dpopURL   = "https://mcp.example.com/mcp"
)

var dpopNow = time.Unix(1_800_000_000, 0)

func proofClaims() jwt.MapClaims {
	return jwt.MapClaims{"jti": "e1j3V_bKic8-LAEB", "htm": "POST", "htu": dpopURL, "iat": dpopNow.Unix(), "ath": athOf(dpopToken)}
}

func newChecker(t testing.TB, opts verifiers.DPoPOptions) *verifiers.DPoPChecker {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return dpopNow }
	}
	c, err := verifiers.NewDPoPChecker(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestDPoPCheck: each check of RFC 9449 §4.3 and §7.1 refuses its own
// violation, and a proof that meets them all is accepted.
func TestDPoPCheck(t *testing.T) {
	ec, ed, rs, other := newECKey(t), newEdKey(t), newRSAKey(t), newECKey(t)
	with := func(name string, v any) jwt.MapClaims {
		c := proofClaims()
		if v == nil {
			delete(c, name)
		} else {
			c[name] = v
		}
		return c
	}
	tests := []struct {
		name    string
		key     *dpopKey
		proofs  func() []string
		method  string
		url     string
		jkt     string // default: key's
		algs    []string
		wantErr error
		detail  string
	}{
		{name: "ES256 proof accepted", key: ec},
		{name: "EdDSA proof accepted", key: ed},
		{name: "PS256 proof accepted", key: rs},
		{name: "no DPoP header", key: ec, proofs: func() []string { return nil }, wantErr: verifiers.ErrBadProof, detail: "0 DPoP headers"},
		{name: "two DPoP headers", key: ec, proofs: func() []string {
			p := ec.proof(t, proofClaims(), nil)
			return []string{p, p}
		}, wantErr: verifiers.ErrBadProof, detail: "2 DPoP headers"},
		{name: "two proofs in one header", key: ec, proofs: func() []string {
			p := ec.proof(t, proofClaims(), nil)
			return []string{p + ", " + p}
		}, wantErr: verifiers.ErrBadProof, detail: "not one compact JWS"},
		{name: "typ JWT", key: ec, proofs: func() []string {
			return []string{ec.proof(t, proofClaims(), func(h map[string]any) { h["typ"] = "JWT" })}
		}, wantErr: verifiers.ErrBadProof, detail: "typ"},
		{name: "alg off the allow-list", key: ed, algs: []string{"ES256"}, wantErr: verifiers.ErrBadProof, detail: "not accepted"},
		{name: "symmetric alg HS256", key: ec, proofs: func() []string {
			tok := jwt.NewWithClaims(jwt.SigningMethodHS256, proofClaims())
			tok.Header["typ"], tok.Header["jwk"] = "dpop+jwt", map[string]any{"kty": "oct", "k": "c2VjcmV0"}
			s, _ := tok.SignedString([]byte("secret"))
			return []string{s}
		}, wantErr: verifiers.ErrBadProof, detail: `alg "HS256" not accepted`},
		{name: "alg none", key: ec, proofs: func() []string {
			tok := jwt.NewWithClaims(jwt.SigningMethodNone, proofClaims())
			tok.Header["typ"], tok.Header["jwk"] = "dpop+jwt", ec.jwk
			s, _ := tok.SignedString(jwt.UnsafeAllowNoneSignatureType)
			return []string{s}
		}, wantErr: verifiers.ErrBadProof, detail: `alg "none" not accepted`},
		{name: "jwk with private member d", key: ec, proofs: func() []string {
			priv := ec.priv.(*ecdsa.PrivateKey)
			return []string{ec.proof(t, proofClaims(), func(h map[string]any) {
				jwk := map[string]any{"d": b64u(priv.D.FillBytes(make([]byte, 32)))}
				for k, v := range ec.jwk {
					jwk[k] = v
				}
				h["jwk"] = jwk
			})}
		}, wantErr: verifiers.ErrBadProof, detail: `private member "d"`},
		{name: "no jwk", key: ec, proofs: func() []string {
			return []string{ec.proof(t, proofClaims(), func(h map[string]any) { delete(h, "jwk") })}
		}, wantErr: verifiers.ErrBadProof, detail: "jwk"},
		{name: "jwk of another key type", key: ec, proofs: func() []string {
			return []string{ec.proof(t, proofClaims(), func(h map[string]any) { h["jwk"] = ed.jwk })}
		}, wantErr: verifiers.ErrBadProof, detail: "kty"},
		{name: "signed by another key", key: ec, proofs: func() []string {
			return []string{other.proof(t, proofClaims(), func(h map[string]any) { h["jwk"] = ec.jwk })}
		}, wantErr: verifiers.ErrBadProof, detail: "signature"},
		{name: "crit header", key: ec, proofs: func() []string {
			return []string{ec.proof(t, proofClaims(), func(h map[string]any) { h["crit"] = []string{"x"} })}
		}, wantErr: verifiers.ErrBadProof, detail: "crit"},
		{name: "no jti", key: ec, proofs: func() []string { return []string{ec.proof(t, with("jti", nil), nil)} }, wantErr: verifiers.ErrBadProof, detail: "missing"},
		{name: "no iat", key: ec, proofs: func() []string { return []string{ec.proof(t, with("iat", nil), nil)} }, wantErr: verifiers.ErrBadProof, detail: "missing"},
		{name: "no ath", key: ec, proofs: func() []string { return []string{ec.proof(t, with("ath", nil), nil)} }, wantErr: verifiers.ErrBadProof, detail: "missing"},
		{name: "htm of another method", key: ec, method: "GET", wantErr: verifiers.ErrBadProof, detail: "htm"},
		{name: "htm in lower case", key: ec, proofs: func() []string { return []string{ec.proof(t, with("htm", "post"), nil)} }, wantErr: verifiers.ErrBadProof, detail: "htm"},
		{name: "htu of another path", key: ec, url: "https://mcp.example.com/other", wantErr: verifiers.ErrBadProof, detail: "htu"},
		{name: "htu of another host", key: ec, url: "https://evil.example.com/mcp", wantErr: verifiers.ErrBadProof, detail: "htu"},
		{name: "htu of another scheme", key: ec, url: "http://mcp.example.com/mcp", wantErr: verifiers.ErrBadProof, detail: "htu"},
		{name: "request query ignored", key: ec, url: dpopURL + "?session=1"},
		// The request's own URI is the client's doing (its Host): a proof
		// error, never a technical failure.
		{name: "request URI with user information", key: ec, url: "https://a@b/mcp", wantErr: verifiers.ErrBadProof, detail: "request URI"},
		{name: "request URI with a bad escape in the host", key: ec, url: "https://a%zz/mcp", wantErr: verifiers.ErrBadProof, detail: "request URI"},
		{name: "htu query and fragment ignored", key: ec, proofs: func() []string {
			return []string{ec.proof(t, with("htu", dpopURL+"?a=b#frag"), nil)}
		}},
		{name: "htu normalised: case, default port, unreserved escape, dot segment", key: ec, proofs: func() []string {
			return []string{ec.proof(t, with("htu", "HTTPS://MCP.Example.com:443/x/../%6Dcp"), nil)}
		}},
		{name: "iat too old", key: ec, proofs: func() []string {
			return []string{ec.proof(t, with("iat", dpopNow.Add(-5*time.Minute-time.Second).Unix()), nil)}
		}, wantErr: verifiers.ErrBadProof, detail: "window"},
		{name: "iat too far ahead", key: ec, proofs: func() []string {
			return []string{ec.proof(t, with("iat", dpopNow.Add(5*time.Minute+time.Second).Unix()), nil)}
		}, wantErr: verifiers.ErrBadProof, detail: "window"},
		{name: "iat at the window's edge", key: ec, proofs: func() []string {
			return []string{ec.proof(t, with("iat", dpopNow.Add(-5*time.Minute).Unix()), nil)}
		}},
		{name: "iat a string", key: ec, proofs: func() []string { return []string{ec.proof(t, with("iat", "1800000000"), nil)} }, wantErr: verifiers.ErrBadProof},
		{name: "ath of another token", key: ec, proofs: func() []string { return []string{ec.proof(t, with("ath", athOf("other")), nil)} }, wantErr: verifiers.ErrBadProof, detail: "ath"},
		{name: "key not the token's cnf.jkt", key: ec, jkt: other.jkt(t), wantErr: verifiers.ErrBadProof, detail: "bound"},
		{name: "token bound to no key", key: ec, jkt: "-", wantErr: verifiers.ErrBadProof, detail: "bound"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newChecker(t, verifiers.DPoPOptions{Algorithms: tc.algs})
			req := verifiers.DPoPRequest{Method: "POST", URL: dpopURL, AccessToken: dpopToken, JKT: tc.key.jkt(t)}
			if tc.proofs != nil {
				req.Proofs = tc.proofs()
			} else {
				req.Proofs = []string{tc.key.proof(t, proofClaims(), nil)}
			}
			if tc.method != "" {
				req.Method = tc.method
			}
			if tc.url != "" {
				req.URL = tc.url
			}
			switch tc.jkt {
			case "":
			case "-":
				req.JKT = ""
			default:
				req.JKT = tc.jkt
			}
			proof, err := c.Check(context.Background(), req)
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if proof.JKT != tc.key.jkt(t) || proof.ID == "" {
					t.Fatalf("proof = %+v", proof)
				}
				// The same proof again is a replay.
				if _, err := c.Check(context.Background(), req); !errors.Is(err, verifiers.ErrProofReplayed) {
					t.Fatalf("replayed proof: err = %v, want ErrProofReplayed", err)
				}
				return
			}
			if !errors.Is(err, tc.wantErr) || !strings.Contains(err.Error(), tc.detail) {
				t.Fatalf("err = %v, want %v containing %q", err, tc.wantErr, tc.detail)
			}
		})
	}
}

// TestDPoPReplayPerKeyAndExpiry: a jti is remembered per key and only
// while its proof could still be accepted.
func TestDPoPReplayPerKeyAndExpiry(t *testing.T) {
	now := dpopNow
	cache := verifiers.NewMemoryReplayCache(0, func() time.Time { return now })
	c := newChecker(t, verifiers.DPoPOptions{Replay: cache, Now: func() time.Time { return now }})
	a, b := newECKey(t), newECKey(t)
	check := func(k *dpopKey, claims jwt.MapClaims) error {
		_, err := c.Check(context.Background(), verifiers.DPoPRequest{
			Proofs: []string{k.proof(t, claims, nil)}, Method: "POST", URL: dpopURL, AccessToken: dpopToken, JKT: k.jkt(t)})
		return err
	}
	if err := check(a, proofClaims()); err != nil {
		t.Fatal(err)
	}
	if err := check(b, proofClaims()); err != nil {
		t.Fatalf("same jti from another key: %v", err)
	}
	if err := check(a, proofClaims()); !errors.Is(err, verifiers.ErrProofReplayed) {
		t.Fatalf("same jti, same key: %v", err)
	}
	if cache.Len() != 2 {
		t.Fatalf("cache holds %d entries, want 2", cache.Len())
	}
	// Past the window the old entry is gone, and the proof is refused by iat.
	now = now.Add(verifiers.DefaultDPoPWindow + 2*time.Second)
	if err := check(a, proofClaims()); !errors.Is(err, verifiers.ErrBadProof) || errors.Is(err, verifiers.ErrProofReplayed) {
		t.Fatalf("after the window: %v", err)
	}
	if cache.Len() != 0 {
		t.Fatalf("cache holds %d entries after expiry, want 0", cache.Len())
	}
}

// failingReplay is a replay cache whose store is down.
type failingReplay struct{}

func (failingReplay) Seen(context.Context, string, time.Time) (bool, error) {
	return false, errors.New("connection refused")
}

// TestDPoPReplayCacheDown: a replay cache failure is a technical failure,
// never a pass.
func TestDPoPReplayCacheDown(t *testing.T) {
	k := newECKey(t)
	c := newChecker(t, verifiers.DPoPOptions{Replay: failingReplay{}})
	_, err := c.Check(context.Background(), verifiers.DPoPRequest{
		Proofs: []string{k.proof(t, proofClaims(), nil)}, Method: "POST", URL: dpopURL, AccessToken: dpopToken, JKT: k.jkt(t)})
	if !errors.Is(err, verifiers.ErrUnavailable) || verifiers.Classify(err).Status != 503 {
		t.Fatalf("err = %v (%+v), want unavailable 503", err, verifiers.Classify(err))
	}
}

// TestDPoPOptions: algorithms must be asymmetric, the window bounded.
func TestDPoPOptions(t *testing.T) {
	tests := []struct {
		name string
		opts verifiers.DPoPOptions
		want string
	}{
		{"defaults", verifiers.DPoPOptions{}, ""},
		{"HS256 refused", verifiers.DPoPOptions{Algorithms: []string{"ES256", "HS256"}}, `"HS256"`},
		{"none refused", verifiers.DPoPOptions{Algorithms: []string{"none"}}, `"none"`},
		{"window of an hour", verifiers.DPoPOptions{Window: time.Hour}, ""},
		{"window over an hour", verifiers.DPoPOptions{Window: time.Hour + time.Second}, "window"},
		{"negative window", verifiers.DPoPOptions{Window: -time.Second}, "window"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := verifiers.NewDPoPChecker(tc.opts)
			if tc.want == "" {
				if err != nil || len(c.Algorithms()) == 0 {
					t.Fatalf("err = %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to name %s", err, tc.want)
			}
		})
	}
}

// BenchmarkDPoPCheck: the cost of one proof check (memory replay cache),
// per algorithm; compare with BenchmarkVerify* in the same run.
func BenchmarkDPoPCheck(b *testing.B) {
	for _, k := range []*dpopKey{newECKey(b), newEdKey(b)} {
		b.Run(k.alg, func(b *testing.B) {
			c := newChecker(b, verifiers.DPoPOptions{})
			proofs := make([]string, 1024)
			for i := range proofs {
				claims := proofClaims()
				claims["jti"] = b64u([]byte{byte(i), byte(i >> 8), 1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
				proofs[i] = k.proof(b, claims, nil)
			}
			jkt := k.jkt(b)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				// Past 1024 proofs the replay check refuses: the work done
				// is the same (every check runs, the cache answers "seen").
				_, _ = c.Check(context.Background(), verifiers.DPoPRequest{
					Proofs: []string{proofs[i%len(proofs)]}, Method: "POST", URL: dpopURL, AccessToken: dpopToken, JKT: jkt})
			}
		})
	}
}
