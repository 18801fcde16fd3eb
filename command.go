package mcptoken

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	_ "github.com/caddyserver/caddy/v2/modules/logging" // the console log encoder of the CLI's logs
	"github.com/spf13/cobra"

	"github.com/mcptoken/caddy-mcp-token/jwks"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:      "mcp-token",
		Usage:     "keygen|mint|inspect|verify|jwks",
		Short:     "Tools for mcp_token: keys, tokens, offline checks, JWKS diagnosis",
		Long:      mcpTokenLong,
		CobraFunc: addMCPTokenCommands,
	})
}

// mcpTokenLong is the long help of `caddy mcp-token`.
const mcpTokenLong = `
Tools for the mcp_token module:

  keygen   generate a key pair (private PEM, public PEM, JWKS) or an HMAC secret
  mint     sign a token with a key from keygen
  inspect  decode a token's header and claims, WITHOUT verifying it
  verify   run a Caddy config's mcp_token verifiers on a token and say why
           it is accepted or refused
  jwks     fetch an issuer's (or a URL's) JWK Set and say, key by key, what
           mcp_token would accept and refuse

For scripts: results go to stdout, warnings and errors to stderr; inspect,
verify, keygen and jwks take --json; a TOKEN argument of - is read from
stdin (keeping it out of shell history and ps), and a leading "Bearer " is
removed. Exit status: 0 accepted (or done), 1 refused, 2 usage or
configuration error.`

// Exit statuses of caddy mcp-token, so that a script can tell a refused
// token from a mistake in the command or the configuration.
const (
	exitOK      = 0 // accepted, or done
	exitRefused = 1 // the token (or key set) is refused
	exitUsage   = 2 // usage or configuration error
)

// maxTokenBytes bounds a token read from stdin.
const maxTokenBytes = 64 << 10

// cliError is an error with the exit status it ends the command with.
// Errors of other types end it with exitUsage.
type cliError struct {
	code int
	err  error
}

func (e *cliError) Error() string { return e.err.Error() }
func (e *cliError) Unwrap() error { return e.err }

func refused(format string, args ...any) error {
	return &cliError{exitRefused, fmt.Errorf(format, args...)}
}

// usageError marks err as a mistake in the command line.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

// exitStatus is what a command returns to Caddy's main when it fails: the
// error was already printed; code is the exit status. It wraps Caddy's own
// exit error (the only way to exit with a status other than 1 from a
// registered command), which caddycmd.Main finds with errors.As.
type exitStatus struct {
	code  int
	err   error
	caddy error // from caddycmd.WrapCommandFuncForCobra; nil for status 1
}

func (e *exitStatus) Error() string   { return e.err.Error() }
func (e *exitStatus) Unwrap() []error { return []error{e.err, e.caddy} }

// finish reports err on stderr as one plain line and turns it into the
// error that ends the process with the right status.
func finish(cmd *cobra.Command, err error) error {
	if err == nil {
		return nil
	}
	if es := (*exitStatus)(nil); errors.As(err, &es) {
		return err
	}
	code := exitUsage
	if ce := (*cliError)(nil); errors.As(err, &ce) {
		code = ce.code
	}
	w := cmd.ErrOrStderr()
	fmt.Fprintf(w, "Error: %v\n", err)
	if errors.As(err, new(usageError)) {
		fmt.Fprintf(w, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	es := &exitStatus{code: code, err: err}
	if code > 1 {
		es.caddy = caddycmd.WrapCommandFuncForCobra(func(caddycmd.Flags) (int, error) { return code, nil })(cmd, nil)
	}
	return es
}

// run adapts a command function: its error is reported by finish.
func run(f func(cmd *cobra.Command, args []string) error) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error { return finish(cmd, f(cmd, args)) }
}

// args adapts an argument check: a wrong count is a usage error.
func args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := check(cmd, a); err != nil {
			return finish(cmd, usageError{err})
		}
		return nil
	}
}

// addMCPTokenCommands builds the `caddy mcp-token` subcommands under cmd.
func addMCPTokenCommands(cmd *cobra.Command) {
	keygen := &cobra.Command{
		Use:   "keygen [--alg ALG] [--bits 2048|3072|4096] [--kid ID] [--out DIR [--force]] [--json]",
		Short: "Generates a key pair (or an HMAC secret) for development",
		Long: `
Generates a signing key. With --out, writes private.pem (mode 0600),
public.pem and jwks.json (asymmetric) or secret.txt (HMAC) into DIR,
refusing to replace files that exist unless --force is given; otherwise
prints them. Configure mcp_token with public_key public.pem (or serve
jwks.json), and sign tokens with "caddy mcp-token mint --key private.pem".

--alg is one of ` + verifiers.AlgorithmNames + `.
--bits (RSA only) is 2048, 3072 or 4096: mcp_token refuses RSA keys
under 2048 bits.

--json prints one object: alg, kid, and either files (the paths written,
with --out) or private_key (PEM, or the HMAC secret), public_key (PEM)
and jwks (the JWK Set), the last two for asymmetric keys only.`,
		Example: `  caddy mcp-token keygen --alg ES256 --out ./keys
  caddy mcp-token keygen --alg RS256 --bits 3072 --kid 2026-11 --out ./keys --force
  caddy mcp-token keygen --alg HS256 --json | jq -r .private_key`,
		Args: args(cobra.NoArgs),
		RunE: run(runKeygen),
	}
	keygen.Flags().String("alg", "RS256", "algorithm: "+verifiers.AlgorithmNames)
	keygen.Flags().Int("bits", 2048, "RSA key size: 2048, 3072 or 4096")
	keygen.Flags().String("kid", "", "key id (default: derived from the public key)")
	keygen.Flags().String("out", "", "directory to write the files to (default: print)")
	keygen.Flags().Bool("force", false, "replace key files that exist in --out")
	keygen.Flags().Bool("json", false, "print the result as JSON")

	mint := &cobra.Command{
		Use:   "mint --key FILE [--alg ALG] [--iss URL] [--aud AUD]... [--sub SUB] [--scope S]... [--ttl 1h] [--claim k=v]... [--kid ID] [--typ at+jwt]",
		Short: "Signs a token for development and tests",
		Long: `
Signs a JWT with a private key or HMAC secret file from keygen and prints
it. Defaults follow FastMCP's create_token: sub fastmcp-user, iss
https://fastmcp.example.com, expiry in one hour. --alg defaults to the
key's (RS256 for RSA, ES256/384/512 by curve, EdDSA, HS256 for a secret)
and must fit the key. --claim values are JSON when they parse as JSON
(numbers, true, lists), strings otherwise.`,
		Example: `  caddy mcp-token mint --key keys/private.pem --aud https://mcp.example.com/mcp --scope "mcp:read mcp:write"
  caddy mcp-token mint --key keys/secret.txt --alg HS384 --claim client_id=ci --ttl 10m
  caddy mcp-token mint --key keys/private.pem --ttl -5m   # an expired token, for tests`,
		Args: args(cobra.NoArgs),
		RunE: run(runMint),
	}
	mint.Flags().String("key", "", "private key PEM or HMAC secret file (required)")
	mint.Flags().String("alg", "", "algorithm (default: from the key)")
	mint.Flags().String("iss", "", "issuer (default https://fastmcp.example.com)")
	mint.Flags().StringArray("aud", nil, "audience (repeatable)")
	mint.Flags().String("sub", "", "subject (default fastmcp-user)")
	mint.Flags().StringArray("scope", nil, "scope (repeatable, or space-separated)")
	mint.Flags().Duration("ttl", time.Hour, "time to live (negative for an expired token)")
	mint.Flags().StringArray("claim", nil, "extra claim k=v (repeatable)")
	mint.Flags().String("kid", "", "key id header (default: derived from the public key, as keygen does)")
	mint.Flags().String("typ", "", "typ header, such as at+jwt")

	inspect := &cobra.Command{
		Use:   "inspect [--json] TOKEN|-",
		Short: "Decodes a token WITHOUT verifying it",
		Long: `
Decodes a JWT's header and claims and shows iat, nbf and exp as times,
WITHOUT checking the signature or any claim: use verify for that. The
reminder that nothing was verified goes to stderr, so stdout can be piped.
TOKEN - reads the token from stdin; a leading "Bearer " is removed.

--json prints one object: verified (always false), header, claims, times
(iat, nbf and exp in RFC 3339, when present), expired, and problems (what
mcp_token would refuse at a glance: no exp, expired, not yet valid).

Exit status: 0 decoded, 1 not a decodable JWT, 2 usage error.`,
		Example: `  caddy mcp-token inspect eyJhbGciOi...
  pbpaste | caddy mcp-token inspect --json - | jq .claims.aud`,
		Args: args(cobra.ExactArgs(1)),
		RunE: run(runInspect),
	}
	inspect.Flags().Bool("json", false, "print the result as JSON")

	verify := &cobra.Command{
		Use:   "verify --config FILE [--adapter caddyfile] [--json] TOKEN|-",
		Short: "Runs a config's mcp_token verifiers on a token and says why it passes or not",
		Long: `
Loads the config (a Caddyfile by default), finds every mcp_token handler
and authentication provider, and verifies TOKEN with each, as a request
would be: static keys and secrets need no network; JWKS and introspection
endpoints are called. Each is named by its site address and path, in
Caddyfile order. Scopes and allow rules, which depend on the request, are
not checked. TOKEN - reads the token from stdin; a leading "Bearer " is
removed. Warnings from loading the config go to stderr.

--json prints one object: accepted (true when any handler accepts), and
handlers, each with site, path, provider (true for an authentication
provider), accepted, and either config_error, or verifier, status, reason,
description and detail for a refusal, or identity (client_id, sub, iss,
aud, scopes, exp in RFC 3339, kid) for an acceptance.

Exit status: 0 when at least one handler accepts the token, 1 when all
refuse it, 2 for a usage or configuration error.`,
		Example: `  caddy mcp-token verify --config Caddyfile eyJhbGciOi...
  printf '%s' "$TOKEN" | caddy mcp-token verify -c Caddyfile --json - | jq '.handlers[] | {site, path, reason}'`,
		Args: args(cobra.ExactArgs(1)),
		RunE: run(runVerify),
	}
	verify.Flags().StringP("config", "c", "", "configuration file (required)")
	verify.Flags().StringP("adapter", "a", "", "config adapter (default: caddyfile unless the file ends in .json)")
	verify.Flags().Duration("timeout", 10*time.Second, "how long to wait for remote keys or introspection")
	verify.Flags().Bool("json", false, "print the result as JSON")

	jwksCmd := &cobra.Command{
		Use:   "jwks [--issuer | --jwks-uri] [--timeout 10s] [--json] ISSUER-OR-URL",
		Short: "Fetches a JWK Set and says which keys mcp_token would accept",
		Long: `
Fetches a JWK Set as mcp_token does (the same discovery, HTTP client,
size limit and key vetting) and prints, key by key, its kid, kty, crv,
alg and use, and whether mcp_token would verify tokens with it or why
not: the first thing to run when an identity provider's tokens are
refused. The argument is tried as a JWKS URL (jwks_uri), then as an
issuer whose jwks_uri is discovered from its RFC 8414
(/.well-known/oauth-authorization-server) or OpenID Connect
(/.well-known/openid-configuration) metadata, as the discover option
does; --issuer or --jwks-uri choose one.

--json prints one object: issuer (when discovered), jwks_uri, keys (each
with index, kid, kty, crv, alg, use, key, accepted, reason), usable (how
many keys mcp_token would use) and set_error (why the whole set would be
refused, if it would).

Exit status: 0 when mcp_token would load the set (at least one usable
key), 1 when it would not (unreachable, not a JWK Set, no usable key),
2 for a usage error.`,
		Example: `  caddy mcp-token jwks https://accounts.example.com
  caddy mcp-token jwks --jwks-uri https://idp.example.com/oauth2/v1/keys
  caddy mcp-token jwks --json https://idp.example.com | jq '.keys[] | select(.accepted | not)'`,
		Args: args(cobra.ExactArgs(1)),
		RunE: run(runJWKS),
	}
	jwksCmd.Flags().Bool("issuer", false, "the argument is an issuer: discover its jwks_uri")
	jwksCmd.Flags().Bool("jwks-uri", false, "the argument is the JWK Set's URL")
	jwksCmd.Flags().Duration("timeout", jwks.DefaultTimeout, "timeout of each HTTP request")
	jwksCmd.Flags().Bool("json", false, "print the result as JSON")

	cmd.Long = mcpTokenLong
	cmd.Example = `  caddy mcp-token keygen --alg ES256 --out ./keys
  caddy mcp-token mint --key ./keys/private.pem --aud mcp-api | caddy mcp-token verify -c Caddyfile -
  caddy mcp-token jwks https://accounts.example.com`
	cmd.Args = args(cobra.ArbitraryArgs)
	cmd.SuggestionsMinimumDistance = 2
	cmd.RunE = run(func(cmd *cobra.Command, a []string) error {
		if len(a) == 0 {
			return cmd.Help()
		}
		if s := cmd.SuggestionsFor(a[0]); len(s) > 0 {
			return usagef("unknown command %q for %q; did you mean %q?", a[0], cmd.CommandPath(), s[0])
		}
		return usagef("unknown command %q for %q", a[0], cmd.CommandPath())
	})
	cmd.AddCommand(keygen, mint, inspect, verify, jwksCmd)
	cmd.SetFlagErrorFunc(func(c *cobra.Command, err error) error { return finish(c, usageError{err}) })
	for _, c := range append(cmd.Commands(), cmd) {
		// finish reports errors; Caddy's root already silences usage.
		c.SilenceErrors, c.SilenceUsage = true, true
	}
}

// readToken returns the token argument, read from stdin when it is "-",
// without surrounding space and a leading "Bearer " (or a whole
// "Authorization: Bearer " header line).
func readToken(cmd *cobra.Command, arg string) (string, error) {
	tok := arg
	if arg == "-" {
		b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), maxTokenBytes+1))
		if err != nil {
			return "", fmt.Errorf("reading the token from stdin: %w", err)
		}
		if len(b) > maxTokenBytes {
			return "", usagef("the token on stdin is larger than %d bytes", maxTokenBytes)
		}
		tok = string(b)
	}
	tok = strings.TrimSpace(tok)
	if name, rest, ok := strings.Cut(tok, ":"); ok && strings.EqualFold(strings.TrimSpace(name), "authorization") {
		tok = strings.TrimSpace(rest)
	}
	if f := strings.Fields(tok); len(f) > 0 && strings.EqualFold(f[0], "bearer") {
		tok = strings.TrimSpace(tok[len(f[0]):])
	}
	if tok == "" {
		return "", usagef("the token is empty")
	}
	return tok, nil
}

// emit writes v as indented JSON with --json, else as text.
func emit(cmd *cobra.Command, asJSON bool, v any, text func(io.Writer)) error {
	if asJSON {
		return printJSON(cmd.OutOrStdout(), v)
	}
	text(cmd.OutOrStdout())
	return nil
}

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}
