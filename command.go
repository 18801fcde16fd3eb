package mcptoken

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	_ "github.com/caddyserver/caddy/v2/modules/logging" // the console log encoder of the CLI's logs
	"github.com/spf13/cobra"

	"github.com/mcptoken/caddy-mcp-token/devtools"
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

// keygenOutput is keygen's --json output.
type keygenOutput struct {
	Alg        string          `json:"alg"`
	Kid        string          `json:"kid"`
	Files      []string        `json:"files,omitempty"`
	PrivateKey string          `json:"private_key,omitempty"`
	PublicKey  string          `json:"public_key,omitempty"`
	JWKS       json.RawMessage `json:"jwks,omitempty"`
}

func runKeygen(cmd *cobra.Command, _ []string) error {
	fl := cmd.Flags()
	alg, _ := fl.GetString("alg")
	kid, _ := fl.GetString("kid")
	out, _ := fl.GetString("out")
	force, _ := fl.GetBool("force")
	asJSON, _ := fl.GetBool("json")
	bits := 0
	if fl.Changed("bits") {
		bits, _ = fl.GetInt("bits")
	}
	kp, err := devtools.GenerateKey(alg, bits, kid)
	if err != nil {
		if bits != 0 {
			return usageError{fmt.Errorf("--alg %s --bits %d: %w", alg, bits, err)}
		}
		return usageError{fmt.Errorf("--alg %s: %w", alg, err)}
	}
	if force && out == "" {
		return usagef("--force applies to --out only")
	}
	priv, err := kp.PrivatePEM()
	if err != nil {
		return err
	}
	type outFile struct {
		name, content string
		mode          os.FileMode
	}
	result := keygenOutput{Alg: kp.Alg, Kid: kp.Kid, PrivateKey: priv}
	var files []outFile
	if _, isSecret := kp.Private.([]byte); isSecret {
		result.PrivateKey = strings.TrimSuffix(priv, "\n")
		files = append(files, outFile{"secret.txt", priv, 0o600})
	} else {
		pub, err := kp.PublicPEM()
		if err != nil {
			return err
		}
		doc, err := devtools.JWKSDocument(kp)
		if err != nil {
			return err
		}
		result.PublicKey, result.JWKS = pub, doc
		files = append(files, outFile{"private.pem", priv, 0o600}, outFile{"public.pem", pub, 0o644},
			outFile{"jwks.json", string(doc) + "\n", 0o644})
	}
	w := cmd.OutOrStdout()
	if out == "" {
		if asJSON {
			return printJSON(w, result)
		}
		for _, f := range files {
			fmt.Fprintf(w, "# %s\n%s", f.name, f.content)
		}
		return nil
	}
	if !force {
		for _, f := range files {
			path := filepath.Join(out, f.name)
			if _, err := os.Lstat(path); err == nil {
				return usagef("%s exists: refusing to replace it (a key in use would be lost); use --force to replace it", path)
			}
		}
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	result = keygenOutput{Alg: kp.Alg, Kid: kp.Kid}
	for _, f := range files {
		path := filepath.Join(out, f.name)
		if err := writeFile(path, f.content, f.mode, force); err != nil {
			return err
		}
		result.Files = append(result.Files, path)
	}
	if asJSON {
		return printJSON(w, result)
	}
	for _, path := range result.Files {
		fmt.Fprintf(w, "wrote %s\n", path)
	}
	fmt.Fprintf(w, "algorithm %s, kid %s\n", kp.Alg, kp.Kid)
	return nil
}

// writeFile writes content to path with mode; it never replaces a file
// unless force is set (O_EXCL closes the race with the check before).
func writeFile(path, content string, mode os.FileMode, force bool) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if !force {
		flags |= os.O_EXCL
	}
	f, err := os.OpenFile(path, flags, mode)
	if errors.Is(err, fs.ErrExist) {
		return usagef("%s exists: refusing to replace it; use --force to replace it", path)
	}
	if err != nil {
		return err
	}
	if err := f.Chmod(mode); err != nil { // a replaced file keeps its mode otherwise
		f.Close()
		return err
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func runMint(cmd *cobra.Command, _ []string) error {
	fl := cmd.Flags()
	keyFile, _ := fl.GetString("key")
	if keyFile == "" {
		return usagef("--key is required (a private key or secret file from keygen)")
	}
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	alg, _ := fl.GetString("alg")
	kp, err := devtools.ParseSigningKey(data, alg)
	if err != nil {
		if alg != "" {
			return fmt.Errorf("%s with --alg %s: %w", keyFile, alg, err)
		}
		return fmt.Errorf("%s: %w", keyFile, err)
	}
	if kid, _ := fl.GetString("kid"); kid != "" {
		kp.Kid = kid
	} else if _, isSecret := kp.Private.([]byte); !isSecret {
		kp.Kid = devtools.Thumbprint(kp)
	}
	o := devtools.TokenOptions{Claims: map[string]any{}, Header: map[string]any{}}
	o.Issuer, _ = fl.GetString("iss")
	o.Subject, _ = fl.GetString("sub")
	o.Audience, _ = fl.GetStringArray("aud")
	scopes, _ := fl.GetStringArray("scope")
	for _, s := range scopes {
		o.Scopes = append(o.Scopes, strings.Fields(s)...)
	}
	if o.ExpiresIn, _ = fl.GetDuration("ttl"); o.ExpiresIn == 0 {
		return usagef("--ttl must not be 0 (tokens must expire)")
	}
	claims, _ := fl.GetStringArray("claim")
	for _, c := range claims {
		k, v, ok := strings.Cut(c, "=")
		if !ok || k == "" {
			return usagef("--claim %q: want key=value", c)
		}
		var parsed any
		if json.Unmarshal([]byte(v), &parsed) == nil {
			o.Claims[k] = parsed
		} else {
			o.Claims[k] = v
		}
	}
	if typ, _ := fl.GetString("typ"); typ != "" {
		o.Header["typ"] = typ
	}
	tok, err := kp.Token(o)
	if err != nil {
		return fmt.Errorf("signing with %s: %w", keyFile, err)
	}
	fmt.Fprintln(cmd.OutOrStdout(), tok)
	return nil
}

// inspectOutput is inspect's --json output.
type inspectOutput struct {
	Verified bool              `json:"verified"`
	Header   map[string]any    `json:"header"`
	Claims   map[string]any    `json:"claims"`
	Times    map[string]string `json:"times,omitempty"`
	Expired  bool              `json:"expired"`
	Problems []string          `json:"problems,omitempty"`
}

func runInspect(cmd *cobra.Command, a []string) error {
	asJSON, _ := cmd.Flags().GetBool("json")
	token, err := readToken(cmd, a[0])
	if err != nil {
		return err
	}
	header, claims, err := devtools.Decode(token)
	if err != nil {
		return refused("not a JWT: %w", err)
	}
	fmt.Fprintln(cmd.ErrOrStderr(), "WARNING: decoded only; the signature and claims were NOT verified.")
	res := inspectOutput{Header: header, Claims: claims, Times: map[string]string{}}
	now := time.Now()
	var lines []string
	for _, name := range []string{"iat", "nbf", "exp"} {
		t, ok := verifiers.NumericDate(claims[name])
		if !ok {
			continue
		}
		res.Times[name] = t.UTC().Format(time.RFC3339)
		rel := t.Sub(now).Round(time.Second)
		when := "in " + rel.String()
		if rel < 0 {
			when = (-rel).String() + " ago"
		}
		lines = append(lines, fmt.Sprintf("%s: %s (%s)", name, res.Times[name], when))
		switch {
		case name == "exp" && !t.After(now):
			res.Expired = true
			res.Problems = append(res.Problems, "expired "+when)
		case name == "nbf" && t.After(now):
			res.Problems = append(res.Problems, "not valid before "+res.Times[name])
		}
	}
	if _, ok := claims["exp"]; !ok {
		res.Problems = append(res.Problems, "exp is missing (mcp_token refuses tokens without exp)")
	}
	w := cmd.OutOrStdout()
	if asJSON {
		return printJSON(w, res)
	}
	for _, part := range []struct {
		name string
		m    map[string]any
	}{{"header", header}, {"claims", claims}} {
		b, _ := json.MarshalIndent(part.m, "", "  ")
		fmt.Fprintf(w, "%s: %s\n", part.name, b)
	}
	for _, l := range lines {
		fmt.Fprintln(w, l)
	}
	for _, p := range res.Problems {
		fmt.Fprintf(w, "problem: %s\n", p)
	}
	return nil
}

// verifyOutput is verify's --json output.
type verifyOutput struct {
	Accepted bool           `json:"accepted"`
	Handlers []verifyResult `json:"handlers"`
}

// verifyResult is one handler's verdict.
type verifyResult struct {
	Site        string          `json:"site"`
	Path        string          `json:"path"`
	Provider    bool            `json:"provider"`
	Accepted    bool            `json:"accepted"`
	ConfigError string          `json:"config_error,omitempty"`
	Verifier    string          `json:"verifier,omitempty"`
	Status      int             `json:"status,omitempty"`
	Reason      string          `json:"reason,omitempty"`
	Description string          `json:"description,omitempty"`
	Detail      string          `json:"detail,omitempty"`
	Identity    *verifyIdentity `json:"identity,omitempty"`
}

// verifyIdentity is what an accepted token says.
type verifyIdentity struct {
	ClientID string   `json:"client_id"`
	Subject  string   `json:"sub"`
	Issuer   string   `json:"iss"`
	Audience []string `json:"aud"`
	Scopes   []string `json:"scopes"`
	Expires  string   `json:"exp,omitempty"`
	KeyID    string   `json:"kid,omitempty"`
}

func runVerify(cmd *cobra.Command, a []string) error {
	fl := cmd.Flags()
	configFile, _ := fl.GetString("config")
	adapter, _ := fl.GetString("adapter")
	timeout, _ := fl.GetDuration("timeout")
	asJSON, _ := fl.GetBool("json")
	if configFile == "" {
		return usagef("--config is required")
	}
	token, err := readToken(cmd, a[0])
	if err != nil {
		return err
	}
	body, err := os.ReadFile(configFile)
	if err != nil {
		return err
	}
	if adapter == "" && !strings.HasSuffix(configFile, ".json") {
		adapter = "caddyfile"
	}
	data := body
	if adapter != "" {
		ad := caddyconfig.GetAdapter(adapter)
		if ad == nil {
			return usagef("unknown adapter %q", adapter)
		}
		var warnings []caddyconfig.Warning
		if data, warnings, err = ad.Adapt(body, map[string]any{"filename": configFile}); err != nil {
			return fmt.Errorf("adapting %s: %w", configFile, err)
		}
		for _, w := range warnings {
			fmt.Fprintf(cmd.ErrOrStderr(), "WARNING: %s\n", w.String())
		}
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("%s: %w", configFile, err)
	}
	found := findMCPTokenConfigs(doc)
	if len(found) == 0 {
		return fmt.Errorf("%s has no mcp_token handler or provider", configFile)
	}
	if adapter == "caddyfile" {
		if sites, err := caddyfileSites(configFile, body); err == nil {
			orderByCaddyfile(found, sites)
		}
	}
	ctx, cancel, err := cliContext(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	results := verifyWithConfigs(ctx, found, token, timeout)
	cancel()
	out := verifyOutput{Handlers: results}
	configErrors := 0
	for _, r := range results {
		out.Accepted = out.Accepted || r.Accepted
		if r.ConfigError != "" {
			configErrors++
		}
	}
	if err := emit(cmd, asJSON, out, func(w io.Writer) { printVerify(w, results) }); err != nil {
		return err
	}
	switch {
	case out.Accepted:
		return nil
	case configErrors > 0:
		return fmt.Errorf("%d of %d mcp_token configurations in %s could not be loaded, and no other accepts the token", configErrors, len(results), configFile)
	}
	return refused("the token is refused by every mcp_token in %s", configFile)
}

func printVerify(w io.Writer, results []verifyResult) {
	for _, r := range results {
		what := "mcp_token"
		if r.Provider {
			what = "mcp_token provider"
		}
		fmt.Fprintf(w, "%s at %s %s: ", what, r.Site, r.Path)
		switch {
		case r.ConfigError != "":
			fmt.Fprintf(w, "CONFIG ERROR: %s\n", r.ConfigError)
		case r.Accepted:
			id := r.Identity
			fmt.Fprintf(w, "ACCEPT (%s verifier) client_id=%q sub=%q iss=%q aud=%q scopes=%q exp=%s\n",
				r.Verifier, id.ClientID, id.Subject, id.Issuer, strings.Join(id.Audience, " "), strings.Join(id.Scopes, " "), id.Expires)
		default:
			fmt.Fprintf(w, "REJECT (%s verifier) %d %s: %s\n  detail: %s\n", r.Verifier, r.Status, r.Reason, r.Description, r.Detail)
		}
	}
}

// cliContext is a Caddy context for provisioning mcp_token outside a
// server: its logs (the config's warnings, JWKS trouble) are plain lines
// on w, WARN and above, without timestamps or stack traces. (A context with
// no config would log through zap's development logger, which adds a Go
// stack trace to every warning.) Like loading any config, this replaces
// Caddy's default logger.
func cliContext(w io.Writer) (caddy.Context, context.CancelFunc, error) {
	cliLogs.set(w)
	var logging caddy.Logging
	const cfg = `{"logs": {"default": {"level": "WARN", "writer": {"output": "mcp_token_cli"},
		"encoder": {"format": "console", "time_key": "", "caller_key": "", "stacktrace_key": "", "level_format": "upper"}}}}`
	if err := json.Unmarshal([]byte(cfg), &logging); err != nil {
		return caddy.Context{}, nil, err
	}
	base, err := caddy.ProvisionContext(&caddy.Config{Logging: &logging})
	if err != nil {
		return caddy.Context{}, nil, fmt.Errorf("setting up logs: %w", err)
	}
	ctx, cancel := caddy.NewContext(base)
	return ctx, func() { cancel(); cliLogs.set(nil) }, nil
}

func init() {
	caddy.RegisterModule(CLILogWriter{})
}

// CLILogWriter writes logs to the standard error of the running
// `caddy mcp-token` command (to the process's stderr otherwise). It exists
// for the CLI's own logs: configs have no use for it.
type CLILogWriter struct{}

// CaddyModule returns the Caddy module information.
func (CLILogWriter) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.logging.writers.mcp_token_cli",
		New: func() caddy.Module { return new(CLILogWriter) },
	}
}

func (CLILogWriter) String() string { return "mcp-token command stderr" }

// WriterKey is the key of Caddy's stderr writer, the place this one
// writes to when no command runs: Caddy announces, at INFO, a change of
// the default log's writer key, which would be noise in the CLI's output.
func (CLILogWriter) WriterKey() string { return "std:err" }

// OpenWriter returns the writer; closing it does nothing.
func (CLILogWriter) OpenWriter() (io.WriteCloser, error) { return &cliLogs, nil }

// cliLogs is the destination of CLILogWriter, set while a command runs.
var cliLogs cliLogTarget

type cliLogTarget struct {
	mu sync.Mutex
	w  io.Writer
}

func (t *cliLogTarget) set(w io.Writer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.w = w
}

func (t *cliLogTarget) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.w == nil {
		return os.Stderr.Write(p)
	}
	return t.w.Write(p)
}

func (*cliLogTarget) Close() error { return nil }

// Interface guard
var _ caddy.WriterOpener = CLILogWriter{}

// mcpTokenConfig is one mcp_token handler or provider found in a config,
// with where it sits.
type mcpTokenConfig struct {
	raw      json.RawMessage
	provider bool
	server   string
	listen   []string
	hosts    []string
	paths    []string // path matchers from the outermost route in
	site     string   // the Caddyfile site address, when known
}

// path is the innermost path matcher, or "*".
func (m *mcpTokenConfig) path() string {
	if len(m.paths) == 0 {
		return "*"
	}
	return m.paths[len(m.paths)-1]
}

// siteLabel is the Caddyfile site address, else the hosts and listener.
func (m *mcpTokenConfig) siteLabel() string {
	if m.site != "" {
		return m.site
	}
	where := strings.Join(m.listen, " ")
	if len(m.hosts) > 0 {
		return strings.Join(m.hosts, ", ") + " (" + where + ")"
	}
	return m.server + " (" + where + ")"
}

// findMCPTokenConfigs returns every mcp_token handler and provider in the
// HTTP servers of a Caddy JSON document, in route order, servers by name.
func findMCPTokenConfigs(doc any) []*mcpTokenConfig {
	servers, _ := dig(doc, "apps", "http", "servers").(map[string]any)
	names := slices.SortedFunc(maps.Keys(servers), naturalLess)
	var out []*mcpTokenConfig
	for _, name := range names {
		srv, _ := servers[name].(map[string]any)
		var listen []string
		for _, l := range asSlice(srv["listen"]) {
			if s, ok := l.(string); ok {
				listen = append(listen, s)
			}
		}
		base := mcpTokenConfig{server: name, listen: listen}
		walkRoutes(asSlice(srv["routes"]), base, &out)
		walkRoutes(asSlice(dig(srv, "errors", "routes")), base, &out)
	}
	return out
}

func walkRoutes(routes []any, at mcpTokenConfig, out *[]*mcpTokenConfig) {
	for _, r := range routes {
		route, _ := r.(map[string]any)
		here := at
		for _, set := range asSlice(route["match"]) {
			m, _ := set.(map[string]any)
			if hosts := strings.Fields(joinStrings(m["host"])); len(hosts) > 0 {
				here.hosts = hosts
			}
			if p := joinStrings(m["path"]); p != "" {
				here.paths = append(slices.Clip(here.paths), p)
			}
		}
		for _, h := range asSlice(route["handle"]) {
			handler, _ := h.(map[string]any)
			switch handler["handler"] {
			case "mcp_token":
				found := here
				found.raw, _ = json.Marshal(handler)
				*out = append(*out, &found)
			case "authentication":
				if p, ok := dig(handler, "providers", "mcp_token").(map[string]any); ok {
					found := here
					found.provider = true
					found.raw, _ = json.Marshal(p)
					*out = append(*out, &found)
				}
			case "subroute":
				walkRoutes(asSlice(handler["routes"]), here, out)
			}
		}
	}
}

func dig(v any, keys ...string) any {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

func joinStrings(v any) string {
	var s []string
	for _, e := range asSlice(v) {
		if str, ok := e.(string); ok {
			s = append(s, str)
		}
	}
	return strings.Join(s, " ")
}

// naturalLess orders srv2 before srv10.
func naturalLess(a, b string) int {
	ta, tb := strings.TrimRight(a, "0123456789"), strings.TrimRight(b, "0123456789")
	if ta == tb {
		na, _ := strconv.Atoi(a[len(ta):])
		nb, _ := strconv.Atoi(b[len(tb):])
		if na != nb {
			return cmp.Compare(na, nb)
		}
	}
	return strings.Compare(a, b)
}

// caddyfileSite is one site block of a Caddyfile: its addresses and the
// path each of its mcp_token directives applies to, in order.
type caddyfileSite struct {
	label string
	addrs []httpcaddyfile.Address
	paths []string // per mcp_token directive: its path matcher or an enclosing block's; "" unknown
}

// caddyfileSites lists a Caddyfile's site blocks in order.
func caddyfileSites(filename string, body []byte) ([]caddyfileSite, error) {
	blocks, err := caddyfile.Parse(filename, body)
	if err != nil {
		return nil, err
	}
	var sites []caddyfileSite
	for _, b := range blocks {
		if len(b.Keys) == 0 || b.IsNamedRoute || strings.HasPrefix(b.Keys[0].Text, "(") {
			continue // global options, snippets, named routes
		}
		site := caddyfileSite{label: strings.Join(b.GetKeysText(), ", ")}
		for _, k := range b.Keys {
			if a, err := httpcaddyfile.ParseAddress(k.Text); err == nil {
				site.addrs = append(site.addrs, a)
			}
		}
		for _, seg := range b.Segments {
			site.paths = append(site.paths, directivePaths(seg)...)
		}
		sites = append(sites, site)
	}
	return sites, nil
}

// directivePaths finds the mcp_token directives in a segment (also nested
// in route, handle and similar blocks) and the path matcher of each: its
// own argument, else the path of the innermost enclosing block.
func directivePaths(seg caddyfile.Segment) []string {
	var out []string
	var enclosing []string
	lineStart := 0
	for i, tok := range seg {
		if i == 0 || tok.Line != seg[i-1].Line || tok.File != seg[i-1].File {
			lineStart = i
		}
		switch tok.Text {
		case "{":
			p := ""
			if lineStart+1 < i && strings.HasPrefix(seg[lineStart+1].Text, "/") {
				p = seg[lineStart+1].Text
			}
			enclosing = append(enclosing, p)
		case "}":
			if len(enclosing) > 0 {
				enclosing = enclosing[:len(enclosing)-1]
			}
		case "mcp_token":
			if i != lineStart {
				continue
			}
			p := ""
			if i+1 < len(seg) && seg[i+1].Line == tok.Line && seg[i+1].Text != "{" {
				p = seg[i+1].Text
			} else {
				for j := len(enclosing) - 1; j >= 0 && p == ""; j-- {
					p = enclosing[j]
				}
			}
			out = append(out, p)
		}
	}
	return out
}

// orderByCaddyfile names each config by its site block and sorts them in
// Caddyfile order: by site block, then by directive where the path tells
// which one it is (the adapter sorts sites and routes by specificity).
func orderByCaddyfile(found []*mcpTokenConfig, sites []caddyfileSite) {
	type rank struct{ site, directive, seq int }
	ranks := map[*mcpTokenConfig]rank{}
	used := map[[2]int]bool{}
	for seq, f := range found {
		r := rank{len(sites), 1 << 30, seq}
		for si, s := range sites {
			if !s.matches(f) {
				continue
			}
			f.site, r.site = s.label, si
			for di, p := range s.paths {
				if p != "" && p == f.path() && !used[[2]int{si, di}] {
					used[[2]int{si, di}] = true
					r.directive = di
					break
				}
			}
			break
		}
		ranks[f] = r
	}
	slices.SortStableFunc(found, func(a, b *mcpTokenConfig) int {
		ra, rb := ranks[a], ranks[b]
		return cmp.Or(cmp.Compare(ra.site, rb.site), cmp.Compare(ra.directive, rb.directive), cmp.Compare(ra.seq, rb.seq))
	})
}

// matches reports whether a config sits in this site: a host of the site
// among the route's hosts (or neither has one), on the site's port if it
// names one.
func (s caddyfileSite) matches(f *mcpTokenConfig) bool {
	for _, a := range s.addrs {
		host := strings.ToLower(a.Host)
		if !(host == "" && len(f.hosts) == 0) && !slices.ContainsFunc(f.hosts, func(h string) bool { return strings.EqualFold(h, host) }) {
			continue
		}
		if a.Port != "" && !slices.ContainsFunc(f.listen, func(l string) bool { return strings.HasSuffix(l, ":"+a.Port) }) {
			continue
		}
		return true
	}
	return false
}

// verifyWithConfigs provisions each config and verifies the token with
// it, as a request would.
func verifyWithConfigs(ctx caddy.Context, configs []*mcpTokenConfig, token string, timeout time.Duration) []verifyResult {
	var results []verifyResult
	for _, f := range configs {
		r := verifyResult{Site: f.siteLabel(), Path: f.path(), Provider: f.provider}
		var cfg Config
		if err := json.Unmarshal(f.raw, &cfg); err != nil {
			r.ConfigError = err.Error()
			results = append(results, r)
			continue
		}
		c := new(core)
		if err := cfg.provision(ctx, c); err != nil {
			r.ConfigError = err.Error()
			_ = c.release()
			results = append(results, r)
			continue
		}
		deadline := time.Now().Add(timeout)
		var tok *verifiers.AccessToken
		var err error
		for {
			tok, r.Verifier, err = c.verify(nil, token)
			if !errors.Is(err, verifiers.ErrUnavailable) || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond) // remote keys still loading
		}
		_ = c.release()
		if err != nil {
			out := verifiers.Classify(err)
			r.Status, r.Reason, r.Description, r.Detail = out.Status, out.Reason, out.Description, err.Error()
		} else {
			r.Accepted = true
			r.Identity = &verifyIdentity{ClientID: tok.ClientID, Subject: tok.Subject, Issuer: tok.Issuer,
				Audience: append([]string{}, tok.Audience...), Scopes: append([]string{}, tok.Scopes...), KeyID: tok.KeyID}
			if !tok.ExpiresAt.IsZero() {
				r.Identity.Expires = tok.ExpiresAt.UTC().Format(time.RFC3339)
			}
		}
		results = append(results, r)
	}
	return results
}

func runJWKS(cmd *cobra.Command, a []string) error {
	fl := cmd.Flags()
	asIssuer, _ := fl.GetBool("issuer")
	asURL, _ := fl.GetBool("jwks-uri")
	timeout, _ := fl.GetDuration("timeout")
	asJSON, _ := fl.GetBool("json")
	if asIssuer && asURL {
		return usagef("--issuer and --jwks-uri exclude each other")
	}
	target := strings.TrimSpace(a[0])
	if err := verifiers.CheckURL(target, false); err != nil {
		return usageError{err}
	}
	ctx := context.Background()
	var in *jwks.Inspection
	var errs []error
	if !asIssuer {
		var err error
		if in, err = jwks.Inspect(ctx, jwks.Options{URL: target, Timeout: timeout}); err != nil {
			in, errs = nil, append(errs, fmt.Errorf("as a JWKS URL: %w", err))
		}
	}
	if in == nil && !asURL {
		var err error
		if in, err = jwks.Inspect(ctx, jwks.Options{Issuer: target, Timeout: timeout}); err != nil {
			in, errs = nil, append(errs, fmt.Errorf("as an issuer: %w", err))
		}
	}
	if in == nil {
		return refused("no JWK Set from %s: %w", target, errors.Join(errs...))
	}
	if err := emit(cmd, asJSON, in, func(w io.Writer) { printInspection(w, in) }); err != nil {
		return err
	}
	if in.Usable == 0 {
		return refused("mcp_token would not load this key set: %s", in.SetError)
	}
	return nil
}

func printInspection(w io.Writer, in *jwks.Inspection) {
	if in.Issuer != "" {
		fmt.Fprintf(w, "issuer:   %s\n", in.Issuer)
	}
	fmt.Fprintf(w, "jwks_uri: %s\n", in.JWKSURL)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\tKID\tKTY\tCRV\tALG\tUSE\tKEY\tWHY NOT")
	dash := func(s string) string { return cmp.Or(s, "-") }
	for _, k := range in.Keys {
		verdict := "ACCEPT"
		if !k.Accepted {
			verdict = "REFUSE"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", verdict, dash(strconv.Quote(k.Kid)), dash(k.Kty), dash(k.Crv),
			dash(k.Alg), dash(k.Use), dash(k.Key), k.Reason)
	}
	_ = tw.Flush()
	if in.SetError != "" {
		fmt.Fprintf(w, "the whole set is refused: %s\n", in.SetError)
	}
	fmt.Fprintf(w, "%d of %d keys usable by mcp_token\n", in.Usable, len(in.Keys))
}
