package mcptoken

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mcptoken/caddy-mcp-token/internal/limiter"
	"github.com/mcptoken/caddy-mcp-token/internal/mcprpc"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// This file is everything one request goes through, in order:
//
//	check         (the handler)     authenticate (the provider)
//	 1. no token in the query
//	 2. the bearer token from Authorization ─┐
//	 3. the verified-token cache             │ authenticate
//	 4. the failed-attempt limiter (misses)  │
//	 5. the verifiers; the cache remembers   │
//	 6. the token removed from the request ──┘
//	 7. the session: bound to another principal → 404 (sessions.go)
//	 8. MCP inspection: method and tool scopes, Mcp-* headers (mcprequest.go,
//	    mcpheaders.go), then the allow_if rules (policy.go)
//	 9. the response to a list request, filtered (listfilter.go)
//
// and the one place that turns an outcome into an HTTP answer (refuse),
// a challenge (challenge), a log line (logRejection) and a metric; the
// handler then sets the placeholders of every outcome (setPlaceholders,
// placeholders.go) and writes its audit line (auditDecision, audit.go).

// outcome is what happened to one request.
type outcome struct {
	// accepted is the verified token with its placeholder values, from
	// the cache or just verified; nil when the token was not accepted.
	accepted *verifiers.CachedToken
	// tok is the identity of a token whose signature verified but that a
	// later rule refused (for logs); nil otherwise.
	tok     *verifiers.AccessToken
	session sessionState  // the request's session, when bind_sessions is on
	token   string        // the bearer token, for the log line's hash; never logged
	kind    string        // the verifier that judged the token
	took    time.Duration // time spent verifying; 0 on a cache hit
	cache   cacheResult
	err     error
	lists   []listKind    // list methods whose results are filtered; nil: none
	calls   []mcprpc.Call // the body's calls; nil when it was not read
}

// cacheResult says what the verified-token cache did for a request.
type cacheResult uint8

const (
	cacheOff cacheResult = iota // no cache, or the request never reached it
	cacheHit
	cacheMiss
)

// check runs every rule of the handler on the request.
func (c *core) check(w http.ResponseWriter, r *http.Request) (out outcome) {
	defer func() { c.metrics.observe(out) }()
	if hasQueryToken(r) {
		return outcome{kind: verifiers.KindNone, err: verifiers.ErrTokenInQuery}
	}
	out = c.authenticate(r, true)
	if out.err != nil {
		c.widenScopeError(w, r, &out) // one challenge names every scope needed (scopeimplies.go)
		return out
	}
	c.renewNonce(w.Header(), r) // a DPoP-Nonce past half its life renewed (dpop.go)
	var err error
	if c.sessions != nil {
		out.session, err = c.checkSession(r, out.accepted.Extra.(*userVars).principal)
	}
	var needed []string
	var calls []mcprpc.Call
	if err == nil {
		needed, calls, err = c.inspect(w, r)
	}
	out.calls = calls
	if err == nil && len(needed) > len(c.requiredScopes) {
		err = verifiers.RequireScopes(out.accepted.Token, needed)
	}
	if err == nil {
		err = c.allow.allows(out.accepted.Token, r, calls) // allow_if rules (policy.go)
	}
	if err != nil {
		c.logRejection(err, out.token, out.accepted.Token)
		out.tok, out.err = out.accepted.Token, err
		return out
	}
	out.lists = c.listKinds(calls) // 9. the list results filtered (listfilter.go)
	return out
}

// authenticate takes the bearer token and judges it: from the cache, else
// (past the limiter when limit is set) by the verifiers. An accepted token
// is removed from the request unless forward_token is set.
func (c *core) authenticate(r *http.Request, limit bool) outcome {
	token, dpop, err := c.credentials(r) // Bearer, or DPoP (dpop.go); syntax not yet checked
	if err != nil {
		c.logRejection(err, "", nil)
		return outcome{kind: verifiers.KindNone, err: err}
	}
	out := outcome{accepted: c.tokens.Get(token), cache: cacheHit}
	if out.accepted == nil {
		// A hit skips the syntax check: the cache key is the SHA-256 of
		// the exact token, whose bytes passed it before they verified.
		if err := checkTokenSyntax(token); err != nil {
			c.logRejection(err, "", nil)
			return outcome{kind: verifiers.KindNone, err: err}
		}
		// A cached token costs no verification and proves nothing is
		// being guessed, so only misses meet the limiter: one broken
		// client behind a shared address cannot lock out the others.
		var addr string
		if limit && c.limiter != nil {
			addr = limiter.Key(clientAddress(r))
			if limited, retry := c.limiter.Limited(addr); limited {
				return outcome{kind: verifiers.KindNone, token: token, err: &rateLimitError{retry: retry}}
			}
		}
		out = c.verifyToken(r, token)
		out.token = token
		if c.tokens != nil {
			out.cache = cacheMiss
		}
		if out.err != nil {
			c.logRejection(out.err, token, out.tok)
			if addr != "" && countsAsFailure(out.err) {
				c.limiter.Fail(addr)
			}
			return out
		}
	}
	out.kind, out.token = out.accepted.Kind, token
	// 5. sender constraint (dpop.go): a key-bound token's proof, on every
	// request, cached token or not.
	if err := c.senderConstraint(r, token, dpop, out.accepted.Token); err != nil {
		c.logRejection(err, token, out.accepted.Token)
		out.tok, out.err, out.accepted = out.accepted.Token, err, nil
		return out
	}
	if !c.forwardToken {
		delete(r.Header, "Authorization")
	}
	return out
}

// verifyToken runs the verifiers and caches an accepted token with its
// placeholder values.
func (c *core) verifyToken(r *http.Request, token string) outcome {
	start := time.Now()
	tok, kind, err := c.verify(r, token)
	out := outcome{kind: kind, took: time.Since(start), tok: tok, err: err}
	if err == nil {
		out.accepted = c.tokens.Put(token, kind, tok, newUserVars(tok, token))
		out.tok = nil
	}
	return out
}

// verify runs the verifier, with its kind when it is a chain. r may be
// nil (the CLI).
func (c *core) verify(r *http.Request, token string) (*verifiers.AccessToken, string, error) {
	ctx := context.Background()
	if r != nil {
		ctx = r.Context()
	}
	if chain, ok := c.verifier.(*verifiers.Chain); ok {
		return chain.VerifyKind(ctx, token)
	}
	tok, err := c.verifier.Verify(ctx, token)
	return tok, verifiers.KindNone, err
}

// bearerToken extracts the bearer token from the Authorization header
// and checks its syntax (the request path does the two apart: see
// authenticate).
func bearerToken(r *http.Request) (string, error) {
	token, _, err := parseAuthorization(r.Header, false)
	if err == nil {
		err = checkTokenSyntax(token)
	}
	return token, err
}

// parseAuthorization takes the token from the one Authorization header,
// the only place a credential is taken from (RFC 6750 §2.1; never the
// query): scheme Bearer, or DPoP when dpop is set (RFC 9449 §7.1, the same
// token68 syntax). Another scheme is no credentials. The token's b64token
// syntax is not checked here (checkTokenSyntax).
func parseAuthorization(h http.Header, dpop bool) (token string, isDPoP bool, err error) {
	values := h["Authorization"] // the canonical key, as net/http stores it
	switch len(values) {
	case 0:
		return "", false, verifiers.ErrMissingToken
	case 1:
	default:
		return "", false, fmt.Errorf("%w: %d Authorization headers", verifiers.ErrBadRequest, len(values))
	}
	scheme, token, _ := strings.Cut(strings.TrimSpace(values[0]), " ")
	switch {
	case strings.EqualFold(scheme, "Bearer"):
	case dpop && strings.EqualFold(scheme, "DPoP"):
		isDPoP = true
	default:
		return "", false, verifiers.ErrMissingToken // another scheme: no bearer credentials
	}
	return strings.TrimLeft(token, " "), isDPoP, nil
}

// checkTokenSyntax refuses a token that is not an RFC 6750 b64token.
func checkTokenSyntax(token string) error {
	if !isB64Token(token) {
		return fmt.Errorf("%w: malformed bearer token", verifiers.ErrBadRequest)
	}
	return nil
}

// isB64Token checks RFC 6750's b64token syntax:
// 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	s = strings.TrimRight(s, "=")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !b64TokenChar[s[i]] {
			return false
		}
	}
	return true
}

// b64TokenChar marks the characters of a b64token before its "=" padding
// (a table: a miss scans every byte of a token of a kilobyte or more).
var b64TokenChar = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/'
	}
	return t
}()

// clientAddress is Caddy's client IP (which honours trusted_proxies), else
// the connection's remote address.
func clientAddress(r *http.Request) string {
	if ip, ok := caddyhttp.GetVar(r.Context(), caddyhttp.ClientIPVarKey).(string); ok && ip != "" {
		return ip
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// countsAsFailure: a presented token refused as invalid. A missing token
// (MCP discovery starts that way), a missing scope and a technical failure
// do not count.
func countsAsFailure(err error) bool {
	out := verifiers.Classify(err)
	return out.Status == http.StatusUnauthorized && out.Code == "invalid_token"
}

// rateLimitError is ErrRateLimited with the time to wait.
type rateLimitError struct{ retry time.Duration }

func (e *rateLimitError) Error() string        { return fmt.Sprintf("rate limited for %s", e.retry) }
func (e *rateLimitError) Is(target error) bool { return target == verifiers.ErrRateLimited }

// errorBody is the JSON body of a refusal.
type errorBody struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description,omitempty"`
}

// refuse writes the answer to a refused request: the one place where a
// verification outcome becomes an HTTP response.
func (c *core) refuse(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, verifiers.ErrHeaderMismatch) {
		writeHeaderError(w, r, err) // a JSON-RPC error, as MCP asks (mcpheaders.go)
		return
	}
	out := verifiers.Classify(err)
	hdr := w.Header()
	switch {
	case out.Status == http.StatusUnauthorized || out.Status == http.StatusForbidden || out.Code == "invalid_request":
		c.setChallenges(hdr, r, err) // Bearer and DPoP, DPoP-Nonce (dpop.go)
	case out.Status == http.StatusServiceUnavailable:
		hdr.Set("Retry-After", strconv.Itoa(5))
	case out.Status == http.StatusTooManyRequests:
		var rl *rateLimitError
		if errors.As(err, &rl) {
			hdr.Set("Retry-After", strconv.Itoa(int(math.Ceil(rl.retry.Seconds()))))
		}
	}
	if r.Header.Get("Origin") != "" {
		// Browser clients must be able to read the challenge.
		hdr.Set("Access-Control-Allow-Origin", "*")
		hdr.Set("Access-Control-Expose-Headers", "WWW-Authenticate, DPoP-Nonce")
	}
	code := out.Code
	if code == "" {
		code = out.Reason
	}
	body, _ := json.Marshal(errorBody{Error: code, ErrorDescription: out.Description})
	hdr.Set("Content-Type", "application/json")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(out.Status)
	_, _ = w.Write(body)
}

// challenge is the WWW-Authenticate value for a refusal (RFC 6750 §3,
// RFC 9728 §5.1, MCP authorization): error and error_description only when
// a token was presented; scope, the scopes this request needs, when known;
// and resource_metadata, the URL of the protected-resource metadata.
func (c *core) challenge(r *http.Request, err error) string {
	out := verifiers.Classify(err)
	var params []string
	scopes := c.requiredScopes
	var se *verifiers.ScopeError
	if errors.As(err, &se) {
		scopes = se.Required
	}
	if errors.Is(err, verifiers.ErrPolicyDenied) {
		scopes = nil // a policy refused: more scopes would not help
	}
	if out.Code != "" {
		params = append(params, param("error", out.Code), param("error_description", out.Description))
	}
	if len(scopes) > 0 {
		params = append(params, param("scope", strings.Join(scopes, " ")))
	}
	if !c.noMetadata {
		u := c.resource.MetadataURL(r)
		c.checkMetadataServed(r, u)
		params = append(params, param("resource_metadata", u))
	}
	if len(params) == 0 {
		return "Bearer"
	}
	return "Bearer " + strings.Join(params, ", ")
}

func param(name, value string) string {
	return name + "=" + strconv.Quote(value)
}

// logRejection writes the debug line of a refusal: the reason, a short
// hash of the token (never the token) and the identity when known.
func (c *core) logRejection(err error, token string, tok *verifiers.AccessToken) {
	ce := c.logger.Check(zapcore.DebugLevel, "bearer token rejected")
	if ce == nil {
		return
	}
	fields := []zap.Field{zap.String("reason", verifiers.Classify(err).Reason), zap.Error(err)}
	if token != "" {
		fields = append(fields, zap.String("token_hash", TokenHash(token)))
	}
	if tok != nil {
		fields = append(fields, zap.String("client_id", tok.ClientID), zap.String("kid", tok.KeyID))
	}
	ce.Write(fields...)
}

// TokenHash is the short, non-reversible token fingerprint used in logs
// to correlate requests: the first 8 bytes of SHA-256, in hex.
func TokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:8])
}
