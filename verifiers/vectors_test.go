package verifiers_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mcptoken/caddy-mcp-token/internal/vectors"
	"github.com/mcptoken/caddy-mcp-token/jwks"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

var vectorsDir = vectors.Dir()

// knownDataProblems are vectors whose expected result is wrong in the data
// (see testdata/vectors/README.md). The verifier is not bent to them: the
// test expects what a correct verifier does, and says why.
var knownDataProblems = map[int]struct {
	accept bool
	why    string
}{
	367: {true, "marked invalid but byte-identical to the valid tc357"},
	370: {true, "marked invalid but byte-identical to the valid tc357"},
	372: {false, "marked valid but contains '?', which strict base64url refuses"},
	373: {false, "marked valid but contains '?', which strict base64url refuses"},
}

// jwkAlgMismatch: the rfc7520 groups pair a JWK marked PS256 with a PS384
// token, and a JWK marked "ES521" (not an algorithm) with an ES512 token.
// Our decision: a JWK's alg binds the key to that algorithm (RFC 7517
// §4.4), so both are refused. See README, "Key selection".
func jwkAlgMismatch(jwkAlg, tokenAlg string) bool {
	return jwkAlg != "" && jwkAlg != tokenAlg
}

// vectorVerifier configures a verifier the way a user would for one JWK:
// an oct key is an HMAC secret; a public key goes through the JWKS vetting
// and key selection, with the JWK's alg (if any) as the allow-list.
func vectorVerifier(jwk json.RawMessage) (*verifiers.JWT, error) {
	var probe struct {
		Kty, Alg, K string
	}
	if err := json.Unmarshal(jwk, &probe); err != nil {
		return nil, err
	}
	cfg := verifiers.JWTConfig{}
	if probe.Alg != "" {
		cfg.Algorithms = []string{probe.Alg}
	}
	if probe.Kty == "oct" {
		secret, err := base64.RawURLEncoding.DecodeString(probe.K)
		if err != nil {
			return nil, err
		}
		cfg.Keys = verifiers.NewStaticKey(secret)
	} else {
		key, err := jwks.ParseKey(jwk)
		if err != nil {
			return nil, err
		}
		cfg.Keys = jwks.NewSet([]jwks.Key{key})
		if probe.Alg == "" {
			cfg.Algorithms = verifiers.AlgorithmsForKey(key.Public)
		}
	}
	return verifiers.NewJWT(cfg)
}

func headerAlg(jws string) string {
	h, _, _ := strings.Cut(jws, ".")
	b, _ := base64.RawURLEncoding.DecodeString(h)
	var hdr struct{ Alg string }
	_ = json.Unmarshal(b, &hdr)
	return hdr.Alg
}

func TestWycheproofJWS(t *testing.T) {
	f, err := vectors.LoadWycheproof("json_web_signature_test.json")
	if err != nil {
		t.Fatal(err)
	}
	var validOK, invalidOK, known, total int
	for _, g := range f.TestGroups {
		jwk := g.Public
		if jwk == nil {
			jwk = g.Private
		}
		var probe struct{ Alg string }
		_ = json.Unmarshal(jwk, &probe)
		v, verr := vectorVerifier(jwk)
		for _, tc := range g.Tests {
			total++
			want := tc.Result == "valid"
			why := ""
			if kp, ok := knownDataProblems[tc.TcID]; ok {
				want, why = kp.accept, kp.why
			} else if want && jwkAlgMismatch(probe.Alg, headerAlg(tc.JWS)) {
				want, why = false, "JWK alg "+probe.Alg+" binds the key; token is "+headerAlg(tc.JWS)
			}
			var got bool
			var err error = verr
			if verr == nil {
				_, err = v.VerifySignature(context.Background(), tc.JWS)
				got = err == nil
			}
			if got != want {
				t.Errorf("tc%d (%s, %s): marked %s, accepted=%v, err=%v", tc.TcID, g.Comment, tc.Comment, tc.Result, got, err)
				continue
			}
			switch {
			case why != "":
				known++
				t.Logf("tc%d: %s: accepted=%v", tc.TcID, why, got)
			case got:
				validOK++
			default:
				invalidOK++
			}
		}
	}
	t.Logf("Wycheproof JWS: %d vectors: %d valid accepted, %d invalid refused, %d known data problems handled as documented",
		total, validOK, invalidOK, known)
	if total != validOK+invalidOK+known {
		t.Fatalf("%d of %d vectors did not match", total-validOK-invalidOK-known, total)
	}
}

func TestRFC7515AppendixA(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(vectorsDir, "jose-cookbook", "rfc7515_appendix_a.json"))
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Vectors []struct {
			ID, Alg, Expect, JWS string
			JWK                  json.RawMessage
		}
	}
	if err := json.Unmarshal(data, &f); err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, vec := range f.Vectors {
		t.Run(vec.ID, func(t *testing.T) {
			jwk := vec.JWK
			if vec.Alg != "" && vec.Alg != "none" {
				// The appendix keys carry no alg; the verifier is configured for the example's.
				var m map[string]any
				_ = json.Unmarshal(jwk, &m)
				if m != nil {
					m["alg"] = vec.Alg
					jwk, _ = json.Marshal(m)
				}
			}
			var err error
			v, verr := vectorVerifier(jwk)
			if verr == nil {
				_, err = v.VerifySignature(context.Background(), vec.JWS)
			} else {
				err = verr
			}
			if (err == nil) != (vec.Expect == "valid") {
				t.Fatalf("expect %s, err=%v", vec.Expect, err)
			}
			n++
		})
	}
	if n != len(f.Vectors) || n == 0 {
		t.Fatalf("%d of %d RFC 7515 vectors passed", n, len(f.Vectors))
	}
	t.Logf("RFC 7515 Appendix A: %d vectors as expected", n)
}

func TestJOSECookbookJWS(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(vectorsDir, "jose-cookbook", "jws", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no cookbook vectors: %v", err)
	}
	ed, _ := filepath.Glob(filepath.Join(vectorsDir, "jose-cookbook", "curve25519", "jws.json"))
	files = append(files, ed...)
	verified := 0
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		var ex struct {
			Input struct {
				Payload string          `json:"payload"`
				Key     json.RawMessage `json:"key"`
				Alg     json.RawMessage `json:"alg"`
			} `json:"input"`
			Output struct {
				Compact string `json:"compact"`
			} `json:"output"`
		}
		if err := json.Unmarshal(data, &ex); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		name := filepath.Base(file)
		var alg string
		if ex.Output.Compact == "" || json.Unmarshal(ex.Input.Alg, &alg) != nil {
			t.Logf("%s: JSON serialization only (or several signatures), not applicable to bearer tokens", name)
			continue
		}
		compact := ex.Output.Compact
		if parts := strings.Split(compact, "."); len(parts) == 3 && parts[1] == "" {
			// RFC 7520 §4.5: detached content; reattach the payload.
			parts[1] = base64.RawURLEncoding.EncodeToString([]byte(ex.Input.Payload))
			compact = strings.Join(parts, ".")
		}
		v, err := vectorVerifier(withAlg(ex.Input.Key, alg))
		if err != nil {
			t.Errorf("%s: verifier: %v", name, err)
			continue
		}
		if _, err := v.VerifySignature(context.Background(), compact); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		verified++
	}
	t.Logf("JOSE cookbook: %d compact JWS examples verified", verified)
	if verified == 0 {
		t.Fatal("no cookbook example verified")
	}
}

func withAlg(jwk json.RawMessage, alg string) json.RawMessage {
	var m map[string]any
	if json.Unmarshal(jwk, &m) != nil || alg == "" {
		return jwk
	}
	if _, has := m["alg"]; !has {
		m["alg"] = alg
	}
	out, _ := json.Marshal(m)
	return out
}
