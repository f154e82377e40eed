package manifest

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// valid is a complete format-1 manifest as the exporter writes it.
const valid = `{
  "format": 1,
  "name": "tiny-absorb",
  "graph": "absorb",
  "tokens": 256,
  "noise": {"type": "loglinear", "eps": 0.001},
  "length": 32,
  "model": {"hidden_size": 32, "n_blocks": 2, "n_heads": 2, "cond_dim": 16, "scale_by_sigma": true, "params": 60000},
  "tokenizer": {"file": "tokenizer.json", "kind": "byte-level-bpe", "vocab_size": 256, "special_tokens": {}, "eos_id": null},
  "onnx": {"file": "model.onnx", "opset": 17, "sha256": "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef", "size": 123456, "external_data": false},
  "source": {"kind": "random-init", "seed": 11},
  "verify": {"golden": "golden.json", "data": "golden.bin", "tolerance": 0.0001, "max_abs_err": null},
  "exporter": {"name": "export.py", "torch": "1.13.1"}
}`

const validEvaluator = `{
  "format": 1,
  "kind": "causal-lm",
  "name": "gpt2-small-eval",
  "vocab_size": 50304,
  "length": 1024,
  "model": {"n_layers": 12},
  "tokenizer": {"file": "tokenizer.json", "kind": "byte-level-bpe", "vocab_size": 50257,
                "special_tokens": {"<|endoftext|>": 50256}, "eos_id": 50256},
  "onnx": {"file": "model.onnx", "opset": 17}
}`

// edit decodes doc, applies f to the generic JSON tree and re-encodes it.
func edit(t *testing.T, doc string, f func(m map[string]any)) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal([]byte(doc), &m); err != nil {
		t.Fatal(err)
	}
	f(m)
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sub(m map[string]any, key string) map[string]any { return m[key].(map[string]any) }

func TestParseValid(t *testing.T) {
	m, err := Parse([]byte(valid))
	if err != nil {
		t.Fatal(err)
	}
	if m.N() != 257 {
		t.Errorf("N() = %d, want 257 for absorb with 256 tokens", m.N())
	}
	if id, ok := m.MaskID(); id != 256 || !ok {
		t.Errorf("MaskID() = %d, %v; want 256, true", id, ok)
	}
	want := Noise{Type: NoiseLogLinear, Eps: 0.001}
	if m.Noise != want {
		t.Errorf("Noise = %+v, want %+v", m.Noise, want)
	}
	if m.Tokenizer.EOSID != -1 {
		t.Errorf("EOSID = %d, want -1 for a null eos_id", m.Tokenizer.EOSID)
	}
	if m.Model.Params != 60000 || !m.Model.ScaleBySigma || m.ONNX.Opset != 17 || m.Verify == nil || m.Verify.MaxAbsErr != nil {
		t.Errorf("fields not carried over: %+v", m)
	}

	if m.Model.TimeIndependent {
		t.Error("time_independent absent reads as true")
	}
	ti, err := Parse(edit(t, valid, func(m map[string]any) { sub(m, "model")["time_independent"] = true }))
	if err != nil || !ti.Model.TimeIndependent {
		t.Fatalf("time_independent true: %v, %+v", err, ti)
	}

	u, err := Parse(edit(t, valid, func(m map[string]any) {
		m["graph"] = "uniform"
		sub(m, "model")["scale_by_sigma"] = false
		m["noise"] = map[string]any{"type": "geometric", "sigma_min": 1e-4, "sigma_max": 20}
	}))
	if err != nil {
		t.Fatal(err)
	}
	if u.N() != 256 {
		t.Errorf("uniform N() = %d, want 256", u.N())
	}
	if _, ok := u.MaskID(); ok {
		t.Error("uniform graph reports a mask id")
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name  string
		doc   []byte
		want  error
		field string
	}{
		{"not json", []byte(`{"format":`), ErrSyntax, ""},
		{"wrong json type", edit(t, valid, func(m map[string]any) { m["tokens"] = "256" }), ErrSyntax, "tokens"},
		{"fractional tokens", edit(t, valid, func(m map[string]any) { m["tokens"] = 2.5 }), ErrSyntax, "tokens"},
		{"format missing", edit(t, valid, func(m map[string]any) { delete(m, "format") }), ErrMissing, "format"},
		{"format from the future", edit(t, valid, func(m map[string]any) { m["format"] = 2 }), ErrFormat, "format"},
		{"format zero", edit(t, valid, func(m map[string]any) { m["format"] = 0 }), ErrFormat, "format"},
		{"evaluator kind", edit(t, valid, func(m map[string]any) { m["kind"] = "causal-lm" }), ErrKind, "kind"},
		{"graph missing", edit(t, valid, func(m map[string]any) { delete(m, "graph") }), ErrMissing, "graph"},
		{"graph unknown", edit(t, valid, func(m map[string]any) { m["graph"] = "absorbing" }), ErrGraph, "graph"},
		{"tokens zero", edit(t, valid, func(m map[string]any) { m["tokens"] = 0 }), ErrInvalid, "tokens"},
		{"tokens null", edit(t, valid, func(m map[string]any) { m["tokens"] = nil }), ErrMissing, "tokens"},
		{"noise missing", edit(t, valid, func(m map[string]any) { delete(m, "noise") }), ErrMissing, "noise"},
		{"noise type missing", edit(t, valid, func(m map[string]any) { delete(sub(m, "noise"), "type") }), ErrMissing, "noise.type"},
		{"noise type unknown", edit(t, valid, func(m map[string]any) { sub(m, "noise")["type"] = "cosine" }), ErrNoise, "noise.type"},
		{"loglinear without eps", edit(t, valid, func(m map[string]any) { delete(sub(m, "noise"), "eps") }), ErrMissing, "noise.eps"},
		{"loglinear eps one", edit(t, valid, func(m map[string]any) { sub(m, "noise")["eps"] = 1 }), ErrNoise, "noise.eps"},
		{"loglinear eps negative", edit(t, valid, func(m map[string]any) { sub(m, "noise")["eps"] = -0.1 }), ErrNoise, "noise.eps"},
		{"geometric without sigma_max", edit(t, valid, func(m map[string]any) {
			m["noise"] = map[string]any{"type": "geometric", "sigma_min": 1e-4}
		}), ErrMissing, "noise.sigma_max"},
		{"geometric reversed", edit(t, valid, func(m map[string]any) {
			m["noise"] = map[string]any{"type": "geometric", "sigma_min": 20, "sigma_max": 1e-4}
		}), ErrNoise, "noise.sigma_max"},
		{"time independent without scale_by_sigma", edit(t, valid, func(m map[string]any) {
			sub(m, "model")["time_independent"] = true
			sub(m, "model")["scale_by_sigma"] = false
		}), ErrMismatch, "model.time_independent"},
		{"time independent on the uniform graph", edit(t, valid, func(m map[string]any) {
			m["graph"] = "uniform"
			m["noise"] = map[string]any{"type": "geometric", "sigma_min": 1e-4, "sigma_max": 20}
			sub(m, "model")["time_independent"] = true
		}), ErrMismatch, "model.time_independent"},
		{"time independent not a bool", edit(t, valid, func(m map[string]any) { sub(m, "model")["time_independent"] = 1 }), ErrSyntax, "model.time_independent"},
		{"length missing", edit(t, valid, func(m map[string]any) { delete(m, "length") }), ErrMissing, "length"},
		{"heads do not divide hidden", edit(t, valid, func(m map[string]any) { sub(m, "model")["n_heads"] = 3 }), ErrMismatch, "model.n_heads"},
		{"negative params", edit(t, valid, func(m map[string]any) { sub(m, "model")["params"] = -1 }), ErrInvalid, "model.params"},
		{"tokenizer missing", edit(t, valid, func(m map[string]any) { delete(m, "tokenizer") }), ErrMissing, "tokenizer"},
		{"tokenizer file missing", edit(t, valid, func(m map[string]any) { delete(sub(m, "tokenizer"), "file") }), ErrMissing, "tokenizer.file"},
		{"tokenizer file escapes", edit(t, valid, func(m map[string]any) { sub(m, "tokenizer")["file"] = "../x.json" }), ErrInvalid, "tokenizer.file"},
		{"tokenizer file absolute", edit(t, valid, func(m map[string]any) { sub(m, "tokenizer")["file"] = "/etc/passwd" }), ErrInvalid, "tokenizer.file"},
		{"vocab size missing", edit(t, valid, func(m map[string]any) { delete(sub(m, "tokenizer"), "vocab_size") }), ErrMissing, "tokenizer.vocab_size"},
		{"vocab size differs from tokens", edit(t, valid, func(m map[string]any) { sub(m, "tokenizer")["vocab_size"] = 257 }), ErrMismatch, "tokenizer.vocab_size"},
		{"special token out of range", edit(t, valid, func(m map[string]any) {
			sub(m, "tokenizer")["special_tokens"] = map[string]any{"<|endoftext|>": 256}
		}), ErrInvalid, "tokenizer.special_tokens"},
		{"eos out of range", edit(t, valid, func(m map[string]any) { sub(m, "tokenizer")["eos_id"] = 300 }), ErrInvalid, "tokenizer.eos_id"},
		{"onnx missing", edit(t, valid, func(m map[string]any) { delete(m, "onnx") }), ErrMissing, "onnx"},
		{"onnx file missing", edit(t, valid, func(m map[string]any) { delete(sub(m, "onnx"), "file") }), ErrMissing, "onnx.file"},
		{"sha256 upper case", edit(t, valid, func(m map[string]any) {
			sub(m, "onnx")["sha256"] = "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef"
		}), ErrInvalid, "onnx.sha256"},
		{"sha256 short", edit(t, valid, func(m map[string]any) { sub(m, "onnx")["sha256"] = "abc" }), ErrInvalid, "onnx.sha256"},
		{"size zero", edit(t, valid, func(m map[string]any) { sub(m, "onnx")["size"] = 0 }), ErrInvalid, "onnx.size"},
		{"external data object", edit(t, valid, func(m map[string]any) { sub(m, "onnx")["external_data"] = map[string]any{} }), ErrSyntax, "onnx.external_data"},
		{"verify without data", edit(t, valid, func(m map[string]any) { delete(sub(m, "verify"), "data") }), ErrMissing, "verify.data"},
		{"verify negative tolerance", edit(t, valid, func(m map[string]any) { sub(m, "verify")["tolerance"] = -1 }), ErrInvalid, "verify.tolerance"},
		{"source not an object", edit(t, valid, func(m map[string]any) { m["source"] = "hf" }), ErrSyntax, "source"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse(tt.doc)
			if err == nil {
				t.Fatalf("Parse succeeded (%+v), want %v", m, tt.want)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("Parse error %q does not match %v", err, tt.want)
			}
			var fe *FieldError
			if tt.field == "" {
				return
			}
			if !errors.As(err, &fe) {
				t.Fatalf("Parse error %q is not a *FieldError", err)
			}
			if fe.Field != tt.field {
				t.Errorf("FieldError.Field = %q, want %q (error %q)", fe.Field, tt.field, err)
			}
		})
	}
}

func TestExternalDataForms(t *testing.T) {
	tests := []struct {
		name string
		v    any
		want bool
	}{
		{"absent", nil, false},
		{"false", false, false},
		{"true", true, true},
		{"file name", "model.onnx.data", true},
		{"empty list", []any{}, false},
		{"list", []any{"model.onnx.data"}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse(edit(t, valid, func(m map[string]any) { sub(m, "onnx")["external_data"] = tt.v }))
			if err != nil {
				t.Fatal(err)
			}
			if m.ONNX.ExternalData != tt.want {
				t.Errorf("ExternalData = %v, want %v", m.ONNX.ExternalData, tt.want)
			}
		})
	}
}

func TestEvaluator(t *testing.T) {
	e, err := ParseEvaluator([]byte(validEvaluator))
	if err != nil {
		t.Fatal(err)
	}
	if e.VocabSize != 50304 || e.Tokenizer.EOSID != 50256 || e.Tokenizer.SpecialTokens["<|endoftext|>"] != 50256 {
		t.Errorf("evaluator fields not carried over: %+v", e)
	}
	tests := []struct {
		name  string
		doc   []byte
		want  error
		field string
	}{
		{"score manifest", []byte(valid), ErrKind, "kind"},
		{"vocab smaller than tokenizer", edit(t, validEvaluator, func(m map[string]any) { m["vocab_size"] = 50000 }), ErrMismatch, "tokenizer.vocab_size"},
		{"vocab missing", edit(t, validEvaluator, func(m map[string]any) { delete(m, "vocab_size") }), ErrMissing, "vocab_size"},
		{"future format", edit(t, validEvaluator, func(m map[string]any) { m["format"] = 7 }), ErrFormat, "format"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseEvaluator(tt.doc)
			var fe *FieldError
			if !errors.Is(err, tt.want) || !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("ParseEvaluator error = %v, want %v on field %s", err, tt.want, tt.field)
			}
		})
	}
}

func TestPeekKind(t *testing.T) {
	tests := []struct {
		name   string
		doc    string
		format int
		kind   string
	}{
		{"score model", valid, 1, ""},
		{"evaluator", validEvaluator, 1, KindCausalLM},
		{"future", `{"format": 3, "kind": "x"}`, 3, "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, k, err := PeekKind([]byte(tt.doc))
			if err != nil || f != tt.format || k != tt.kind {
				t.Errorf("PeekKind = %d, %q, %v; want %d, %q", f, k, err, tt.format, tt.kind)
			}
		})
	}
	if _, _, err := PeekKind([]byte(`{}`)); !errors.Is(err, ErrMissing) {
		t.Errorf("PeekKind({}) error = %v, want ErrMissing", err)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load of an empty directory: %v, want os.ErrNotExist", err)
	}
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte(valid), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m.Name != "tiny-absorb" {
		t.Errorf("Name = %q", m.Name)
	}
}

// TestCommittedFixtures parses the manifests of the committed tiny exports.
func TestCommittedFixtures(t *testing.T) {
	for _, dir := range []string{"../../testdata/tiny-absorb", "../../testdata/tiny-uniform"} {
		if _, err := os.Stat(filepath.Join(dir, FileName)); err != nil {
			t.Fatalf("committed fixture missing: %v", err)
		}
		m, err := Load(dir)
		if err != nil {
			t.Errorf("%s: %v", dir, err)
			continue
		}
		if m.Tokens != 256 {
			t.Errorf("%s: tokens = %d, want 256", dir, m.Tokens)
		}
	}
}

// FuzzParse checks that Parse never panics and that every manifest it accepts
// survives a JSON round trip unchanged.
func FuzzParse(f *testing.F) {
	f.Add([]byte(valid))
	f.Add([]byte(validEvaluator))
	f.Add([]byte(`{"format":1}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) && !errors.Is(err, ErrSyntax) {
				t.Fatalf("error %q is neither a FieldError nor ErrSyntax", err)
			}
			return
		}
		if m.N() <= 0 || m.Length <= 0 || m.Format != Format {
			t.Fatalf("accepted an invalid manifest: %+v", m)
		}
		again, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		m2, err := Parse(again)
		if err != nil {
			t.Fatalf("re-parse of %s: %v", again, err)
		}
		// Raw messages may differ in white space only; compare them decoded.
		norm := func(m *Manifest) *Manifest {
			c := *m
			c.Source, c.Exporter = compact(c.Source), compact(c.Exporter)
			return &c
		}
		if !reflect.DeepEqual(norm(m), norm(m2)) {
			t.Fatalf("round trip changed the manifest:\n%+v\n%+v", m, m2)
		}
	})
}

func compact(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return raw
	}
	b, _ := json.Marshal(v)
	return b
}
