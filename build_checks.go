package mcptoken

import (
	"fmt"
	"maps"
	"regexp"
	"slices"

	"github.com/caddyserver/caddy/v2"
)

// Checks and helpers of provisioning: warnings, scope syntax, and the
// one way placeholders are resolved (with errors that never show a value).

// audienceWarnings names each verifier that enforces no audience (a token
// the same issuer minted for any other service would pass). resource
// counts as the top-level audience, since it is enforced as one.
func (cfg *Config) audienceWarnings() []string {
	var out []string
	ps, _ := cfg.policies()
	for _, p := range ps {
		if len(p.audiences) > 0 {
			continue
		}
		who := "JWT verification"
		if p.block {
			who = "issuer " + p.issuers[0]
		}
		out = append(out, who+": no audience configured: tokens issued for any service are accepted (set audience, or resource)")
	}
	if ic := cfg.Introspection; ic != nil && len(orList(ic.Audiences, cfg.audiences())) == 0 {
		out = append(out, "introspection: no audience configured: active tokens issued for any service are accepted (set audience, or resource)")
	}
	return out
}

// checkScopes applies checkScope to every scope of the configuration, for
// JSON configs (the Caddyfile parser checks them as it reads them).
func (cfg *Config) checkScopes() error {
	lists := map[string][]string{"required_scopes": cfg.RequiredScopes, "scopes_supported": cfg.ScopesSupported}
	for name, rules := range map[string]map[string][]string{"method_scopes": cfg.MethodScopes, "tool_scopes": cfg.ToolScopes} {
		for k, v := range rules {
			lists[name+" "+k] = v
		}
	}
	for _, ic := range cfg.IssuerConfigs {
		lists["issuer "+ic.Issuer+": required_scopes"] = ic.RequiredScopes
	}
	if cfg.Introspection != nil {
		lists["introspection: required_scopes"] = cfg.Introspection.RequiredScopes
	}
	for i, st := range cfg.StaticTokens {
		lists[fmt.Sprintf("static token %d: scopes", i+1)] = st.Scopes
	}
	for _, name := range slices.Sorted(maps.Keys(lists)) {
		for _, s := range lists[name] {
			if err := checkScope(s); err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	return nil
}

// resolve replaces the placeholders of an option's value, once, at start.
// A value written with placeholders that resolves to nothing is an error
// naming the option and the placeholder as written — never a value, which
// may be a secret.
func resolve(repl *caddy.Replacer, option, value string) (string, error) {
	out := repl.ReplaceKnown(value, "")
	if out == "" && hasPlaceholder(value) {
		return "", fmt.Errorf("%s %s: resolves to an empty value%s", option, value, emptyHint(value))
	}
	return out, nil
}

var envPlaceholder = regexp.MustCompile(`\{env\.([^}]+)\}`)
var filePlaceholder = regexp.MustCompile(`\{file\.([^}]+)\}`)

// emptyHint says why a placeholder may have resolved to nothing.
func emptyHint(value string) string {
	if m := envPlaceholder.FindStringSubmatch(value); m != nil {
		return fmt.Sprintf(" (the environment variable %s is unset or empty)", m[1])
	}
	if m := filePlaceholder.FindStringSubmatch(value); m != nil {
		return fmt.Sprintf(" (the file %s is missing or empty)", m[1])
	}
	return ""
}

// fromPlaceholder names the option and its placeholder text in an error
// about a value that came from a placeholder.
func fromPlaceholder(option, value string, err error) error {
	if hasPlaceholder(value) {
		return fmt.Errorf("%s %s: %w", option, value, err)
	}
	return err
}

// orList returns list, or def when list is empty.
func orList(list, def []string) []string {
	if len(list) > 0 {
		return list
	}
	return def
}

func replaceAll(repl *caddy.Replacer, in []string) []string {
	if in == nil {
		return nil
	}
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = repl.ReplaceKnown(s, "")
	}
	return out
}
