package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sedd-go/sedd/internal/cmdtest"
	"github.com/sedd-go/sedd/internal/testlib"
)

var variantsFixture = cmdtest.Abs("../../sdk/testdata/tiny-absorb-variants")

// withVariants is a copy of tiny-absorb with its fp32-opt and int8 variants.
func withVariants(t *testing.T, edit func(vs []map[string]any)) string {
	dir := copyModel(t, tinyAbsorb)
	testlib.AddVariants(t, dir, variantsFixture, edit)
	return dir
}

func TestPrecisionFlag(t *testing.T) {
	needORT(t)
	dir := withVariants(t, nil)
	r := sedd(t, "info", dir).OK(t)
	for _, want := range []string{"precision      fp32, graph fp32-opt: auto (int8 not chosen: its quality cost was not measured)",
		"  * fp32-opt", "    int8       model.int8.onnx (int8", "quality cost not measured", "    reference  model.onnx"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("info lacks %q:\n%s", want, r.Stdout)
		}
	}
	r = sedd(t, "info", "--precision", "int8", dir).OK(t)
	if !strings.Contains(r.Stdout, "precision      int8, graph int8: asked for int8") || !strings.Contains(r.Stdout, "  * int8") {
		t.Errorf("info --precision int8:\n%s", r.Stdout)
	}
	r = sedd(t, "sample", "--precision", "int8", "--steps", "4", "--json", "--model", dir).OK(t)
	if lines := parseLines(t, r.Stdout); len(lines) != 1 || len(lines[0].Tokens) != 32 {
		t.Errorf("sample --precision int8: %q", r.Stdout)
	}
	r = sedd(t, "sample", "--precision", "int8", "--model", tinyAbsorb)
	if r.Code != exitUsage || !strings.Contains(r.Stderr, `precision "int8": this model has no such graph`) {
		t.Errorf("int8 of a model without variants: exit %d, stderr %q", r.Code, r.Stderr)
	}
}

func TestVerifyEveryVariant(t *testing.T) {
	needORT(t)
	r := sedd(t, "verify", withVariants(t, nil)).OK(t)
	for _, want := range []string{"reference (model.onnx)", "fp32-opt (model.opt.onnx)", "int8 (model.int8.onnx)",
		"tolerance 0.006: ok (int8", "3 graphs: ok"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("verify lacks %q:\n%s", want, r.Stdout)
		}
	}
	var rep struct {
		Variant  string `json:"variant"`
		AllOK    bool   `json:"all_ok"`
		Variants []struct {
			Variant   string  `json:"variant"`
			Tolerance float64 `json:"tolerance"`
			OK        bool    `json:"ok"`
		} `json:"variants"`
	}
	if err := json.Unmarshal([]byte(sedd(t, "verify", "--json", withVariants(t, nil)).OK(t).Stdout), &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Variant != "reference" || !rep.AllOK || len(rep.Variants) != 2 || rep.Variants[1].Variant != "int8" || rep.Variants[1].Tolerance != 0.006 {
		t.Errorf("verify --json: %+v", rep)
	}
	// An int8 graph held to a tolerance below its error fails, and only it.
	strict := withVariants(t, func(vs []map[string]any) { vs[1]["tolerance"] = 1e-5 })
	r = sedd(t, "verify", strict)
	if r.Code != 1 || !strings.Contains(r.Stdout, "FAIL (int8") || !strings.Contains(r.Stdout, "ok (fp32-opt") ||
		!strings.Contains(r.Stdout, "3 graphs: FAIL") || !strings.Contains(r.Stderr, "(int8, model.int8.onnx)") {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
	}
	r = sedd(t, "verify", "--precision", "fp32-opt", strict).OK(t)
	if strings.Contains(r.Stdout, "int8") {
		t.Errorf("verify --precision fp32-opt checked more:\n%s", r.Stdout)
	}
}

func TestCacheDirFlag(t *testing.T) {
	needORT(t)
	dir := withVariants(t, nil)
	cache := t.TempDir()
	for _, want := range []string{"graph cache    built", "graph cache    hit"} {
		if r := sedd(t, "info", "--cache-dir", cache, dir).OK(t); !strings.Contains(r.Stdout, want) {
			t.Errorf("info --cache-dir: want %q:\n%s", want, r.Stdout)
		}
	}
	if r := sedd(t, "info", "--cache-dir", "off", dir).OK(t); !strings.Contains(r.Stdout, "graph cache    off: no cache directory") {
		t.Errorf("--cache-dir off:\n%s", r.Stdout)
	}
}
