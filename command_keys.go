package mcptoken

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mcptoken/caddy-mcp-token/devtools"
	"github.com/spf13/cobra"
)

// caddy mcp-token keygen and mint.

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
