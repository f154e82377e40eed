package sdk_test

import (
	"context"
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
