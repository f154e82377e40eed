package sdk_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sedd-go/sedd/sdk"
	"github.com/sedd-go/sedd/sdk/internal/golden"
	"github.com/sedd-go/sedd/sdk/manifest"
	"github.com/sedd-go/sedd/sdk/runtime"
)

// The models shipped in models/ must load, match their golden PyTorch
// outputs and sample.
const (
	shippedSEDD = "../models/brown-sedd-small"
	shippedAR   = "../models/brown-sedd-small-ar"
)

func TestShippedSEDDModel(t *testing.T) {
	m := open(t, shippedSEDD, sdk.WithThreads(2))
	rep, err := m.Verify(context.Background(), 0)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	t.Logf("%d golden cases, max relative error %.3g", len(rep.Cases), rep.MaxRel)
	res, err := m.Sample(context.Background(), sdk.SampleRequest{Steps: 16, Seed: 1, Prefix: "The jury"})
	if err != nil {
		t.Fatalf("Sample: %v", err)
	}
	s := res.Samples[0]
	if len(s.Tokens) != m.Manifest().Length || !strings.HasPrefix(s.Text, "The jury") {
		t.Fatalf("sample of %d tokens %q", len(s.Tokens), s.Text)
	}
	for i, tok := range s.Tokens {
		if int64(tok) == m.Mask() {
			t.Fatalf("mask left at %d after denoising", i)
		}
	}
}

func TestShippedEvaluatorModel(t *testing.T) {
	ev, err := manifest.LoadEvaluator(shippedAR)
	if err != nil {
		t.Fatal(err)
	}
	lm, err := runtime.OpenCausalLM(shippedAR, ev, runtime.WithIntraOpThreads(2))
	if err != nil {
		t.Fatal(err)
	}
	defer lm.Close()
	runner, err := lm.NewRunner()
	if err != nil {
		t.Fatal(err)
	}
	defer runner.Close()
	cases, err := golden.LoadLogits(filepath.Join(shippedAR, ev.Verify.Golden))
	if err != nil {
		t.Fatal(err)
	}
	if len(cases) == 0 {
		t.Fatal("no golden cases")
	}
	for _, c := range cases {
		got, err := runner.Logits(context.Background(), c.InputIDs, c.Batch, c.Length)
		if err != nil {
			t.Fatalf("case %s: %v", c.Name, err)
		}
		d, err := golden.Compare(got, c.Logits)
		if err != nil {
			t.Fatalf("case %s: %v", c.Name, err)
		}
		if !d.Within(sdk.DefaultTolerance) {
			t.Fatalf("case %s: max |ONNX − PyTorch| %.3g (max |PyTorch| %.3g) past %g", c.Name, d.MaxAbs, d.MaxRef, sdk.DefaultTolerance)
		}
		t.Logf("case %s: max abs error %.3g", c.Name, d.MaxAbs)
	}
}

// TestEvaluatorVerify runs Evaluator.Verify on the shipped twin and on copies
// with broken golden files: a mismatch returns the failing report with an
// error matching ErrVerify, and broken files give ErrVerify without running
// an input the network cannot take.
func TestEvaluatorVerify(t *testing.T) {
	ev, err := sdk.OpenEvaluator(shippedAR, sdk.WithThreads(2))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := ev.Verify(context.Background(), 0)
	ev.Close()
	if err != nil || !rep.OK || len(rep.Cases) == 0 || rep.Tolerance != sdk.DefaultTolerance {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
	t.Logf("%d golden cases, max relative error %.3g", len(rep.Cases), rep.MaxRel)

	tests := []struct {
		name       string
		breaks     func(t *testing.T, dir string)
		wantReport bool
	}{
		{"golden logits changed", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "golden.bin")
			raw := readFile(t, p)
			// the file holds the cases' logits as float32: the last one becomes 1000
			copy(raw[len(raw)-4:], []byte{0, 0, 0x7a, 0x44})
			os.WriteFile(p, raw, 0o644)
		}, true},
		{"golden.json missing", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, "golden.json"))
		}, false},
		{"golden input id outside the vocabulary", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "golden.json")
			var doc map[string]any
			if err := json.Unmarshal(readFile(t, p), &doc); err != nil {
				t.Fatal(err)
			}
			doc["cases"].([]any)[0].(map[string]any)["input_ids"].([]any)[0] = 100000
			data, _ := json.Marshal(doc)
			os.WriteFile(p, data, 0o644)
		}, false},
		{"golden.bin truncated", func(t *testing.T, dir string) {
			p := filepath.Join(dir, "golden.bin")
			os.WriteFile(p, readFile(t, p)[:100], 0o644)
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := fixtureCopy(t, shippedAR)
			tt.breaks(t, dir)
			ev, err := sdk.OpenEvaluator(dir, sdk.WithThreads(2))
			if err != nil {
				t.Fatal(err)
			}
			defer ev.Close()
			rep, err := ev.Verify(context.Background(), 0)
			if !errors.Is(err, sdk.ErrVerify) {
				t.Fatalf("Verify error = %v, want ErrVerify", err)
			}
			if tt.wantReport && (rep == nil || rep.OK || rep.Cases[len(rep.Cases)-1].OK) {
				t.Fatalf("Verify report %+v; want the last case failing", rep)
			}
			t.Logf("%v", err)
		})
	}
}
