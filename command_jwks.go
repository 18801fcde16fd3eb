package mcptoken

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/mcptoken/caddy-mcp-token/jwks"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
	"github.com/spf13/cobra"
)

// caddy mcp-token jwks: what the module accepts of a provider's key set.

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
