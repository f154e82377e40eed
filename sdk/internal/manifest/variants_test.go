package manifest

import (
	"errors"
	"testing"
)

const sha = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// withVariants is valid plus the variants export/variants.py writes.
func withVariants(t *testing.T, f func(vs []any)) []byte {
	t.Helper()
	return edit(t, valid, func(m map[string]any) {
		vs := []any{
			map[string]any{"name": "fp32-opt", "precision": "fp32", "file": "model.opt.onnx", "sha256": sha, "size": 1000,
				"external_data": []any{}, "made_with": map[string]any{"tool": "onnxruntime.transformers.optimizer"},
				"tolerance": 1e-4, "tolerance_basis": "float32", "max_abs_err": 1e-5, "max_rel_err": 3e-6, "mean_kl": 1e-12, "max_kl": 1e-11},
			map[string]any{"name": "int8", "precision": "int8", "file": "model.int8.onnx", "sha256": sha, "size": 500,
				"external_data": []any{"model.int8.onnx.data"}, "tolerance": 0.2, "max_rel_err": 0.042, "mean_kl": 6e-4,
				"quality": map[string]any{"within_limits": true, "limits": "bound within 1%", "summary": "bound +0.3%",
					"detail": map[string]any{"bound": 4.5}}},
		}
		if f != nil {
			f(vs)
		}
		m["variants"] = vs
	})
}

func TestParseVariants(t *testing.T) {
	m, err := Parse(withVariants(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Variants) != 2 {
		t.Fatalf("variants %+v", m.Variants)
	}
	opt, q := m.Variants[0], m.Variants[1]
	if opt.Name != "fp32-opt" || opt.Precision != PrecisionFP32 || opt.ONNX.File != "model.opt.onnx" || opt.ONNX.SHA256 != sha ||
		opt.ONNX.Size != 1000 || opt.ONNX.ExternalData || opt.Tolerance != 1e-4 || opt.MaxRelErr != 3e-6 || opt.Quality != nil {
		t.Errorf("fp32-opt = %+v", opt)
	}
	if q.Precision != PrecisionInt8 || !q.ONNX.ExternalData || q.Tolerance != 0.2 || q.MeanKL != 6e-4 ||
		q.Quality == nil || !q.Quality.WithinLimits || q.Quality.Summary != "bound +0.3%" {
		t.Errorf("int8 = %+v (quality %+v)", q, q.Quality)
	}
	if v, ok := m.Variant("int8"); !ok || v.ONNX.File != "model.int8.onnx" {
		t.Errorf("Variant(int8) = %+v, %v", v, ok)
	}
	if _, ok := m.Variant(Reference); ok {
		t.Error("Variant(reference) found a variant")
	}
	plain, err := Parse([]byte(valid))
	if err != nil || plain.Variants != nil {
		t.Errorf("a manifest without variants: %v, %+v", err, plain.Variants)
	}
}

func TestParseVariantErrors(t *testing.T) {
	v := func(i int, vs []any) map[string]any { return vs[i].(map[string]any) }
	tests := []struct {
		name  string
		f     func(vs []any)
		want  error
		field string
	}{
		{"name missing", func(vs []any) { delete(v(0, vs), "name") }, ErrMissing, "variants[0].name"},
		{"reserved name", func(vs []any) { v(0, vs)["name"] = "reference" }, ErrInvalid, "variants[0] (reference).name"},
		{"duplicate name", func(vs []any) { v(1, vs)["name"] = "fp32-opt" }, ErrInvalid, "variants[1] (fp32-opt).name"},
		{"unknown precision", func(vs []any) { v(1, vs)["precision"] = "fp16" }, ErrInvalid, "variants[1] (int8).precision"},
		{"precision missing", func(vs []any) { delete(v(1, vs), "precision") }, ErrMissing, "variants[1] (int8).precision"},
		{"file escapes", func(vs []any) { v(0, vs)["file"] = "../model.onnx" }, ErrInvalid, "variants[0] (fp32-opt).file"},
		{"file is model.onnx", func(vs []any) { v(0, vs)["file"] = "model.onnx" }, ErrInvalid, "variants[0] (fp32-opt).file"},
		{"two variants one file", func(vs []any) { v(1, vs)["file"] = "model.opt.onnx" }, ErrInvalid, "variants[1] (int8).file"},
		{"sha256 missing", func(vs []any) { delete(v(0, vs), "sha256") }, ErrMissing, "variants[0] (fp32-opt).sha256"},
		{"sha256 malformed", func(vs []any) { v(0, vs)["sha256"] = "xyz" }, ErrInvalid, "variants[0] (fp32-opt).sha256"},
		{"size missing", func(vs []any) { delete(v(0, vs), "size") }, ErrMissing, "variants[0] (fp32-opt).size"},
		{"size zero", func(vs []any) { v(0, vs)["size"] = 0 }, ErrInvalid, "variants[0] (fp32-opt).size"},
		{"tolerance missing", func(vs []any) { delete(v(1, vs), "tolerance") }, ErrMissing, "variants[1] (int8).tolerance"},
		{"tolerance zero", func(vs []any) { v(1, vs)["tolerance"] = 0 }, ErrInvalid, "variants[1] (int8).tolerance"},
		{"negative error", func(vs []any) { v(1, vs)["max_rel_err"] = -1 }, ErrInvalid, "variants[1] (int8).max_rel_err"},
		{"quality without verdict", func(vs []any) { delete(v(1, vs)["quality"].(map[string]any), "within_limits") },
			ErrMissing, "variants[1] (int8).quality.within_limits"},
		{"external data object", func(vs []any) { v(1, vs)["external_data"] = map[string]any{} }, ErrSyntax, "variants[1] (int8).external_data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse(withVariants(t, tt.f))
			if err == nil {
				t.Fatalf("Parse succeeded (%+v), want %v", m.Variants, tt.want)
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("error %q does not match %v", err, tt.want)
			}
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != tt.field {
				t.Errorf("error %q: field %q, want %q", err, fe.Field, tt.field)
			}
		})
	}
	if _, err := Parse(edit(t, valid, func(m map[string]any) { m["variants"] = map[string]any{} })); !errors.Is(err, ErrSyntax) {
		t.Errorf("variants as an object: %v, want ErrSyntax", err)
	}
}
