package jwks

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/mcptoken/caddy-mcp-token/devtools"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// TestSetAlgorithms: a local set's default allow-list is its keys'
// algorithms, and Fits says which algorithms some key can verify.
func TestSetAlgorithms(t *testing.T) {
	rsa, ec := devtools.MustGenerateKey("PS256"), devtools.MustGenerateKey("ES384")
	noAlg := devtools.MustGenerateKey("RS256")
	var keys []Key
	for _, kp := range []*devtools.KeyPair{rsa, ec, noAlg} {
		jwk, err := kp.JWK()
		if err != nil {
			t.Fatal(err)
		}
		if kp == noAlg {
			delete(jwk, "alg")
			jwk["kid"] = "no-alg"
		}
		k, err := parseKeyMap(jwk)
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k)
	}
	set := NewSet(keys)
	if got, want := set.Algorithms(), []string{"ES384", "PS256", "RS256"}; !slices.Equal(got, want) {
		t.Fatalf("Algorithms: %v, want %v", got, want)
	}
	for _, tc := range []struct {
		alg  string
		fits bool
	}{{"PS256", true}, {"RS512", true /* the key without alg */}, {"ES384", true}, {"ES256", false}, {"EdDSA", false}, {"HS256", false}} {
		t.Run(tc.alg, func(t *testing.T) {
			alg, err := verifiers.LookupAlgorithm(tc.alg)
			if err != nil {
				t.Fatal(err)
			}
			if got := set.Fits(alg); got != tc.fits {
				t.Fatalf("Fits(%s) = %v, want %v", tc.alg, got, tc.fits)
			}
		})
	}
}

func parseKeyMap(jwk map[string]any) (Key, error) {
	raw, err := json.Marshal(jwk)
	if err != nil {
		return Key{}, err
	}
	return ParseKey(raw)
}
