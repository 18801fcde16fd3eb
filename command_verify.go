package mcptoken

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/mcptoken/caddy-mcp-token/devtools"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
	"github.com/spf13/cobra"
)

// caddy mcp-token inspect and verify.

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
