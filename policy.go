package mcptoken

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/interpreter"

	"github.com/mcptoken/caddy-mcp-token/internal/mcprpc"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

// allow_if rules: CEL expressions over the token and the MCP call. A
// request passes when its scopes pass and, if any rule is configured, at
// least one rule is true for each of its calls. Rules are compiled and
// type-checked when the config is parsed and provisioned; they run with a
// cost limit, and an evaluation error refuses (fail closed).
//
// Variables: claims (map), client_id, sub, iss (strings), scopes (list of
// strings), mcp.method, mcp.name, mcp.arguments (map; the body's
// arguments are decoded only when a rule reads mcp.arguments),
// request.method, request.path, request.host, request.remote_ip.

// PolicyCostLimit bounds the work of one rule evaluation (CEL's cost
// units: about one per operation, and per element of a list or map walked).
const PolicyCostLimit = 100_000

// policyEnv is the CEL environment shared by every rule (immutable).
var policyEnv = sync.OnceValues(func() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("claims", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("client_id", cel.StringType),
		cel.Variable("sub", cel.StringType),
		cel.Variable("iss", cel.StringType),
		cel.Variable("scopes", cel.ListType(cel.StringType)),
		cel.Variable("mcp", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("request", cel.MapType(cel.StringType, cel.StringType)),
	)
})

// allowRules is the compiled allow_if rules of one config.
type allowRules struct {
	rules []policyRule
	// args: some rule reads mcp.arguments, so the body's arguments are
	// decoded (only then).
	args bool
}

type policyRule struct {
	src  string
	prg  cel.Program
	list cel.Program // partial evaluation with mcp.arguments unknown (list filtering); nil when args is not read
}

// argsDecoded counts the request bodies whose arguments were decoded for
// the rules (tests and benchmarks check that nothing else pays for it).
var argsDecoded atomic.Int64

// compileRule compiles and type-checks one expression; the error is CEL's
// message, with the position in the expression.
func compileRule(src string) (*cel.Ast, bool, error) {
	env, err := policyEnv()
	if err != nil {
		return nil, false, fmt.Errorf("cel environment: %w", err)
	}
	checked, iss := env.Compile(src)
	if iss.Err() != nil {
		return nil, false, errors.New(iss.String())
	}
	if out := checked.OutputType(); !out.IsExactType(cel.BoolType) && !out.IsExactType(cel.DynType) {
		return nil, false, fmt.Errorf("the expression is a %s, not a bool", out)
	}
	return checked, readsArguments(checked), nil
}

// readsArguments reports whether an expression may read mcp.arguments:
// any use of mcp other than mcp.method and mcp.name counts.
func readsArguments(checked *cel.Ast) bool {
	root := ast.NavigateAST(checked.NativeRep())
	for _, id := range ast.MatchDescendants(root, ast.KindMatcher(ast.IdentKind)) {
		if id.AsIdent() != "mcp" {
			continue
		}
		parent, ok := id.Parent()
		if !ok || parent.Kind() != ast.SelectKind {
			return true
		}
		if f := parent.AsSelect().FieldName(); f != "method" && f != "name" {
			return true
		}
	}
	return false
}

// newPolicy compiles the rules; nil when there are none.
func newPolicy(srcs []string) (*allowRules, error) {
	if len(srcs) == 0 {
		return nil, nil
	}
	env, err := policyEnv()
	if err != nil {
		return nil, fmt.Errorf("cel environment: %w", err)
	}
	p := &allowRules{}
	for i, src := range srcs {
		checked, args, err := compileRule(src)
		if err != nil {
			return nil, fmt.Errorf("allow_if %d: %w", i+1, err)
		}
		rule := policyRule{src: src}
		if rule.prg, err = env.Program(checked, cel.CostLimit(PolicyCostLimit)); err != nil {
			return nil, fmt.Errorf("allow_if %d: %w", i+1, err)
		}
		if args {
			p.args = true
			if rule.list, err = env.Program(checked, cel.CostLimit(PolicyCostLimit), cel.EvalOptions(cel.OptPartialEval)); err != nil {
				return nil, fmt.Errorf("allow_if %d: %w", i+1, err)
			}
		}
		p.rules = append(p.rules, rule)
	}
	return p, nil
}

// policyError is ErrPolicyDenied with what happened (for logs only).
type policyError struct {
	call  string
	cause error // an evaluation error, nil when every rule was false
}

func (e *policyError) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("policy refused %s: evaluation failed (fail closed): %v", e.call, e.cause)
	}
	return "policy refused " + e.call + ": no allow_if rule is true"
}
func (e *policyError) Is(target error) bool { return target == verifiers.ErrPolicyDenied }

// allows runs the rules on every call of the request (once, with empty
// mcp values, when the body was not read): each call needs one true rule.
func (p *allowRules) allows(tok *verifiers.AccessToken, r *http.Request, calls []mcprpc.Call) error {
	if p == nil {
		return nil
	}
	in := policyInput{tok: tok, r: r}
	if len(calls) == 0 {
		return p.allowsOne(&in)
	}
	for _, call := range calls {
		in.call, in.mcp = call, nil
		if err := p.allowsOne(&in); err != nil {
			return err
		}
	}
	return nil
}

func (p *allowRules) allowsOne(in *policyInput) error {
	var firstErr error
	for _, rule := range p.rules {
		val, _, err := rule.prg.Eval(in)
		if err == nil {
			if b, ok := val.(types.Bool); ok {
				if b {
					return nil
				}
				continue
			}
			err = fmt.Errorf("allow_if %q is a %s, not a bool", rule.src, val.Type().TypeName())
		}
		if firstErr == nil {
			firstErr = fmt.Errorf("allow_if %q: %w", rule.src, err)
		}
	}
	return &policyError{call: in.describe(), cause: firstErr}
}

// allowsListed reports whether some rule may allow the call method/name
// for this caller, whatever its arguments (they are unknown when a list
// is filtered: a rule that depends on them does not hide the entry). An
// evaluation error hides it.
func (p *allowRules) allowsListed(tok *verifiers.AccessToken, r *http.Request, method, name string) bool {
	if p == nil {
		return true
	}
	in := policyInput{tok: tok, r: r, call: mcprpc.Call{Method: method, Name: name}}
	for _, rule := range p.rules {
		prg, act := rule.prg, interpreter.Activation(&in)
		if rule.list != nil {
			prg = rule.list
			pa, err := cel.PartialVars(&in, cel.AttributePattern("mcp").QualString("arguments"))
			if err != nil {
				continue
			}
			act = pa
		}
		val, _, err := prg.Eval(act)
		if err != nil {
			continue
		}
		if b, ok := val.(types.Bool); (ok && bool(b)) || types.IsUnknown(val) {
			return true
		}
	}
	return false
}

// policyInput is the variables of one evaluation, built on demand.
type policyInput struct {
	tok  *verifiers.AccessToken
	r    *http.Request
	call mcprpc.Call
	mcp  map[string]any
}

// ResolveName implements interpreter.Activation.
func (in *policyInput) ResolveName(name string) (any, bool) {
	switch name {
	case "claims":
		if in.tok.Claims == nil {
			return map[string]any{}, true
		}
		return in.tok.Claims, true
	case "client_id":
		return in.tok.ClientID, true
	case "sub":
		return in.tok.Subject, true
	case "iss":
		return in.tok.Issuer, true
	case "scopes":
		if in.tok.Scopes == nil {
			return []string{}, true
		}
		return in.tok.Scopes, true
	case "mcp":
		if in.mcp == nil {
			args := in.call.Arguments
			if args == nil {
				args = map[string]any{}
			}
			in.mcp = map[string]any{"method": in.call.Method, "name": in.call.Name, "arguments": args}
		}
		return in.mcp, true
	case "request":
		if in.r == nil {
			return map[string]string{}, true
		}
		return map[string]string{
			"method":    in.r.Method,
			"path":      in.r.URL.Path,
			"host":      in.r.Host,
			"remote_ip": clientAddress(in.r),
		}, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (in *policyInput) Parent() interpreter.Activation { return nil }

func (in *policyInput) describe() string {
	switch {
	case in.call.Method == "":
		return "the request"
	case in.call.Name == "":
		return in.call.Method
	}
	return fmt.Sprintf("%s %q", in.call.Method, in.call.Name)
}
