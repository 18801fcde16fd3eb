package mcptoken

import (
	"cmp"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/mcptoken/caddy-mcp-token/jwks"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
	"go.uber.org/zap"
)

// jwks_file: a local JSON Web Key Set (such as the jwks.json that
// `caddy mcp-token keygen` writes) as a key source. Its keys get the same
// vetting as a fetched set's (jwks.ParseSet); symmetric (oct) keys are
// allowed here, and only here: a file is the operator's own secret, while
// a fetched JWKS is public and an HMAC key in it is a leak or an attack.
// The file is read when the configuration is provisioned, so a reload
// reads it again.

// keyFilePool holds the parsed key files, keyed by path and content, so
// the status view can list them; a changed file is a new entry.
var keyFilePool = caddy.NewUsagePool()

// keyFile is one parsed jwks_file.
type keyFile struct {
	path    string
	set     *jwks.Set
	dropped int
	loaded  time.Time
}

// probeKeyFile stands for a jwks_file behind a runtime placeholder while
// the Caddyfile is parsed (it is read at start).
const probeKeyFile = "\x00placeholder jwks_file"

// probeFileKeys is the key source of probeKeyFile: it holds no key, and
// allows HMAC algorithms, which the file may hold.
type probeFileKeys struct{ parseTimeKeys }

func (probeFileKeys) AllowsHMAC() bool { return true }

// keyFileSource reads, parses and vets the jwks_file written as value;
// acquire, when not nil, shares the result through keyFilePool.
func keyFileSource(repl *caddy.Replacer, value string, acquire func(key string, create func() (*keyFile, error)) (*keyFile, error)) (verifiers.KeySource, error) {
	if value == probeKeyFile {
		return probeFileKeys{}, nil
	}
	path, err := resolve(repl, "jwks_file", value)
	if err != nil {
		return nil, err
	}
	doc, err := readKeyFile(path)
	if err != nil {
		return nil, fmt.Errorf("jwks_file %s: %w", value, err)
	}
	create := func() (*keyFile, error) {
		set, dropped, err := jwks.ParseSet(doc, true)
		if err != nil {
			return nil, fmt.Errorf("jwks_file %s: %w", value, err)
		}
		if set.Len() == 0 {
			why := ""
			if len(dropped) > 0 {
				why = fmt.Sprintf(" (%d refused; first: %v)", len(dropped), dropped[0])
			}
			return nil, fmt.Errorf("jwks_file %s: no usable key%s", value, why)
		}
		if len(dropped) > 0 {
			caddy.Log().Named("http.handlers.mcp_token").Warn("jwks_file: keys refused",
				zap.String("path", path), zap.Errors("reasons", dropped))
		}
		return &keyFile{path: path, set: set, dropped: len(dropped), loaded: time.Now()}, nil
	}
	var kf *keyFile
	if acquire != nil {
		sum := sha256.Sum256(doc)
		kf, err = acquire(fmt.Sprintf("path=%s sha256=%x", path, sum), create)
	} else {
		kf, err = create()
	}
	if err != nil {
		return nil, err
	}
	return kf.set, nil
}

// readKeyFile reads at most jwks.DefaultMaxBytes of a key file.
func readKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	doc, err := io.ReadAll(io.LimitReader(f, jwks.DefaultMaxBytes+1))
	if err != nil {
		return nil, err
	}
	if len(doc) > jwks.DefaultMaxBytes {
		return nil, fmt.Errorf("larger than %d bytes: not a key set", jwks.DefaultMaxBytes)
	}
	return doc, nil
}

// keyFile takes the shared parsed key file for key from the pool.
func (c *core) keyFile(key string, create func() (*keyFile, error)) (*keyFile, error) {
	return acquire(c, keyFilePool, key, func() (*keyFile, func(), error) {
		kf, err := create()
		return kf, nil, err
	})
}

// fileAlgorithms is the allow-list of a policy whose key source is a
// local set: the configured algorithms, each of which some key of the set
// must fit, or by default the algorithms of the set's keys.
func fileAlgorithms(keys verifiers.KeySource, algs []string) ([]string, error) {
	set, ok := keys.(*jwks.Set)
	if !ok {
		return algs, nil
	}
	if len(algs) == 0 {
		return set.Algorithms(), nil
	}
	var unfit []string
	for _, name := range algs {
		if alg, err := verifiers.LookupAlgorithm(name); err == nil && !set.Fits(alg) {
			unfit = append(unfit, name)
		}
	}
	if len(unfit) == len(algs) {
		return nil, fmt.Errorf("jwks_file: no key of the set fits the algorithms %s (its keys are for %s)",
			strings.Join(algs, " "), strings.Join(set.Algorithms(), " "))
	}
	return algs, nil
}

// KeyFileStatus is one jwks_file for the status view.
type KeyFileStatus struct {
	Path string   `json:"path"`
	Kids []string `json:"kids"`
	Keys int      `json:"keys"`
	// Dropped counts the entries refused by key vetting.
	Dropped int `json:"dropped"`
	// HMAC says the set holds symmetric keys (never shown).
	HMAC   bool      `json:"hmac"`
	Loaded time.Time `json:"loaded"`
}

func keyFileStatuses() []KeyFileStatus {
	out := []KeyFileStatus{}
	rangePool(keyFilePool, func(kf *keyFile) {
		out = append(out, KeyFileStatus{Path: kf.path, Kids: kf.set.Kids(), Keys: kf.set.Len(), Dropped: kf.dropped,
			HMAC: kf.set.AllowsHMAC(), Loaded: kf.loaded})
	})
	slices.SortFunc(out, func(a, b KeyFileStatus) int {
		return cmp.Or(strings.Compare(a.Path, b.Path), a.Loaded.Compare(b.Loaded))
	})
	return out
}

// Interface guards: the verified-token cache re-checks the key of each
// hit through KeyPeeker.
var _ verifiers.KeyPeeker = (*jwks.Set)(nil)
