package mcptoken

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"

	"github.com/mcptoken/caddy-mcp-token/internal/mcprpc"

	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// DefaultMaxBody bounds the JSON-RPC body the handler inspects.
const DefaultMaxBody = 1 << 20

// rpcCall is what the gateway needs from one JSON-RPC message.
type rpcCall struct {
	method string // "" for a response
	name   string // params.name, or params.uri, when a string
	args   any    // params.arguments decoded, when a policy rule reads them
}

// scopeRules are the per-method and per-name scope requirements: tools
// (tools/call by params.name), prompts (prompts/get by params.name) and
// resources (resources/read by params.uri).
type scopeRules struct {
	method   map[string][]string
	tool     map[string][]string
	prompt   map[string][]string
	resource map[string][]string
}

func (s scopeRules) empty() bool { return len(s.method) == 0 && !s.byName() }

// byName reports a rule on a tool, prompt or resource name.
func (s scopeRules) byName() bool { return len(s.tool)+len(s.prompt)+len(s.resource) > 0 }

// needed is every scope the calls require: the global ones, then each
// method's, then each called tool's, without repeats.
func (s scopeRules) needed(global []string, calls []rpcCall) []string {
	out := slices.Clone(global)
	add := func(scopes []string) {
		for _, sc := range scopes {
			if !slices.Contains(out, sc) {
				out = append(out, sc)
			}
		}
	}
	for _, c := range calls {
		add(s.method[c.method])
		switch c.method {
		case "tools/call":
			add(s.tool[c.name])
		case "prompts/get":
			add(s.prompt[c.name])
		case "resources/read":
			add(s.resource[c.name])
		}
	}
	return out
}

// readBody reads the request body up to max bytes and puts it back, byte
// for byte, for the handlers after this one.
func readBody(r *http.Request, max int64) ([]byte, error) {
	if r.Body == nil || r.Body == http.NoBody {
		return nil, nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, max+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading the body: %v", verifiers.ErrBadRequest, err)
	}
	if int64(len(body)) > max {
		return nil, fmt.Errorf("%w: more than %d bytes", verifiers.ErrBodyTooLarge, max)
	}
	_ = r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	return body, nil
}

// parseCalls reads a JSON-RPC message or batch. Keys are matched exactly
// (encoding/json would match "METHOD" too) and a duplicated key is
// refused, so the gateway and the backend cannot read different methods
// or names from one body.
func parseCalls(body []byte) ([]rpcCall, bool, error) {
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '[' {
		var raw []json.RawMessage
		if err := json.Unmarshal(body, &raw); err != nil || len(raw) == 0 {
			return nil, true, errors.New("not a JSON-RPC batch")
		}
		calls := make([]rpcCall, 0, len(raw))
		for _, m := range raw {
			c, err := parseCall(m)
			if err != nil {
				return nil, true, err
			}
			calls = append(calls, c)
		}
		return calls, true, nil
	}
	c, err := parseCall(body)
	return []rpcCall{c}, false, err
}

func parseCall(msg []byte) (rpcCall, error) {
	obj, err := strictObject(msg)
	if err != nil {
		return rpcCall{}, fmt.Errorf("not a JSON-RPC message: %w", err)
	}
	var c rpcCall
	if raw, ok := obj["method"]; ok {
		if err := json.Unmarshal(raw, &c.method); err != nil {
			return rpcCall{}, errors.New("method is not a string")
		}
	}
	if raw, ok := obj["params"]; ok && len(bytes.TrimSpace(raw)) > 0 && bytes.TrimSpace(raw)[0] == '{' {
		params, err := strictObject(raw)
		if err != nil {
			return rpcCall{}, fmt.Errorf("params: %w", err)
		}
		for _, key := range []string{"name", "uri"} {
			if v, ok := params[key]; ok {
				var s string
				if json.Unmarshal(v, &s) == nil {
					c.name = s
					break
				}
			}
		}
	}
	return c, nil
}

// strictObject decodes a JSON object into its members, refusing duplicate
// keys.
func strictObject(data []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	out := map[string]json.RawMessage{}
	for dec.More() {
		kt, err := dec.Token()
		if err != nil {
			return nil, err
		}
		key, _ := kt.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("duplicate key %q", key)
		}
		out[key] = v
	}
	if _, err := dec.Token(); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data")
	}
	return out, nil
}

// inspect reads a POST's JSON-RPC body when the rules or the MCP headers
// need it, checks that Mcp-Method / Mcp-Name agree with it, and returns
// the scopes the request needs beyond the global ones, and the calls read
// (nil when the body was not read).
func (c *core) inspect(r *http.Request) ([]string, []rpcCall, error) {
	mh := readMcpHeaders(r.Header)
	hasHeaders := mh.present() || mh.required()
	if r.Method != http.MethodPost || (c.rules.empty() && c.allow == nil && !hasHeaders) {
		return c.requiredScopes, nil, nil
	}
	body, err := readBody(r, c.maxBody)
	if err != nil {
		return nil, nil, err
	}
	calls, batch, err := c.parseBody(body)
	if err != nil {
		if !c.rules.empty() || c.allow != nil {
			return nil, nil, fmt.Errorf("%w: %v", verifiers.ErrBadBody, err)
		}
		return nil, nil, fmt.Errorf("%w: %v", verifiers.ErrHeaderMismatch, err)
	}
	if err := mh.check(calls, batch, body); err != nil {
		return nil, nil, err
	}
	return c.rules.needed(c.requiredScopes, calls), calls, nil
}

// parseBody reads the calls of a body; their arguments too (decoded by
// mcprpc.Parse, which refuses what two JSON readers could read
// differently) only when a policy rule reads mcp.arguments.
func (c *core) parseBody(body []byte) ([]rpcCall, bool, error) {
	if c.allow == nil || !c.allow.args {
		return parseCalls(body)
	}
	argsDecoded.Add(1)
	parsed, batch, err := mcprpc.Parse(body, mcprpc.Options{DecodeArguments: true})
	if err != nil {
		return nil, batch, err
	}
	calls := make([]rpcCall, len(parsed))
	for i, p := range parsed {
		calls[i] = rpcCall{method: p.Method, name: p.Name, args: p.Arguments}
	}
	return calls, batch, nil
}
