package verifiers

import (
	"errors"
	"net/http"
	"strings"
)

// Sentinel errors. Every error a Verifier returns wraps exactly one of them,
// so callers classify outcomes with errors.Is and never by message text.
// The wrapped detail is for debug logs only; it never reaches the client.
var (
	// ErrMissingToken: the request carried no bearer token.
	ErrMissingToken = errors.New("no bearer token")
	// ErrBadRequest: the Authorization header (or the request) is malformed.
	ErrBadRequest = errors.New("malformed request")
	// ErrMalformed: the token is not a well-formed token of any configured kind.
	ErrMalformed = errors.New("malformed token")
	// ErrUnsupportedAlgorithm: the token's alg is not on the allow-list.
	ErrUnsupportedAlgorithm = errors.New("unsupported algorithm")
	// ErrUnknownKey: no configured key can verify the token (unknown kid).
	ErrUnknownKey = errors.New("unknown signing key")
	// ErrBadSignature: the signature does not verify.
	ErrBadSignature = errors.New("bad signature")
	// ErrExpired: exp is in the past (beyond the clock skew).
	ErrExpired = errors.New("token expired")
	// ErrNotYetValid: nbf (or iat) is in the future (beyond the clock skew).
	ErrNotYetValid = errors.New("token not yet valid")
	// ErrMissingClaim: a required claim (exp, ...) is absent or of the wrong type.
	ErrMissingClaim = errors.New("missing or invalid claim")
	// ErrBadIssuer: iss is absent or not accepted.
	ErrBadIssuer = errors.New("issuer not accepted")
	// ErrUnknownIssuer: a token whose signature no configured key verifies
	// names an issuer that is not configured at all: the real reason for
	// the failure, reported in logs and metrics as unknown_issuer.
	ErrUnknownIssuer = errors.New("issuer not configured")
	// ErrBadAudience: aud is absent or names none of the accepted audiences.
	ErrBadAudience = errors.New("audience not accepted")
	// ErrBadType: the typ header is not the one required (RFC 9068).
	ErrBadType = errors.New("token type not accepted")
	// ErrCritical: the crit header names an extension this verifier does not understand.
	ErrCritical = errors.New("unsupported critical header")
	// ErrInactive: the token is unknown, revoked or inactive.
	ErrInactive = errors.New("token inactive")
	// ErrInsufficientScope: the token is valid but lacks a required scope.
	// Returned as a *ScopeError, which says which scopes are needed.
	ErrInsufficientScope = errors.New("insufficient scope")
	// ErrRateLimited: the client failed too often and must wait.
	ErrRateLimited = errors.New("too many failed attempts")
	// ErrTokenInQuery: an access_token in the URI query (RFC 6750 §2.3 is
	// not allowed by MCP); refused even when a header token is valid.
	ErrTokenInQuery = errors.New("access token in the URI query")
	// ErrHeaderMismatch: MCP's Mcp-Method / Mcp-Name headers disagree with
	// the JSON-RPC body (or the body is not JSON-RPC the gateway can judge).
	ErrHeaderMismatch = errors.New("MCP headers do not match the body")
	// ErrBadBody: per-method or per-tool scopes are configured and the body
	// is not JSON-RPC the gateway can judge (fail closed).
	ErrBadBody = errors.New("request body is not JSON-RPC")
	// ErrBodyTooLarge: the body is larger than the gateway inspects.
	ErrBodyTooLarge = errors.New("request body too large")
	// ErrUnsupportedMediaType: a body the gateway inspects is not
	// application/json in UTF-8 without Content-Encoding, so the backend
	// could read other characters than the gateway (415).
	ErrUnsupportedMediaType = errors.New("unsupported media type")
	// ErrBodyTimeout: an inspected body was not received in time (408).
	ErrBodyTimeout = errors.New("request body timeout")
	// ErrBusy: too many bodies are being read for inspection at once (503
	// with Retry-After; the client may retry, nothing is wrong with it).
	ErrBusy = errors.New("too many requests being inspected")
	// ErrSessionNotFound: the request's Mcp-Session-Id is bound to another
	// principal; for this caller the session does not exist (404, so an
	// MCP client starts a new session).
	ErrSessionNotFound = errors.New("session not found")
	// ErrPolicyDenied: the token verified and carries the scopes, but no
	// allow_if rule allows the request, or a rule failed to evaluate (fail
	// closed). More scopes would not help, so its 403 names none.
	ErrPolicyDenied = errors.New("refused by policy")
	// ErrBadProof: a DPoP proof is missing, malformed, or fails a check of
	// RFC 9449 §4.3 or §7.1 (method, URI, time, token hash, key).
	ErrBadProof = errors.New("invalid DPoP proof")
	// ErrProofReplayed: a DPoP proof was already presented (its jti seen).
	ErrProofReplayed = errors.New("DPoP proof replayed")
	// ErrUseNonce: the server requires a DPoP nonce and the proof carries
	// none, or a stale one (RFC 9449 §8); the answer carries a fresh one.
	ErrUseNonce = errors.New("DPoP nonce required")
	// ErrBoundAsBearer: a sender-constrained token (cnf.jkt) presented as
	// a bearer token (RFC 9449 §7.1), or a bearer token where a DPoP-bound
	// one is required.
	ErrBoundAsBearer = errors.New("sender-constrained token presented as bearer")
	// ErrNotBound: the DPoP scheme with a token that is not bound to a key.
	ErrNotBound = errors.New("token not bound to a DPoP key")
	// ErrCertMismatch: a certificate-bound token (cnf x5t#S256, RFC 8705
	// §3) presented over a connection without that client certificate.
	ErrCertMismatch = errors.New("client certificate does not match the token")
	// ErrUnavailable: a technical failure (key source or introspection
	// endpoint unreachable, no keys loaded yet). It is never a pass and never
	// reported to the client as a bad token.
	ErrUnavailable = errors.New("verification unavailable")
)

// ScopeError reports the scopes a request needs and the token lacks.
type ScopeError struct {
	// Required lists every scope the request needs (all-of).
	Required []string
	// Missing lists those the token does not carry.
	Missing []string
}

func (e *ScopeError) Error() string {
	return "insufficient scope: missing " + strings.Join(e.Missing, " ")
}

// Is makes errors.Is(err, ErrInsufficientScope) true.
func (e *ScopeError) Is(target error) bool { return target == ErrInsufficientScope }

// Outcome is how one class of result is reported: HTTP status, RFC 6750
// error code, the client-facing description, and a stable reason label for
// logs and metrics. It is the one table that turns results into answers.
type Outcome struct {
	// Reason is a stable, low-cardinality label (logs, metrics).
	Reason string
	// Status is the HTTP status the handler answers with.
	Status int
	// Code is the RFC 6750 error code; empty when none must be sent
	// (no credentials, or a technical failure).
	Code string
	// Description is the error_description sent to the client. It is fixed
	// text and never contains token material.
	Description string
}

// Accepted is the outcome of a verified token.
var Accepted = Outcome{Reason: "accepted", Status: http.StatusOK}

// outcomes maps each sentinel to its answer; order matters only in that
// the first match wins.
var outcomes = []struct {
	err error
	out Outcome
}{
	{ErrMissingToken, Outcome{"missing_token", http.StatusUnauthorized, "", "Bearer token required"}},
	{ErrBadRequest, Outcome{"bad_request", http.StatusBadRequest, "invalid_request", "Malformed authorization request"}},
	{ErrTokenInQuery, Outcome{"token_in_query", http.StatusBadRequest, "invalid_request", "Access tokens in the URI query are not accepted; use the Authorization header"}},
	{ErrHeaderMismatch, Outcome{"header_mismatch", http.StatusBadRequest, "", "MCP request headers do not match the JSON-RPC body"}},
	{ErrBadBody, Outcome{"bad_body", http.StatusBadRequest, "", "Request body is not a JSON-RPC message"}},
	{ErrBodyTooLarge, Outcome{"body_too_large", http.StatusRequestEntityTooLarge, "", "Request body too large"}},
	{ErrUnsupportedMediaType, Outcome{"unsupported_media_type", http.StatusUnsupportedMediaType, "", "Request body must be application/json in UTF-8, without Content-Encoding"}},
	{ErrBodyTimeout, Outcome{"body_timeout", http.StatusRequestTimeout, "", "Request body not received in time"}},
	{ErrBusy, Outcome{"busy", http.StatusServiceUnavailable, "", "Too many requests being inspected; retry later"}},
	{ErrMalformed, Outcome{"malformed", http.StatusUnauthorized, "invalid_token", "Malformed token"}},
	{ErrUnsupportedAlgorithm, Outcome{"bad_algorithm", http.StatusUnauthorized, "invalid_token", "Token algorithm not accepted"}},
	// An unknown kid is described to the client as a signature failure, on
	// purpose: "unknown key" would let anyone probe which key ids the
	// server holds. Logs and metrics say unknown_key.
	{ErrUnknownKey, Outcome{"unknown_key", http.StatusUnauthorized, "invalid_token", "Token signature verification failed"}},
	{ErrUnknownIssuer, Outcome{"unknown_issuer", http.StatusUnauthorized, "invalid_token", "Invalid issuer"}},
	{ErrBadSignature, Outcome{"bad_signature", http.StatusUnauthorized, "invalid_token", "Token signature verification failed"}},
	{ErrExpired, Outcome{"expired", http.StatusUnauthorized, "invalid_token", "Token has expired"}},
	{ErrNotYetValid, Outcome{"not_yet_valid", http.StatusUnauthorized, "invalid_token", "Token is not yet valid"}},
	{ErrMissingClaim, Outcome{"missing_claim", http.StatusUnauthorized, "invalid_token", "Token is missing a required claim"}},
	{ErrBadIssuer, Outcome{"bad_issuer", http.StatusUnauthorized, "invalid_token", "Invalid issuer"}},
	{ErrBadAudience, Outcome{"bad_audience", http.StatusUnauthorized, "invalid_token", "Invalid audience"}},
	{ErrBadType, Outcome{"bad_type", http.StatusUnauthorized, "invalid_token", "Invalid token type"}},
	{ErrCritical, Outcome{"bad_crit", http.StatusUnauthorized, "invalid_token", "Unsupported critical header"}},
	{ErrInactive, Outcome{"inactive", http.StatusUnauthorized, "invalid_token", "Token is not active"}},
	{ErrBadProof, Outcome{"bad_dpop_proof", http.StatusUnauthorized, "invalid_dpop_proof", "Invalid DPoP proof"}},
	{ErrProofReplayed, Outcome{"dpop_replay", http.StatusUnauthorized, "invalid_dpop_proof", "Invalid DPoP proof"}},
	{ErrUseNonce, Outcome{"use_dpop_nonce", http.StatusUnauthorized, "use_dpop_nonce", "Resource server requires nonce in DPoP proof"}},
	{ErrBoundAsBearer, Outcome{"bound_as_bearer", http.StatusUnauthorized, "invalid_token", "Sender-constrained token required with its proof"}},
	{ErrNotBound, Outcome{"dpop_not_bound", http.StatusUnauthorized, "invalid_token", "Token is not bound to a DPoP key"}},
	{ErrCertMismatch, Outcome{"cert_mismatch", http.StatusUnauthorized, "invalid_token", "Token is bound to another client certificate"}},
	{ErrInsufficientScope, Outcome{"insufficient_scope", http.StatusForbidden, "insufficient_scope", "Insufficient scope"}},
	{ErrSessionNotFound, Outcome{"session_not_found", http.StatusNotFound, "", "Session not found"}},
	{ErrPolicyDenied, Outcome{"policy_denied", http.StatusForbidden, "insufficient_scope", "Refused by an access policy of this resource (not a missing scope)"}},
	{ErrRateLimited, Outcome{"rate_limited", http.StatusTooManyRequests, "", "Too many failed authentication attempts"}},
	{ErrUnavailable, Outcome{"unavailable", http.StatusServiceUnavailable, "", "Token verification is temporarily unavailable"}},
}

// unclassified is the answer to an error that wraps no sentinel: a bug, so
// fail closed as a technical failure rather than guess.
var unclassified = Outcome{"unavailable", http.StatusServiceUnavailable, "", "Token verification is temporarily unavailable"}

// Classify returns the outcome for a verification result. A nil error is
// Accepted; an error that wraps no sentinel is treated as a technical
// failure (fail closed).
func Classify(err error) Outcome {
	if err == nil {
		return Accepted
	}
	for _, o := range outcomes {
		if errors.Is(err, o.err) {
			return o.out
		}
	}
	return unclassified
}

// isSentinel reports whether err wraps one of this package's sentinels.
func isSentinel(err error) bool {
	for _, o := range outcomes {
		if errors.Is(err, o.err) {
			return true
		}
	}
	return false
}
