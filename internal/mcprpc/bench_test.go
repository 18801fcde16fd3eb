package mcprpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// benchBody is a 1 KiB tools/call as MCP clients send it.
var benchBody = func() []byte {
	b := `{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"_meta":{"progressToken":"p-42",` +
		`"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientInfo":{"name":"ExampleClient","version":"1.0.0"},` +
		`"io.modelcontextprotocol/clientCapabilities":{}},"name":"deploy","arguments":{"service":"billing-api","region":"eu-west-1",` +
		`"replicas":3,"dry_run":false,"labels":{"team":"payments","tier":"critical"},"notes":"` +
		strings.Repeat("rolling deploy after review; ", 16) + `"}}}`
	for len(b) < 1024 {
		b = strings.Replace(b, `"notes":"`, `"notes":"x`, 1)
	}
	return []byte(b)
}()

func TestBenchBodyIsOneKiB(t *testing.T) {
	if len(benchBody) != 1024 {
		t.Fatalf("%d bytes", len(benchBody))
	}
	calls, _, err := Parse(benchBody, Options{})
	if err != nil || calls[0].Method != "tools/call" || calls[0].Name != "deploy" || string(calls[0].ID) != "42" {
		t.Fatalf("%+v %v", calls, err)
	}
	old, _, err := baselineParseCalls(benchBody)
	if err != nil || old[0] != (baselineCall{"tools/call", "deploy"}) {
		t.Fatalf("baseline: %+v %v", old, err)
	}
}

func BenchmarkParse(b *testing.B) {
	for _, bc := range []struct {
		name string
		run  func() error
	}{
		{"baseline_parseCalls", func() error { _, _, err := baselineParseCalls(benchBody); return err }},
		{"mcprpc", func() error { _, _, err := Parse(benchBody, Options{}); return err }},
		{"mcprpc_raw_arguments", func() error { _, _, err := Parse(benchBody, Options{RawArguments: true}); return err }},
		{"mcprpc_decoded_arguments", func() error { _, _, err := Parse(benchBody, Options{DecodeArguments: true}); return err }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(benchBody)))
			for b.Loop() {
				if err := bc.run(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// The parser the gateway used before this package (mcprequest.go at
// 6c7bea5), copied as the benchmark's baseline.

type baselineCall struct {
	method string
	name   string
}

func baselineParseCalls(body []byte) ([]baselineCall, bool, error) {
	body = bytes.TrimSpace(body)
	if len(body) > 0 && body[0] == '[' {
		var raw []json.RawMessage
		if err := json.Unmarshal(body, &raw); err != nil || len(raw) == 0 {
			return nil, true, errors.New("not a JSON-RPC batch")
		}
		calls := make([]baselineCall, 0, len(raw))
		for _, m := range raw {
			c, err := baselineParseCall(m)
			if err != nil {
				return nil, true, err
			}
			calls = append(calls, c)
		}
		return calls, true, nil
	}
	c, err := baselineParseCall(body)
	return []baselineCall{c}, false, err
}

func baselineParseCall(msg []byte) (baselineCall, error) {
	obj, err := baselineStrictObject(msg)
	if err != nil {
		return baselineCall{}, fmt.Errorf("not a JSON-RPC message: %w", err)
	}
	var c baselineCall
	if raw, ok := obj["method"]; ok {
		if err := json.Unmarshal(raw, &c.method); err != nil {
			return baselineCall{}, errors.New("method is not a string")
		}
	}
	if raw, ok := obj["params"]; ok && len(bytes.TrimSpace(raw)) > 0 && bytes.TrimSpace(raw)[0] == '{' {
		params, err := baselineStrictObject(raw)
		if err != nil {
			return baselineCall{}, fmt.Errorf("params: %w", err)
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

func baselineStrictObject(data []byte) (map[string]json.RawMessage, error) {
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
