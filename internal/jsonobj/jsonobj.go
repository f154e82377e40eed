// Package jsonobj writes JSON numbers that may not be finite, and joins JSON
// objects, for the types that carry such numbers (sdk.Bound) and the types
// that embed them.
//
// The rule, for every JSON the project writes (the SDK's types, the CLI's
// --json, the server's answers, the benchmarks' reports): a float that is
// +Inf, -Inf or NaN is written as the JSON string "+Inf", "-Inf" or "NaN"
// (as Prometheus' JSON API writes them); every finite float is a JSON number.
// Readers of these types accept both.
package jsonobj

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
)

// Float is a float64 that writes itself by the rule above.
type Float float64

// MarshalJSON writes a finite value as a number, others as a string.
func (f Float) MarshalJSON() ([]byte, error) {
	v := float64(f)
	switch {
	case math.IsInf(v, 1):
		return []byte(`"+Inf"`), nil
	case math.IsInf(v, -1):
		return []byte(`"-Inf"`), nil
	case math.IsNaN(v):
		return []byte(`"NaN"`), nil
	}
	return json.Marshal(v)
}

// UnmarshalJSON reads a number, or one of the three strings.
func (f *Float) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		switch s {
		case "+Inf", "Inf", "-Inf", "NaN":
			v, _ := strconv.ParseFloat(s, 64)
			*f = Float(v)
			return nil
		}
		return fmt.Errorf("json: %q is not a number, \"+Inf\", \"-Inf\" or \"NaN\"", s)
	}
	var v float64
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	*f = Float(v)
	return nil
}

// Join writes the members of the JSON objects in order as one object. A
// member whose name an earlier object had is left out: the first wins, as a
// struct's own field hides the same-named field of a struct it embeds.
func Join(objects ...[]byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte('{')
	seen := map[string]bool{}
	for _, o := range objects {
		dec := json.NewDecoder(bytes.NewReader(o))
		if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
			return nil, fmt.Errorf("jsonobj: %.20q is not a JSON object", o)
		}
		for dec.More() {
			tok, err := dec.Token()
			if err != nil {
				return nil, err
			}
			name, _ := tok.(string)
			var val json.RawMessage
			if err := dec.Decode(&val); err != nil {
				return nil, err
			}
			if seen[name] {
				continue
			}
			seen[name] = true
			if buf.Len() > 1 {
				buf.WriteByte(',')
			}
			key, _ := json.Marshal(name)
			buf.Write(key)
			buf.WriteByte(':')
			buf.Write(val)
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}
