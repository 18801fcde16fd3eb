package mcptoken

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/spf13/cobra"

	"github.com/mcptoken/caddy-mcp-token/devtools"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

func init() {
	caddycmd.RegisterCommand(caddycmd.Command{
		Name:  "mcp-token",
		Usage: "keygen|mint|inspect|verify",
		Short: "Development tools for mcp_token: keys, tokens, and offline checks",
		Long: `
Development tools for the mcp_token module:

  keygen   generate a key pair (private PEM, public PEM, JWKS) or an HMAC secret
  mint     sign a token with a key from keygen
  inspect  decode a token's header and claims, WITHOUT verifying it
  verify   run a Caddy config's mcp_token verifiers on a token and say why
           it is accepted or refused`,
		CobraFunc: addMCPTokenCommands,
	})
}

// addMCPTokenCommands builds the `caddy mcp-token` subcommands under cmd.
func addMCPTokenCommands(cmd *cobra.Command) {
	keygen := &cobra.Command{
		Use:   "keygen [--alg RS256|PS256|ES256|ES384|ES512|EdDSA|HS256|HS384|HS512] [--bits 2048] [--kid ID] [--out DIR]",
		Short: "Generates a key pair (or an HMAC secret) for development",
		Long: `
Generates a signing key. With --out, writes private.pem (mode 0600),
public.pem and jwks.json (asymmetric) or secret.txt (HMAC) into DIR;
otherwise prints them. Configure mcp_token with public_key public.pem (or
serve jwks.json), and sign tokens with "caddy mcp-token mint --key private.pem".`,
		Args: cobra.NoArgs,
		RunE: runKeygen,
	}
	keygen.Flags().String("alg", "RS256", "algorithm")
	keygen.Flags().Int("bits", 2048, "RSA key size")
	keygen.Flags().String("kid", "", "key id (default: derived from the public key)")
	keygen.Flags().String("out", "", "directory to write the files to (default: print)")

	mint := &cobra.Command{
		Use:   "mint --key FILE [--alg ALG] [--iss URL] [--aud AUD]... [--sub SUB] [--scope S]... [--ttl 1h] [--claim k=v]... [--kid ID] [--typ at+jwt]",
		Short: "Signs a token for development and tests",
		Long: `
Signs a JWT with a private key or HMAC secret file from keygen. Defaults
follow FastMCP's create_token: sub fastmcp-user, iss
https://fastmcp.example.com, expiry in one hour. --claim values are JSON
when they parse as JSON (numbers, true, lists), strings otherwise.`,
		Args: cobra.NoArgs,
		RunE: runMint,
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
		Use:   "inspect TOKEN",
		Short: "Decodes a token WITHOUT verifying it",
		Args:  cobra.ExactArgs(1),
		RunE:  runInspect,
	}

	verify := &cobra.Command{
		Use:   "verify --config FILE [--adapter caddyfile] TOKEN",
		Short: "Runs a config's mcp_token verifiers on a token and says why it passes or not",
		Long: `
Loads the config (a Caddyfile by default), finds every mcp_token handler
and authentication provider, and verifies TOKEN with each, as a request
would be: static keys and secrets need no network; JWKS and introspection
endpoints are called. Exits 0 when at least one accepts the token.`,
		Args: cobra.ExactArgs(1),
		RunE: runVerify,
	}
	verify.Flags().StringP("config", "c", "", "configuration file (required)")
	verify.Flags().StringP("adapter", "a", "", "config adapter (default: caddyfile unless the file ends in .json)")
	verify.Flags().Duration("timeout", 10*time.Second, "how long to wait for remote keys or introspection")

	cmd.AddCommand(keygen, mint, inspect, verify)
}

func runKeygen(cmd *cobra.Command, _ []string) error {
	fl := cmd.Flags()
	alg, _ := fl.GetString("alg")
	bits, _ := fl.GetInt("bits")
	kid, _ := fl.GetString("kid")
	out, _ := fl.GetString("out")
	kp, err := devtools.GenerateKey(alg, bits, kid)
	if err != nil {
		return err
	}
	priv, err := kp.PrivatePEM()
	if err != nil {
		return err
	}
	type outFile struct {
		name, content string
		mode          os.FileMode
	}
	var files []outFile
	if _, isSecret := kp.Private.([]byte); isSecret {
		files = append(files, outFile{"secret.txt", priv, 0o600})
	} else {
		pub, err := kp.PublicPEM()
		if err != nil {
			return err
		}
		jwks, err := devtools.JWKSDocument(kp)
		if err != nil {
			return err
		}
		files = append(files, outFile{"private.pem", priv, 0o600}, outFile{"public.pem", pub, 0o644},
			outFile{"jwks.json", string(jwks) + "\n", 0o644})
	}
	w := cmd.OutOrStdout()
	if out == "" {
		for _, f := range files {
			fmt.Fprintf(w, "# %s\n%s", f.name, f.content)
		}
		return nil
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, f := range files {
		path := filepath.Join(out, f.name)
		if err := os.WriteFile(path, []byte(f.content), f.mode); err != nil {
			return err
		}
		fmt.Fprintf(w, "wrote %s\n", path)
	}
	fmt.Fprintf(w, "algorithm %s, kid %s\n", kp.Alg, kp.Kid)
	return nil
}

func runMint(cmd *cobra.Command, _ []string) error {
	fl := cmd.Flags()
	keyFile, _ := fl.GetString("key")
	if keyFile == "" {
		return errors.New("--key is required (a private key or secret file from keygen)")
	}
	data, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	alg, _ := fl.GetString("alg")
	kp, err := devtools.ParseSigningKey(data, alg)
	if err != nil {
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
		return errors.New("--ttl must not be 0 (tokens must expire)")
	}
	claims, _ := fl.GetStringArray("claim")
	for _, c := range claims {
		k, v, ok := strings.Cut(c, "=")
		if !ok || k == "" {
			return fmt.Errorf("--claim %q: want key=value", c)
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
		return err
	}
	fmt.Fprintln(cmd.OutOrStdout(), tok)
	return nil
}

func runInspect(cmd *cobra.Command, args []string) error {
	header, claims, err := devtools.Decode(args[0])
	if err != nil {
		return err
	}
	w := cmd.OutOrStdout()
	fmt.Fprintln(w, "WARNING: decoded only; the signature and claims were NOT verified.")
	for _, part := range []struct {
		name string
		m    map[string]any
	}{{"header", header}, {"claims", claims}} {
		b, _ := json.MarshalIndent(part.m, "", "  ")
		fmt.Fprintf(w, "%s: %s\n", part.name, b)
	}
	now := time.Now()
	for _, name := range []string{"iat", "nbf", "exp"} {
		t, ok := verifiers.NumericDate(claims[name])
		if !ok {
			continue
		}
		rel := t.Sub(now).Round(time.Second)
		when := "in " + rel.String()
		if rel < 0 {
			when = (-rel).String() + " ago"
		}
		fmt.Fprintf(w, "%s: %s (%s)\n", name, t.UTC().Format(time.RFC3339), when)
	}
	if _, ok := claims["exp"]; !ok {
		fmt.Fprintln(w, "exp: missing (mcp_token refuses tokens without exp)")
	}
	return nil
}

func runVerify(cmd *cobra.Command, args []string) error {
	fl := cmd.Flags()
	configFile, _ := fl.GetString("config")
	adapter, _ := fl.GetString("adapter")
	timeout, _ := fl.GetDuration("timeout")
	if configFile == "" {
		return errors.New("--config is required")
	}
	data, err := os.ReadFile(configFile)
	if err != nil {
		return err
	}
	if adapter == "" && !strings.HasSuffix(configFile, ".json") {
		adapter = "caddyfile"
	}
	if adapter != "" {
		a := caddyconfig.GetAdapter(adapter)
		if a == nil {
			return fmt.Errorf("unknown adapter %q", adapter)
		}
		if data, _, err = a.Adapt(data, map[string]any{"filename": configFile}); err != nil {
			return err
		}
	}
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		return err
	}
	found := findMCPTokenConfigs(doc)
	if len(found) == 0 {
		return fmt.Errorf("%s has no mcp_token handler or provider", configFile)
	}
	w := cmd.OutOrStdout()
	accepted := verifyWithConfigs(w, found, args[0], timeout)
	if accepted == 0 {
		return errors.New("the token is refused by every mcp_token in the config")
	}
	return nil
}

// findMCPTokenConfigs returns every mcp_token handler and provider config
// in a Caddy JSON document.
func findMCPTokenConfigs(doc any) []json.RawMessage {
	var out []json.RawMessage
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if x["handler"] == "mcp_token" {
				b, _ := json.Marshal(x)
				out = append(out, b)
			}
			if providers, ok := x["providers"].(map[string]any); ok && x["handler"] == "authentication" {
				if p, ok := providers["mcp_token"]; ok {
					b, _ := json.Marshal(p)
					out = append(out, b)
				}
			}
			for _, k := range slices.Sorted(maps.Keys(x)) {
				walk(x[k])
			}
		case []any:
			for _, e := range x {
				walk(e)
			}
		}
	}
	walk(doc)
	return out
}

// verifyWithConfigs provisions each config and verifies the token with
// it, printing the outcome; it returns how many accepted.
func verifyWithConfigs(w io.Writer, configs []json.RawMessage, token string, timeout time.Duration) int {
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	defer cancel()
	accepted := 0
	for i, raw := range configs {
		var cfg Config
		if err := json.Unmarshal(raw, &cfg); err != nil {
			fmt.Fprintf(w, "mcp_token %d: config error: %v\n", i+1, err)
			continue
		}
		c := new(core)
		if err := cfg.provision(ctx, c); err != nil {
			fmt.Fprintf(w, "mcp_token %d: config error: %v\n", i+1, err)
			_ = c.release()
			continue
		}
		deadline := time.Now().Add(timeout)
		var tok *verifiers.AccessToken
		var kind string
		var err error
		for {
			tok, kind, err = c.verify(nil, token)
			if !errors.Is(err, verifiers.ErrUnavailable) || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond) // remote keys still loading
		}
		_ = c.release()
		if err != nil {
			out := verifiers.Classify(err)
			fmt.Fprintf(w, "mcp_token %d: REJECT (%s verifier) %d %s: %s\n  detail: %v\n", i+1, kind, out.Status, out.Reason, out.Description, err)
			continue
		}
		accepted++
		md := userMetadata(tok)
		fmt.Fprintf(w, "mcp_token %d: ACCEPT (%s verifier) client_id=%q sub=%q iss=%q aud=%q scopes=%q exp=%s\n",
			i+1, kind, md["client_id"], md["sub"], md["iss"], md["aud"], md["scopes"], md["exp"])
	}
	return accepted
}
