package jwks

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// KeyReport is what a Cache does with one entry of a key set.
type KeyReport struct {
	// Index is the entry's position in the set's "keys" array, from 0.
	Index int `json:"index"`
	// Kid, Kty, Crv, Alg and Use are the entry's members as published.
	Kid string `json:"kid"`
	Kty string `json:"kty"`
	Crv string `json:"crv,omitempty"`
	Alg string `json:"alg,omitempty"`
	Use string `json:"use,omitempty"`
	// Key names the vetted key's type and size (such as RSA-2048 or
	// EC P-256); empty when the entry was refused before parsing.
	Key string `json:"key,omitempty"`
	// Accepted is true when tokens can be verified with this key.
	Accepted bool `json:"accepted"`
	// Reason says why the key is not used; empty when accepted.
	Reason string `json:"reason,omitempty"`
}

// Inspection is what a Cache with the given Options would load: where
// the key set comes from and, key by key, what it accepts and refuses.
type Inspection struct {
	// Issuer is the issuer the JWKS URL was discovered from, if any.
	Issuer string `json:"issuer,omitempty"`
	// JWKSURL is the key set's URL.
	JWKSURL string `json:"jwks_uri"`
	// Keys are the set's entries, in order.
	Keys []KeyReport `json:"keys"`
	// Usable is the number of keys a Cache would verify tokens with.
	Usable int `json:"usable"`
	// SetError says why the whole set would be refused (mixed symmetric
	// and asymmetric keys, no usable key); empty when it loads.
	SetError string `json:"set_error,omitempty"`
}

// Inspect fetches the key set as a Cache with opts would (discovery from
// opts.Issuer when opts.URL is empty, the same HTTP client, limits and
// vetting) and reports, key by key, what it would accept and refuse. It
// starts no goroutine. An error means no key set could be fetched or
// parsed; a set that is fetched but unusable is reported in SetError.
func Inspect(ctx context.Context, opts Options) (*Inspection, error) {
	c, err := configure(opts)
	if err != nil {
		return nil, err
	}
	in := &Inspection{JWKSURL: opts.URL}
	if in.JWKSURL == "" {
		in.Issuer = opts.Issuer
		if in.JWKSURL, err = c.discover(ctx); err != nil {
			return in, err
		}
	}
	body, err := c.get(ctx, in.JWKSURL)
	if err != nil {
		return in, err
	}
	return in, in.read(body)
}

// read fills the key reports from a JWKS document, vetting each entry as
// ParseSet does.
func (in *Inspection) read(body []byte) error {
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(body, &raw); err != nil {
		return fmt.Errorf("%s: not a JWKS document: %w", in.JWKSURL, err)
	}
	if raw.Keys == nil {
		return fmt.Errorf(`%s: not a JWKS document: no "keys" member`, in.JWKSURL)
	}
	kids := map[string]int{}
	for i, r := range raw.Keys {
		var m struct {
			Kid string `json:"kid"`
			Kty string `json:"kty"`
			Crv string `json:"crv"`
			Alg string `json:"alg"`
			Use string `json:"use"`
		}
		_ = json.Unmarshal(r, &m)
		kr := KeyReport{Index: i, Kid: m.Kid, Kty: m.Kty, Crv: m.Crv, Alg: m.Alg, Use: m.Use}
		k, err := ParseKey(r)
		switch {
		case err != nil && m.Kty == "oct":
			// jwkset refuses to read it before VetKey can say why.
			kr.Reason = "symmetric (oct) keys are never taken from a JWKS: a published HMAC key is a leak or an attack"
		case err != nil:
			kr.Reason = refusal(err, m.Kid)
		default:
			kr.Accepted, kr.Key = true, verifiers.KeyType(k.Public)
			if k.Kid != "" {
				kids[k.Kid]++
			}
		}
		in.Keys = append(in.Keys, kr)
	}
	for i, kr := range in.Keys {
		if kr.Accepted && kr.Kid != "" && kids[kr.Kid] > 1 {
			in.Keys[i].Accepted = false
			in.Keys[i].Reason = fmt.Sprintf("%d keys share kid %q: all of them are dropped as ambiguous", kids[kr.Kid], kr.Kid)
		}
	}
	set, _, err := ParseSet(body, false)
	switch {
	case err != nil:
		in.SetError = err.Error()
		for i := range in.Keys {
			if in.Keys[i].Accepted {
				in.Keys[i].Accepted = false
				in.Keys[i].Reason = "the whole set is refused: " + in.SetError
			}
		}
	case set.Len() == 0:
		in.SetError = "no usable key: a cache would keep failing and requests get 503"
	default:
		in.Usable = set.Len()
	}
	return nil
}

// refusal is VetKey's reason without the wrapping that repeats the kid.
func refusal(err error, kid string) string {
	s := err.Error()
	s = strings.TrimPrefix(s, ErrKeyRefused.Error()+": ")
	return strings.TrimPrefix(s, fmt.Sprintf("kid %q: ", kid))
}
