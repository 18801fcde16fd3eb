package mcptoken

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// What the list filter reads (listfilter.go): the events of a stream, and
// the JSON-RPC responses whose list results it filters.

// events passes on every complete event in lw.buf (and, at the end, what
// remains), filtering those that carry a list result.
func (lw *listWriter) events(end bool) error {
	for {
		n, next := eventEnd(lw.buf)
		if n < 0 {
			if len(lw.buf) > lw.max {
				lw.fail(fmt.Errorf("%w: an event larger than max_body (%d bytes)", errListUnfilterable, lw.max))
				return lw.err
			}
			if !end || len(bytes.TrimSpace(lw.buf)) == 0 {
				return nil
			}
			n, next = len(lw.buf), len(lw.buf)
		}
		if n > lw.max {
			lw.fail(fmt.Errorf("%w: an event larger than max_body (%d bytes)", errListUnfilterable, lw.max))
			return lw.err
		}
		event, err := lw.filterEvent(lw.buf[:n], lw.buf[n:next])
		if err != nil {
			lw.fail(err)
			return lw.err
		}
		if !lw.sent {
			lw.ResponseWriter.WriteHeader(lw.status)
			lw.sent = true
		}
		if _, err := lw.ResponseWriter.Write(event); err != nil {
			return err
		}
		lw.buf = lw.buf[:copy(lw.buf, lw.buf[next:])]
		lw.Flush()
	}
}

// eventEnd finds the blank line that ends the first event of an SSE
// stream: n is where that blank line starts (after the event's last line
// and its line ending), next where the next event starts; n is -1 when no
// event is complete. Lines end in CRLF, LF or CR.
func eventEnd(b []byte) (n, next int) {
	for i := 0; i < len(b); i++ {
		if b[i] != '\n' && b[i] != '\r' {
			continue
		}
		j := i + 1
		if b[i] == '\r' && j < len(b) && b[j] == '\n' {
			j++
		} else if b[i] == '\r' && j == len(b) {
			return -1, -1 // a CR at the end may be half of a CRLF
		}
		if j < len(b) && (b[j] == '\n' || b[j] == '\r') {
			k := j + 1
			if b[j] == '\r' {
				if k == len(b) {
					return -1, -1
				}
				if b[k] == '\n' {
					k++
				}
			}
			return j, k
		}
		i = j - 1
	}
	return -1, -1
}

// filterEvent returns the event (its lines, and sep, the blank line after
// them) with a list result in its data filtered; the event as it was when
// it carries none.
func (lw *listWriter) filterEvent(event, sep []byte) ([]byte, error) {
	var data [][]byte
	var other [][]byte
	for _, line := range splitLines(event) {
		if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			data = append(data, bytes.TrimPrefix(v, []byte(" ")))
		} else {
			other = append(other, line)
		}
	}
	out := append(append([]byte(nil), event...), sep...)
	payload := bytes.Join(data, []byte("\n"))
	if len(bytes.TrimSpace(payload)) == 0 {
		return out, nil // no message (a priming event, a comment)
	}
	filtered, err := lw.filterBody(payload) // notifications and errors come back as they were
	if err != nil {
		return nil, err
	}
	if bytes.Equal(filtered, payload) {
		return out, nil
	}
	var b bytes.Buffer
	for _, line := range other {
		b.Write(line)
		b.WriteByte('\n')
	}
	b.WriteString("data: ")
	b.Write(filtered) // compact JSON: no line breaks
	b.WriteString("\n\n")
	return b.Bytes(), nil
}

func splitLines(b []byte) [][]byte {
	var lines [][]byte
	for len(b) > 0 {
		i := bytes.IndexAny(b, "\r\n")
		if i < 0 {
			lines = append(lines, b)
			break
		}
		lines = append(lines, b[:i])
		if b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n' {
			i++
		}
		b = b[i+1:]
	}
	return lines
}

// filterBody filters a JSON-RPC response or batch of responses: in each
// result, the lists of the requested kinds keep only the entries the
// token allows. A body that is not JSON is an error (never passed on).
func (lw *listWriter) filterBody(body []byte) ([]byte, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && trimmed[0] == '[' {
		var msgs []json.RawMessage
		if err := json.Unmarshal(trimmed, &msgs); err != nil {
			return nil, fmt.Errorf("%w: not JSON: %v", errListUnfilterable, err)
		}
		changed := false
		for i, m := range msgs {
			f, err := lw.filterMessage(m)
			if err != nil {
				return nil, err
			}
			if f != nil {
				msgs[i], changed = f, true
			}
		}
		if !changed {
			return body, nil
		}
		return joinArray(msgs), nil
	}
	f, err := lw.filterMessage(trimmed)
	if err != nil || f == nil {
		return body, err
	}
	return f, nil
}

// filterMessage filters one JSON-RPC message; nil when it is unchanged.
func (lw *listWriter) filterMessage(msg []byte) ([]byte, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(msg, &obj); err != nil {
		return nil, fmt.Errorf("%w: not a JSON object: %v", errListUnfilterable, err)
	}
	resKey, ok := member(obj, "result")
	if !ok {
		return nil, fmt.Errorf("%w: result given twice", errListUnfilterable)
	}
	var result map[string]json.RawMessage
	if resKey == "" || json.Unmarshal(obj[resKey], &result) != nil {
		return nil, nil // an error answer, a notification, or no list result
	}
	changed := false
	for _, k := range lw.kinds {
		// Go clients match member names without regard to case: so does
		// the filter, for every member that may be read as the list.
		for key, raw := range result {
			if !strings.EqualFold(key, k.key) {
				continue
			}
			b, err := lw.filterEntries(k, raw)
			if err != nil {
				return nil, err
			}
			if b != nil {
				result[key], changed = b, true
			}
		}
	}
	if !changed {
		return nil, nil
	}
	obj[resKey] = joinObject(result)
	return joinObject(obj), nil
}

// filterEntries filters one list; nil when every entry is kept. An entry
// without one readable name is hidden.
func (lw *listWriter) filterEntries(k listKind, raw json.RawMessage) ([]byte, error) {
	var entries []json.RawMessage
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, fmt.Errorf("%w: %s is not a list", errListUnfilterable, k.key)
	}
	kept := entries[:0]
	for _, e := range entries {
		var named map[string]json.RawMessage
		if json.Unmarshal(e, &named) != nil {
			continue
		}
		key, ok := member(named, k.field)
		var name string
		if ok && key != "" && json.Unmarshal(named[key], &name) == nil && lw.c.listAllows(lw.tok, lw.r, k, name) {
			kept = append(kept, e)
		}
	}
	if len(kept) == len(entries) {
		return nil, nil
	}
	return joinArray(kept), nil
}

// joinArray writes a JSON array of values that a decoder already checked.
func joinArray(vals []json.RawMessage) []byte {
	n := 2
	for _, v := range vals {
		n += len(v) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, v := range vals {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, v...)
	}
	return append(b, ']')
}

// joinObject writes a JSON object of members whose values a decoder
// already checked (in Go's map order: JSON objects are unordered).
func joinObject(m map[string]json.RawMessage) []byte {
	n := 2
	for k, v := range m {
		n += len(k) + len(v) + 4
	}
	b := make([]byte, 0, n)
	b = append(b, '{')
	first := true
	for k, v := range m {
		if !first {
			b = append(b, ',')
		}
		first = false
		key, _ := json.Marshal(k) // escapes the name as JSON requires
		b = append(append(append(b, key...), ':'), v...)
	}
	return append(b, '}')
}

// member finds the member of obj named name, matched without regard to
// case as Go's encoding/json does: key is "" when there is none, and ok is
// false when several members match (a reader could take either).
func member(obj map[string]json.RawMessage, name string) (key string, ok bool) {
	for k := range obj {
		if strings.EqualFold(k, name) {
			if key != "" {
				return "", false
			}
			key = k
		}
	}
	return key, true
}
