//go:build cgo

package likelihood_test

// This file needs sdk/runtime, which needs cgo; the package itself does not.

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/sedd-go/sedd/sdk/internal/likelihood"
	"github.com/sedd-go/sedd/sdk/internal/manifest"
	"github.com/sedd-go/sedd/sdk/internal/onnxrt"
)

// torchEstimate is testdata/tiny-absorb-estimate.json, written by
// export/make_likelihood_golden.py: the PyTorch estimate of the bound of a
// text under the same network as the committed tiny export.
type torchEstimate struct {
	Model      string  `json:"model"`
	Text       string  `json:"text"`
	Tokens     []int64 `json:"tokens"`
	Length     int     `json:"length"`
	LastWindow string  `json:"last_window"`
	Timesteps  int     `json:"timesteps"`
	Sampling   string  `json:"sampling"`
	Eps        float64 `json:"eps"`
	Windows    []struct {
		Tokens int     `json:"tokens"`
		Nats   float64 `json:"nats"`
		StdErr float64 `json:"stderr"`
	} `json:"windows"`
	Nats   float64 `json:"nats"`
	StdErr float64 `json:"stderr"`
}

// TestONNXMatchesPyTorch evaluates the text of each PyTorch estimate through
// ONNX Runtime on the same tiny export (with independent random draws) and
// checks that the two estimates agree within three combined standard errors
// for the whole text, and within four for each window.
func TestONNXMatchesPyTorch(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a few thousand forward passes")
	}
	for _, name := range []string{"tiny-absorb", "tiny-uniform"} {
		t.Run(name, func(t *testing.T) { compareWithPyTorch(t, "testdata/"+name+"-estimate.json") })
	}
}

func compareWithPyTorch(t *testing.T, path string) {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var ref torchEstimate
	if err := json.Unmarshal(data, &ref); err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("..", "..", filepath.FromSlash(ref.Model))
	m, err := manifest.Load(dir)
	if err != nil {
		t.Skipf("fixture %s is missing (export it with export/export.py): %v", dir, err)
	}
	if _, err := onnxrt.FindLibrary(""); errors.Is(err, onnxrt.ErrLibraryNotFound) {
		t.Skipf("ONNX Runtime is not installed, so this test cannot run: %v", err)
	}
	sess, err := onnxrt.Open(dir, m, onnxrt.WithIntraOpThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	scorer, err := sess.NewScorer()
	if err != nil {
		t.Fatal(err)
	}
	defer scorer.Close()

	g, noise, err := m.Diffusion()
	if err != nil {
		t.Fatal(err)
	}
	if ref.Text != string(bytesOf(ref.Tokens)) || ref.Length != m.Length || ref.LastWindow != "keep" || ref.Sampling != "stratified" {
		t.Fatalf("%s does not describe the text, windows and sampling this test uses", path)
	}
	windows, err := likelihood.Windows(ref.Tokens, m.Length, likelihood.KeepShort)
	if err != nil {
		t.Fatal(err)
	}
	if len(windows) != len(ref.Windows) {
		t.Fatalf("%d windows, PyTorch used %d", len(windows), len(ref.Windows))
	}
	res, err := likelihood.Evaluate(context.Background(), scorer, windows, likelihood.Config{
		Graph:     g,
		Noise:     noise,
		Timesteps: ref.Timesteps,
		MinTime:   ref.Eps,
		Seed:      1,
		BatchSize: 64,
	})
	if err != nil {
		t.Fatal(err)
	}
	for w, got := range res.Sequences {
		want := ref.Windows[w]
		se := math.Hypot(got.NatsStdErr, want.StdErr)
		t.Logf("window %d (%d tokens): Go %.3f ± %.3f, PyTorch %.3f ± %.3f nats", w, got.Tokens, got.Nats, got.NatsStdErr, want.Nats, want.StdErr)
		if got.Tokens != want.Tokens {
			t.Errorf("window %d: %d tokens, PyTorch %d", w, got.Tokens, want.Tokens)
		}
		if d := math.Abs(got.Nats - want.Nats); d > 4*se {
			t.Errorf("window %d: Go %v, PyTorch %v: %.2f combined standard errors apart", w, got.Nats, want.Nats, d/se)
		}
	}
	se := math.Hypot(res.NatsStdErr, ref.StdErr)
	t.Logf("text: Go %.3f ± %.3f nats (%.4f nats/token, perplexity ≤ %.2f [%.2f, %.2f]), PyTorch %.3f ± %.3f",
		res.Nats, res.NatsStdErr, res.NatsPerToken, res.Perplexity, res.PerplexityLow, res.PerplexityHigh, ref.Nats, ref.StdErr)
	if d := math.Abs(res.Nats - ref.Nats); d > 3*se {
		t.Errorf("text: Go %v, PyTorch %v: %.2f combined standard errors apart", res.Nats, ref.Nats, d/se)
	}
	if se > 0.02*ref.Nats {
		t.Errorf("combined standard error %v is too large for the comparison to mean much", se)
	}
}

func bytesOf(tokens []int64) []byte {
	b := make([]byte, len(tokens))
	for i, v := range tokens {
		b[i] = byte(v)
	}
	return b
}
