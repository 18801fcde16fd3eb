package mcptoken

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// Sender-constrained tokens: DPoP (RFC 9449). The request path calls
// credentials (step 2) and senderConstraint (step 5, after the token is
// verified or found in the cache, before MCP inspection); challenges and
// the DPoP-Nonce header are added where a refusal is written.

// DPoP modes.
const (
	DPoPOff      = "off"
	DPoPAllowed  = "allowed"
	DPoPRequired = "required"
)

// DPoPConfig configures DPoP-bound access tokens (RFC 9449).
type DPoPConfig struct {
	// off: the DPoP scheme is not accepted; allowed: Bearer and DPoP
	// tokens are; required: only DPoP-bound tokens with their proof are.
	// A token bound to a key (cnf.jkt) is never accepted as a bearer
	// token, whatever the mode. Default: allowed.
	Mode string `json:"mode,omitempty"`

	// Accepted proof signature algorithms (asymmetric only). Default:
	// ES256 ES384 ES512 EdDSA PS256 PS384 PS512 RS256.
	Algorithms []string `json:"algorithms,omitempty"`

	// How far a proof's iat may be from now, either way. Default: 5m;
	// at most 1h.
	Window caddy.Duration `json:"window,omitempty"`

	// A key (at least 32 bytes; placeholders such as {env.DPOP_NONCE_KEY}
	// are resolved once) that turns on server nonces (RFC 9449 §8): every
	// proof must carry a nonce the server issued, answered with
	// use_dpop_nonce and a DPoP-Nonce header when it does not. Nonces are
	// stateless (time and HMAC), so instances sharing the key accept each
	// other's. Default: no nonces.
	NonceKey string `json:"nonce_key,omitempty"`

	// How long a server nonce is accepted. Default: 5m; at most 1h.
	NonceLifetime caddy.Duration `json:"nonce_lifetime,omitempty"`

	// The size of the replay cache of proof identifiers (jti) kept in
	// memory. Default: 100000.
	ReplayCacheSize int `json:"replay_cache_size,omitempty"`
}

// dpopReplayPool holds the memory replay caches, keyed by size, so that a
// reload keeps the proofs already seen.
var dpopReplayPool = caddy.NewUsagePool()

// dpopMode is the configured mode, with its default.
func (cfg *Config) dpopMode() string {
	if cfg.DPoP == nil || cfg.DPoP.Mode == "" {
		return DPoPAllowed
	}
	return cfg.DPoP.Mode
}

// provisionDPoP builds the proof checker (nil when DPoP is off), with the
// fleet's replay cache when one is given, else a pooled memory one.
func (c *core) provisionDPoP(cfg *Config, fleet verifiers.ReplayCache) error {
	if err := cfg.DPoP.validate(); err != nil {
		return err
	}
	if err := checkMTLSMode(cfg.MTLSBound); err != nil {
		return err
	}
	c.mtlsOff, c.mtlsRequired = cfg.mtlsMode() == DPoPOff, cfg.mtlsMode() == DPoPRequired
	mode := cfg.dpopMode()
	c.dpopRequired = mode == DPoPRequired
	if mode == DPoPOff {
		return nil
	}
	var opts verifiers.DPoPOptions
	size := 0
	if dc := cfg.DPoP; dc != nil {
		opts.Algorithms, opts.Window, size = dc.Algorithms, time.Duration(dc.Window), dc.ReplayCacheSize
	}
	replay, err := fleet, error(nil)
	if replay == nil {
		replay, err = acquire(c, dpopReplayPool, "memory:"+strconv.Itoa(size), func() (verifiers.ReplayCache, func(), error) {
			return verifiers.NewMemoryReplayCache(size, nil), nil, nil
		})
		if err != nil {
			return err
		}
	}
	opts.Replay = replay
	if dc := cfg.DPoP; dc != nil && dc.NonceKey != "" {
		key := caddy.NewReplacer().ReplaceKnown(dc.NonceKey, "")
		if opts.Nonces, err = verifiers.NewHMACNonces([]byte(key), time.Duration(dc.NonceLifetime), nil); err != nil {
			return err
		}
	}
	c.dpop, err = verifiers.NewDPoPChecker(opts)
	return err
}

// validateDPoP checks the DPoP options (JSON configs and the Caddyfile).
func (dc *DPoPConfig) validate() error {
	if dc == nil {
		return nil
	}
	switch dc.Mode {
	case "", DPoPOff, DPoPAllowed, DPoPRequired:
	default:
		return fmt.Errorf("dpop: mode %q, want off, allowed or required", dc.Mode)
	}
	if dc.ReplayCacheSize < 0 {
		return errors.New("dpop: replay_cache_size must not be negative")
	}
	_, err := verifiers.NewDPoPChecker(verifiers.DPoPOptions{Algorithms: dc.Algorithms, Window: time.Duration(dc.Window)})
	return err
}

// credentials takes the access token and its scheme (Bearer, or DPoP
// unless DPoP is off) from the Authorization header, the only place a
// credential is taken from, parsing it once; the caller checks the
// token's syntax unless the token cache knows it (gate.go).
func (c *core) credentials(r *http.Request) (token string, dpop bool, err error) {
	return parseAuthorization(r.Header, c.dpop != nil)
}

// senderConstraint is step 5: a token bound to a key needs its proof on
// every request (the token cache remembers the token, never a proof), and
// a DPoP-scheme request needs a bound token.
func (c *core) senderConstraint(r *http.Request, token string, dpop bool, tok *verifiers.AccessToken) error {
	jkt, x5t, err := verifiers.Confirmation(tok)
	if err != nil {
		return err
	}
	if err := c.certConstraint(r, x5t); err != nil { // mtls.go
		return err
	}
	switch {
	case !dpop && jkt != "":
		return verifiers.ErrBoundAsBearer // RFC 9449 §7.1
	case !dpop && c.dpopRequired:
		return verifiers.ErrBoundAsBearer
	case !dpop:
		return nil
	case jkt == "":
		return verifiers.ErrNotBound
	}
	proof, err := c.dpop.Check(r.Context(), verifiers.DPoPRequest{
		Proofs: r.Header.Values("DPoP"), Method: r.Method, URL: requestURI(r, &c.resource), AccessToken: token, JKT: jkt,
	})
	if err == nil {
		caddyhttp.SetVar(r.Context(), dpopVar, true)
		if proof.RenewNonce {
			caddyhttp.SetVar(r.Context(), dpopRenewVar, true)
		}
		if !c.forwardToken {
			r.Header.Del("DPoP")
		}
	}
	return err
}

const (
	// dpopVar marks a request accepted with a DPoP proof, for the
	// challenge of a later refusal (the Authorization header is gone by
	// then).
	dpopVar = "mcp_token.dpop"
	// dpopRenewVar marks an accepted proof whose server nonce is past half
	// its lifetime: the answer carries a fresh one (renewNonce).
	dpopRenewVar = "mcp_token.dpop_renew_nonce"
)

// requestURI is the URI the client used, as DPoP's htu names it: the
// origin of the resource as the metadata publishes it (origin.go: the
// configured resource, a trusted proxy's forwarded headers, or the
// connection) and the path before any rewrite (query ignored).
func requestURI(r *http.Request, p *ProtectedResource) string {
	u := r.URL
	if orig, ok := r.Context().Value(caddyhttp.OriginalRequestCtxKey).(http.Request); ok && orig.URL != nil {
		u = orig.URL
	}
	return p.origin(r) + u.EscapedPath()
}

// renewNonce adds a fresh DPoP-Nonce to the answer to an accepted request
// whose proof carried a server nonce past half its lifetime (RFC 9449
// §8.2), so a client renews before its nonce expires; browsers may read
// it. Without server nonces it does nothing.
func (c *core) renewNonce(hdr http.Header, r *http.Request) {
	if c.dpop == nil || c.dpop.Nonces() == nil {
		return
	}
	if renew, _ := caddyhttp.GetVar(r.Context(), dpopRenewVar).(bool); !renew {
		return
	}
	hdr.Set("DPoP-Nonce", c.dpop.Nonces().Nonce())
	if r.Header.Get("Origin") != "" {
		hdr.Add("Access-Control-Expose-Headers", "DPoP-Nonce")
	}
}

// usedDPoP reports whether the request presented the DPoP scheme.
func usedDPoP(r *http.Request) bool {
	if v, _ := caddyhttp.GetVar(r.Context(), dpopVar).(bool); v {
		return true
	}
	scheme, _, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	return strings.EqualFold(scheme, "DPoP")
}

// isDPoPError: an error a DPoP challenge carries (RFC 9449 §7.1).
func isDPoPError(code string) bool {
	return code == "invalid_dpop_proof" || code == "use_dpop_nonce"
}

// setChallenges sets WWW-Authenticate (see challenges) and, when a nonce
// is required, a fresh DPoP-Nonce.
func (c *core) setChallenges(hdr http.Header, r *http.Request, err error) {
	hdr.Set("WWW-Authenticate", c.challenges(r, err))
	if c.dpop != nil && c.dpop.Nonces() != nil && errors.Is(err, verifiers.ErrUseNonce) {
		hdr.Set("DPoP-Nonce", c.dpop.Nonces().Nonce())
	}
}

// challenges is the WWW-Authenticate value: the Bearer challenge (unless
// DPoP is required) and the DPoP one (unless DPoP is off), the error on
// the scheme the client used, or on DPoP for a proof error.
func (c *core) challenges(r *http.Request, err error) string {
	if c.dpop == nil {
		return c.challenge(r, err)
	}
	out := verifiers.Classify(err)
	dpopErr := isDPoPError(out.Code) || (out.Code != "" && usedDPoP(r))
	params := []string{param("algs", strings.Join(c.dpop.Algorithms(), " "))}
	bearer := c.challenge(r, err)
	if dpopErr || c.dpopRequired {
		// The Bearer challenge's parameters go with DPoP.
		_, rest, _ := strings.Cut(bearer, " ")
		if rest != "" {
			params = append(params, rest)
		}
		bearer = c.challenge(r, verifiers.ErrMissingToken)
	}
	dpopChallenge := "DPoP " + strings.Join(params, ", ")
	if c.dpopRequired {
		return dpopChallenge
	}
	return bearer + ", " + dpopChallenge
}

// dpopMetadata adds RFC 9449 §5.1 fields to the protected-resource
// metadata.
func (cfg *Config) dpopMetadata(pr *ProtectedResource) {
	if pr.TLSCertBound == nil {
		bound := cfg.mtlsMode() != DPoPOff
		pr.TLSCertBound = &bound
	}
	if cfg.dpopMode() == DPoPOff {
		return
	}
	if len(pr.DPoPSigningAlgs) == 0 {
		pr.DPoPSigningAlgs = slices.Clone(verifiers.DefaultDPoPAlgorithms)
		if cfg.DPoP != nil && len(cfg.DPoP.Algorithms) > 0 {
			pr.DPoPSigningAlgs = slices.Clone(cfg.DPoP.Algorithms)
		}
	}
	pr.DPoPBoundRequired = pr.DPoPBoundRequired || cfg.dpopMode() == DPoPRequired
}

// parseDPoPOption reads dpop, dpop_algorithms, dpop_window and dpop_nonce.
func (cfg *Config) parseDPoPOption(d *caddyfile.Dispenser, sub string) error {
	if cfg.DPoP == nil {
		cfg.DPoP = new(DPoPConfig)
	}
	switch sub {
	case "dpop":
		v, err := singleArg(d)
		if err != nil {
			return err
		}
		cfg.DPoP.Mode = v
	case "dpop_algorithms":
		cfg.DPoP.Algorithms = d.RemainingArgs()
		if len(cfg.DPoP.Algorithms) == 0 {
			return d.ArgErr()
		}
	case "dpop_window":
		if err := parseDuration(d, &cfg.DPoP.Window, verifiers.MaxDPoPWindow); err != nil {
			return err
		}
	case "dpop_nonce":
		args := d.RemainingArgs()
		if len(args) < 1 || len(args) > 2 {
			return d.Errf("dpop_nonce: want <key> [<lifetime>]")
		}
		cfg.DPoP.NonceKey = args[0]
		if len(args) == 2 {
			dur, err := caddy.ParseDuration(args[1])
			if err != nil || dur <= 0 || dur > verifiers.MaxDPoPWindow {
				return d.Errf("dpop_nonce: lifetime %q is not a duration up to 1h", args[1])
			}
			cfg.DPoP.NonceLifetime = caddy.Duration(dur)
		}
		if !strings.Contains(args[0], "{") && len(args[0]) < verifiers.MinNonceKey {
			return d.Errf("dpop_nonce: the key must be at least %d bytes", verifiers.MinNonceKey)
		}
	}
	if err := cfg.DPoP.validate(); err != nil {
		return d.Err(err.Error())
	}
	return nil
}
