package jwks

import (
	"context"
	"testing"

	"github.com/mcptoken/caddy-mcp-token/internal/vectors"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// TestWycheproofJWKSets runs the Wycheproof JWK-set tests: each group's key
// set is loaded as a user's would be (the public set when there is one, as
// a fetched JWKS; otherwise the private set, as a local secret key set),
// then the test's JWS is verified with the set's algorithms.
func TestWycheproofJWKSets(t *testing.T) {
	f, err := vectors.LoadWycheproof("json_web_key_test.json")
	if err != nil {
		t.Fatal(err)
	}
	var valid, invalid, total int
	for _, g := range f.TestGroups {
		doc, symmetric := g.Public, false
		if doc == nil {
			doc, symmetric = g.Private, true
		}
		set, dropped, setErr := ParseSet(doc, symmetric)
		for _, tc := range g.Tests {
			total++
			want := tc.Result == "valid"
			var err error = setErr
			if setErr == nil {
				err = verifyWithSet(set, tc.JWS)
			}
			got := err == nil
			if got != want {
				t.Errorf("tc%d (%s, %s): marked %s, accepted=%v, err=%v, dropped=%v", tc.TcID, g.Comment, tc.Comment, tc.Result, got, err, dropped)
				continue
			}
			if got {
				valid++
			} else {
				invalid++
				t.Logf("tc%d (%s): refused: %v %v", tc.TcID, g.Comment, err, dropped)
			}
		}
	}
	t.Logf("Wycheproof JWK sets: %d tests: %d valid accepted, %d invalid refused", total, valid, invalid)
	if valid+invalid != total {
		t.Fatalf("%d of %d did not match", total-valid-invalid, total)
	}
}

// verifyWithSet verifies the signature with the set as key source, allowing
// the algorithm the token names when the set has a key for it (the way an
// operator configures algorithms to match their key set).
func verifyWithSet(set *Set, jws string) error {
	var algs []string
	for _, k := range set.keys {
		if k.Alg != "" {
			algs = append(algs, k.Alg)
		}
	}
	if len(algs) == 0 {
		for _, k := range set.keys {
			algs = append(algs, verifiers.AlgorithmsForKey(k.Public)...)
		}
	}
	v, err := verifiers.NewJWT(verifiers.JWTConfig{Keys: set, Algorithms: dedupe(algs)})
	if err != nil {
		return err
	}
	_, err = v.VerifySignature(context.Background(), jws)
	return err
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}
