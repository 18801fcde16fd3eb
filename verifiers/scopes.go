package verifiers

import (
	"fmt"
	"slices"
	"strings"
)

// ScopeHierarchy says which narrower scopes a broader scope implies. MCP
// 2026-07-28 (basic/authorization): "Servers MUST account for scope
// hierarchies, where a broader scope implies narrower ones". With
// "mcp:admin implies mcp:write", a token granted mcp:admin passes every
// check for mcp:write. Challenges still name the scopes an operation
// needs, not the broader ones that would also do (same revision, "Runtime
// Insufficient Scope Errors" as SEP-2350 aligned it with RFC 6750 §3.1).
//
// Implications are transitive and may not form a cycle. The zero value and
// nil imply nothing. A built hierarchy is read-only and safe for
// concurrent use.
type ScopeHierarchy struct {
	direct  map[string][]string // broad → the narrow scopes its rules name
	closure map[string][]string // broad → every scope it implies, transitively
}

// CycleError is returned by ScopeHierarchy.Add for a rule that would close
// a cycle.
type CycleError struct {
	// Path is the cycle, first scope repeated last (a → b → a).
	Path []string
}

func (e *CycleError) Error() string {
	return "scope implications form a cycle: " + strings.Join(e.Path, " → ")
}

// Add records that broad implies each of narrow. A rule that would make a
// scope imply itself, directly or through other rules, is refused with a
// *CycleError and leaves the hierarchy unchanged.
func (h *ScopeHierarchy) Add(broad string, narrow ...string) error {
	if broad == "" {
		return fmt.Errorf("scope implication: empty scope")
	}
	for _, n := range narrow {
		if n == "" {
			return fmt.Errorf("scope implication: empty scope")
		}
		if n == broad {
			return &CycleError{Path: []string{broad, broad}}
		}
		if path := h.path(n, broad); path != nil {
			return &CycleError{Path: append([]string{broad}, path...)}
		}
	}
	if h.direct == nil {
		h.direct = map[string][]string{}
	}
	for _, n := range narrow {
		if !slices.Contains(h.direct[broad], n) {
			h.direct[broad] = append(h.direct[broad], n)
		}
	}
	h.close()
	return nil
}

// path returns a chain of direct implications from one scope to another
// (both included), or nil when from does not imply to.
func (h *ScopeHierarchy) path(from, to string) []string {
	if from == to {
		return []string{to}
	}
	for _, n := range h.direct[from] {
		if p := h.path(n, to); p != nil {
			return append([]string{from}, p...)
		}
	}
	return nil // terminates: the graph has no cycle
}

// close recomputes the transitive closure (configuration time only).
func (h *ScopeHierarchy) close() {
	h.closure = make(map[string][]string, len(h.direct))
	var walk func(s string, into []string) []string
	walk = func(s string, into []string) []string {
		for _, n := range h.direct[s] {
			if !slices.Contains(into, n) {
				into = walk(n, append(into, n))
			}
		}
		return into
	}
	for broad := range h.direct {
		all := walk(broad, nil)
		slices.Sort(all)
		h.closure[broad] = all
	}
}

// Empty reports whether the hierarchy implies nothing.
func (h *ScopeHierarchy) Empty() bool { return h == nil || len(h.closure) == 0 }

// Implied returns every scope broad implies, transitively, sorted; nil
// when it implies none. The slice must not be modified.
func (h *ScopeHierarchy) Implied(broad string) []string {
	if h == nil {
		return nil
	}
	return h.closure[broad]
}

// Expand returns scopes followed by every scope they imply that they do
// not already hold, without repeats; scopes itself (not a copy) when
// nothing is added.
func (h *ScopeHierarchy) Expand(scopes []string) []string {
	if h.Empty() {
		return scopes
	}
	out := scopes
	copied := false
	for _, s := range scopes {
		for _, n := range h.closure[s] {
			if slices.Contains(out, n) {
				continue
			}
			if !copied {
				out = slices.Clip(slices.Clone(scopes))
				copied = true
			}
			out = append(out, n)
		}
	}
	return out
}

// Apply returns the token with its effective scopes: its own scopes and
// every scope they imply, which HasScopes and RequireScopes then check. It
// never modifies t (verifiers may share it, as the introspection cache
// does): when the hierarchy adds a scope it returns a shallow copy. The
// token's Scopes field keeps the scopes the token itself carries.
func (h *ScopeHierarchy) Apply(t *AccessToken) *AccessToken {
	if t == nil || h.Empty() {
		return t
	}
	granted := h.Expand(t.Scopes)
	if len(granted) == len(t.Scopes) {
		return t
	}
	c := *t
	c.granted = granted
	return &c
}
