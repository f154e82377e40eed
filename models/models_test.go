package models_test

import (
	"context"
	"github.com/sedd-go/sedd/internal/testlib"
	"io/fs"
	"strings"
	"testing"

	"github.com/sedd-go/sedd/models"
	"github.com/sedd-go/sedd/sdk"
	"github.com/sedd-go/sedd/sdk/perplexity"
)

// TestMain points the tests at the project's own ONNX Runtime install when
// ONNXRUNTIME_SHARED_LIBRARY_PATH is unset.
func TestMain(m *testing.M) { testlib.Main(m) }

// TestShippedModelOpens opens the embedded model where it lies, in the
// binary, verifies it against its golden outputs and samples from it.
func TestShippedModelOpens(t *testing.T) {
	fsys, name := models.Default()
	for _, f := range []string{"sedd.json", "model.onnx", "tokenizer.json", "golden.json", "golden.bin", "README.md"} {
		if _, err := fs.Stat(fsys, f); err != nil {
			t.Errorf("the shipped model lacks %s: %v", f, err)
		}
	}
	m, err := sdk.OpenFS(fsys, name, sdk.WithThreads(2))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	info := m.Info()
	if info.Name != "brown-sedd-small" || info.Dir != name {
		t.Errorf("Info names %q in %q", info.Name, info.Dir)
	}
	if _, err := m.Verify(context.Background(), sdk.VerifyRequest{}); err != nil {
		t.Fatal(err)
	}
	res, err := m.Sample(context.Background(), sdk.SampleRequest{Steps: 4, Prefix: "The jury"})
	if err != nil || !strings.HasPrefix(res.Samples[0].Text, "The jury") {
		t.Fatalf("sample %v, %v", res, err)
	}
}

// TestShippedEvaluatorOpens opens the embedded twin and checks that it
// scores the shipped model's samples.
func TestShippedEvaluatorOpens(t *testing.T) {
	fsys, name := models.Evaluator()
	ev, err := perplexity.OpenFS(fsys, name, sdk.WithThreads(2))
	if err != nil {
		t.Fatal(err)
	}
	defer ev.Close()
	if _, err := ev.Verify(context.Background(), sdk.VerifyRequest{}); err != nil {
		t.Fatal(err)
	}
	mfs, mname := models.Default()
	m, err := sdk.OpenFS(mfs, mname, sdk.WithThreads(2))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := ev.CheckCompatible(m.Info()); err != nil {
		t.Fatalf("the twin cannot score the shipped model's samples: %v", err)
	}
}
