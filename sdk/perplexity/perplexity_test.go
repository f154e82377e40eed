package perplexity_test

import (
	"context"
	"encoding/json"
	"errors"
	"github.com/sedd-go/sedd/internal/testlib"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sedd-go/sedd/sdk"
	"github.com/sedd-go/sedd/sdk/internal/golden"
	"github.com/sedd-go/sedd/sdk/internal/manifest"
	"github.com/sedd-go/sedd/sdk/internal/onnxrt"
	"github.com/sedd-go/sedd/sdk/perplexity"
)

// TestMain points the tests at the project's own ONNX Runtime install when
// ONNXRUNTIME_SHARED_LIBRARY_PATH is unset.
func TestMain(m *testing.M) { testlib.Main(m) }

// The shipped model and its autoregressive twin, and a tiny model with
// another tokenizer.
const (
	shippedSEDD = "../../models/brown-sedd-small"
	shippedAR   = "../../models/brown-sedd-small-ar"
	tinyAbsorb  = "../testdata/tiny-absorb"
)

func open(t testing.TB, dir string) *sdk.Model {
	t.Helper()
	m, err := sdk.Open(dir, sdk.WithThreads(1))
	if err != nil {
		t.Fatalf("Open(%s): %v", dir, err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func fixtureCopy(t *testing.T, src string) string { return testlib.CopyDir(t, src) }

func readFile(t *testing.T, path string) []byte { return testlib.ReadFile(t, path) }

func openEvaluator(t testing.TB, dir string) *perplexity.Evaluator {
	t.Helper()
	e, err := perplexity.Open(dir, sdk.WithThreads(1))
	if err != nil {
		t.Fatalf("OpenEvaluator(%s): %v", dir, err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// handNLL scores row from position from on with logits computed directly
// through a LogitsRunner, one row at a time, and a float64 log-softmax.
func handNLL(t *testing.T, row []int64, from int) float64 {
	t.Helper()
	ev, err := manifest.LoadEvaluator(shippedAR)
	if err != nil {
		t.Fatal(err)
	}
	lm, err := onnxrt.OpenCausalLM(shippedAR, ev, onnxrt.WithIntraOpThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	defer lm.Close()
	r, err := lm.NewRunner()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	logits, err := r.Logits(context.Background(), row, 1, len(row))
	if err != nil {
		t.Fatal(err)
	}
	v := ev.VocabSize
	var nll float64
	for i := from; i < len(row); i++ {
		l := logits[(i-1)*v : i*v]
		var z float64
		for _, x := range l {
			z += math.Exp(float64(x))
		}
		nll -= float64(l[row[i]]) - math.Log(z)
	}
	return nll
}

func TestEvaluatorScoreMatchesHandComputation(t *testing.T) {
	e := openEvaluator(t, shippedAR)
	m := open(t, shippedSEDD)
	full, err := m.Tokenize("The jury said it did find that the election was conducted well.")
	if err != nil {
		t.Fatal(err)
	}
	short := full[:7]
	// Rows of mixed lengths: equal neighbours share a forward pass.
	rows := [][]int64{full, full, short, full[:9], short}
	tests := []struct {
		name string
		req  perplexity.ScoreRequest
		from int
	}{
		{name: "default skips the first token", req: perplexity.ScoreRequest{}, from: 1},
		{name: "from 1 equals the default", req: perplexity.ScoreRequest{From: 1, BatchSize: 1}, from: 1},
		{name: "from 4 scores the continuation only", req: perplexity.ScoreRequest{From: 4, BatchSize: 2}, from: 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := e.Score(context.Background(), rows, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(rows) {
				t.Fatalf("%d scores for %d rows", len(got), len(rows))
			}
			for i, row := range rows {
				want := handNLL(t, row, tc.from)
				if d := math.Abs(got[i].NLL - want); d > 1e-4*math.Max(1, want) {
					t.Errorf("row %d: NLL %.6f, hand computation %.6f", i, got[i].NLL, want)
				}
				if got[i].Tokens != len(row)-tc.from {
					t.Errorf("row %d: %d tokens scored, want %d", i, got[i].Tokens, len(row)-tc.from)
				}
			}
		})
	}
}

func TestEvaluatorScoreBadInput(t *testing.T) {
	e := openEvaluator(t, shippedAR)
	long := make([]int64, e.Length()+1)
	tests := []struct {
		name string
		rows [][]int64
		req  perplexity.ScoreRequest
		want string
	}{
		{name: "one-token row has nothing to score", rows: [][]int64{{5}}, want: "at least 2"},
		{name: "row not longer than From", rows: [][]int64{{1, 2, 3}}, req: perplexity.ScoreRequest{From: 3}, want: "at least 4"},
		{name: "negative From", rows: [][]int64{{1, 2, 3}}, req: perplexity.ScoreRequest{From: -1}, want: "≥ 0"},
		{name: "negative batch", rows: [][]int64{{1, 2, 3}}, req: perplexity.ScoreRequest{BatchSize: -2}, want: "batch size"},
		{name: "token past the vocabulary", rows: [][]int64{{1, 4096}}, want: "outside"},
		{name: "negative token", rows: [][]int64{{1, -1}}, want: "outside"},
		{name: "row past the trained length", rows: [][]int64{long}, want: "trained length"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.Score(context.Background(), tc.rows, tc.req)
			if !errors.Is(err, sdk.ErrBadRequest) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want ErrBadRequest mentioning %q", err, tc.want)
			}
		})
	}
}

func TestEvaluatorCancelAndClose(t *testing.T) {
	e, err := perplexity.Open(shippedAR, sdk.WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Score(ctx, [][]int64{{1, 2, 3}}, perplexity.ScoreRequest{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled Score: err = %v, want context.Canceled", err)
	}
	if _, err := e.Score(context.Background(), [][]int64{{1, 2, 3}}, perplexity.ScoreRequest{}); err != nil {
		t.Fatalf("Score after a cancelled call: %v", err)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := e.Score(context.Background(), [][]int64{{1, 2, 3}}, perplexity.ScoreRequest{}); !errors.Is(err, sdk.ErrClosed) {
		t.Fatalf("Score after Close: err = %v, want ErrClosed", err)
	}
}

func TestOpenEvaluatorRefusesOtherDirectories(t *testing.T) {
	tests := []struct {
		name string
		dir  string
		want error
	}{
		{name: "a SEDD model is not an evaluator", dir: shippedSEDD, want: manifest.ErrKind},
		{name: "an evaluator is a bad model for it", dir: shippedSEDD, want: sdk.ErrBadModel},
		{name: "missing directory", dir: filepath.Join(t.TempDir(), "none"), want: os.ErrNotExist},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := perplexity.Open(tc.dir, sdk.WithThreads(1))
			if err == nil {
				e.Close()
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestEvaluatorCheckCompatible(t *testing.T) {
	e := openEvaluator(t, shippedAR)
	// The twin's tokenizer.json differs from the model's by a final newline
	// only, which must not matter.
	if err := e.CheckCompatible(open(t, shippedSEDD).Info()); err != nil {
		t.Fatalf("the shipped twin: %v", err)
	}
	// Swap the ids of two vocabulary entries: same size, different tokenizer.
	other := fixtureCopy(t, shippedSEDD)
	path := filepath.Join(other, "tokenizer.json")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	vocab := doc["model"].(map[string]any)["vocab"].(map[string]any)
	if vocab["the"] == nil || vocab["and"] == nil {
		t.Fatal("test setup: no \"the\" or \"and\" in the vocabulary")
	}
	vocab["the"], vocab["and"] = vocab["and"], vocab["the"]
	edited, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, edited, 0o644); err != nil {
		t.Fatal(err)
	}
	testlib.Rehash(t, other)
	tests := []struct {
		name string
		dir  string
	}{
		{name: "different vocabulary size", dir: tinyAbsorb},
		{name: "same size, different tokenizer", dir: other},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := e.CheckCompatible(open(t, tc.dir).Info()); !errors.Is(err, sdk.ErrBadRequest) {
				t.Fatalf("err = %v, want ErrBadRequest", err)
			}
		})
	}
}

func TestSummarizePerplexity(t *testing.T) {
	// Per-sample mean NLLs 1, 2, 3: mean 2, sample sd 1, SE 1/√3.
	scores := []perplexity.RowScore{{NLL: 4, Tokens: 4}, {NLL: 20, Tokens: 10}, {NLL: 3, Tokens: 1}}
	g, err := perplexity.Summarize(scores)
	if err != nil {
		t.Fatal(err)
	}
	const z = 1.959963984540054
	se := 1 / math.Sqrt(3)
	for _, f := range []struct {
		name      string
		got, want float64
	}{
		{"mean", g.MeanNLL, 2}, {"se", g.StdErr, se}, {"ppl", g.Perplexity, math.Exp(2)},
		{"low", g.Low, math.Exp(2 - z*se)}, {"high", g.High, math.Exp(2 + z*se)},
	} {
		if math.Abs(f.got-f.want) > 1e-12*math.Max(1, f.want) {
			t.Errorf("%s = %.15g, want %.15g", f.name, f.got, f.want)
		}
	}
	if g.Samples != 3 || g.Tokens != 15 {
		t.Errorf("samples %d tokens %d, want 3 and 15", g.Samples, g.Tokens)
	}
	for _, bad := range []struct {
		name   string
		scores []perplexity.RowScore
	}{
		{"no scores", nil},
		{"a row with no token", []perplexity.RowScore{{NLL: 1, Tokens: 1}, {}}},
	} {
		if _, err := perplexity.Summarize(bad.scores); !errors.Is(err, sdk.ErrBadRequest) {
			t.Errorf("%s: err = %v, want ErrBadRequest", bad.name, err)
		}
	}
}

func TestUnigramEntropy(t *testing.T) {
	// {a, a, b, b}: log 2; {a, a, a, b}: −(¾ log ¾ + ¼ log ¼).
	h1 := math.Log(2)
	h2 := -(0.75*math.Log(0.75) + 0.25*math.Log(0.25))
	tests := []struct {
		name     string
		rows     [][]int64
		mean, se float64
	}{
		{name: "one token repeated", rows: [][]int64{{7, 7, 7, 7}}, mean: 0},
		{name: "all distinct is log L", rows: [][]int64{{1, 2, 3, 4}}, mean: math.Log(4)},
		{name: "order does not matter", rows: [][]int64{{4, 1, 3, 2}}, mean: math.Log(4)},
		{name: "mean over rows with its standard error", rows: [][]int64{{1, 1, 2, 2}, {3, 3, 3, 4}},
			mean: (h1 + h2) / 2, se: math.Abs(h1-h2) / 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e, err := perplexity.UnigramEntropy(tc.rows)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(e.Mean-tc.mean) > 1e-12 || math.Abs(e.StdErr-tc.se) > 1e-12 {
				t.Fatalf("entropy %.15g ± %.15g, want %.15g ± %.15g", e.Mean, e.StdErr, tc.mean, tc.se)
			}
		})
	}
	for _, bad := range []struct {
		name string
		rows [][]int64
	}{{"no rows", nil}, {"an empty row", [][]int64{{1}, {}}}} {
		if _, err := perplexity.UnigramEntropy(bad.rows); !errors.Is(err, sdk.ErrBadRequest) {
			t.Errorf("%s: err = %v, want ErrBadRequest", bad.name, err)
		}
	}
}

func TestShippedEvaluatorModel(t *testing.T) {
	ev, err := manifest.LoadEvaluator(shippedAR)
	if err != nil {
		t.Fatal(err)
	}
	lm, err := onnxrt.OpenCausalLM(shippedAR, ev, onnxrt.WithIntraOpThreads(2))
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
		if !d.Within(golden.Tolerance) {
			t.Fatalf("case %s: max |ONNX − PyTorch| %.3g (max |PyTorch| %.3g) past %g", c.Name, d.MaxAbs, d.MaxRef, golden.Tolerance)
		}
		t.Logf("case %s: max abs error %.3g", c.Name, d.MaxAbs)
	}
}

// TestEvaluatorVerify runs Evaluator.Verify on the shipped twin and on copies
// with broken golden files: a mismatch returns the failing report with an
// error matching sdk.ErrBadModel, and broken files give sdk.ErrBadModel without running
// an input the network cannot take.
func TestEvaluatorVerify(t *testing.T) {
	ev, err := perplexity.Open(shippedAR, sdk.WithThreads(2))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := ev.Verify(context.Background(), sdk.VerifyRequest{})
	ev.Close()
	if err != nil || !rep.OK || len(rep.Cases) == 0 || rep.Tolerance != golden.Tolerance {
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
			testlib.Rehash(t, dir)
			ev, err := perplexity.Open(dir, sdk.WithThreads(2))
			if err != nil {
				t.Fatal(err)
			}
			defer ev.Close()
			rep, err := ev.Verify(context.Background(), sdk.VerifyRequest{})
			if !errors.Is(err, sdk.ErrBadModel) {
				t.Fatalf("Verify error = %v, want ErrBadModel", err)
			}
			if tt.wantReport && (rep == nil || rep.OK || rep.Cases[len(rep.Cases)-1].OK) {
				t.Fatalf("Verify report %+v; want the last case failing", rep)
			}
			t.Logf("%v", err)
		})
	}
}

// TestEvaluatorScoreSlidingWindows scores rows longer than the twin's length
// with ScoreRequest.Stride and checks every position against a forward pass
// of its own window: position i is predicted from the window that starts at
// the first multiple k·stride with i < k·stride + length.
func TestEvaluatorScoreSlidingWindows(t *testing.T) {
	e := openEvaluator(t, shippedAR)
	m := open(t, shippedSEDD)
	text := strings.Repeat("The jury said it did find that many of the city's election laws were outmoded, and it recommended that they be revised. ", 12)
	ids, err := m.Tokenize(text)
	if err != nil {
		t.Fatal(err)
	}
	w := e.Length()
	if len(ids) < 2*w+10 {
		t.Fatalf("the test text is %d tokens, want more than two windows of %d", len(ids), w)
	}
	rows := [][]int64{ids[:2*w+7], ids[3 : w+5], ids[:w-10]}
	windowNLL := windowScorer(t)
	for _, tc := range []struct{ stride, from int }{{w / 2, 1}, {w - 1, 1}, {37, 5}} {
		got, err := e.Score(context.Background(), rows, perplexity.ScoreRequest{Stride: tc.stride, From: tc.from, BatchSize: 2})
		if err != nil {
			t.Fatal(err)
		}
		for r, row := range rows {
			var want float64
			byStart := map[int][]float64{}
			for i := tc.from; i < len(row); i++ {
				k := max(0, (i-w+1+tc.stride-1)/tc.stride)
				s := k * tc.stride
				if byStart[s] == nil {
					byStart[s] = windowNLL(row[s:min(s+w, len(row))])
				}
				want += byStart[s][i-s]
			}
			if d := math.Abs(got[r].NLL - want); d > 1e-4*math.Max(1, want) {
				t.Errorf("stride %d, from %d, row %d (%d tokens): NLL %.6f, window by window %.6f", tc.stride, tc.from, r, len(row), got[r].NLL, want)
			}
			if got[r].Tokens != len(row)-tc.from {
				t.Errorf("stride %d, row %d: %d tokens scored, want %d", tc.stride, r, got[r].Tokens, len(row)-tc.from)
			}
		}
	}
	for _, stride := range []int{-1, w} {
		if _, err := e.Score(context.Background(), rows, perplexity.ScoreRequest{Stride: stride}); !errors.Is(err, sdk.ErrBadRequest) {
			t.Errorf("stride %d: got %v, want sdk.ErrBadRequest", stride, err)
		}
	}
}

// windowScorer returns a function that gives, for a row of the twin, −log
// p(row[i] | row[:i]) at every position i ≥ 1 (index 0 unused) from one
// forward pass over the row alone, through a LogitsRunner of its own and a
// float64 log-softmax.
func windowScorer(t *testing.T) func(row []int64) []float64 {
	t.Helper()
	ev, err := manifest.LoadEvaluator(shippedAR)
	if err != nil {
		t.Fatal(err)
	}
	lm, err := onnxrt.OpenCausalLM(shippedAR, ev, onnxrt.WithIntraOpThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lm.Close() })
	r, err := lm.NewRunner()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	v := ev.VocabSize
	return func(row []int64) []float64 {
		logits, err := r.Logits(context.Background(), row, 1, len(row))
		if err != nil {
			t.Fatal(err)
		}
		out := make([]float64, len(row))
		for i := 1; i < len(row); i++ {
			l := logits[(i-1)*v : i*v]
			var z float64
			for _, x := range l {
				z += math.Exp(float64(x))
			}
			out[i] = math.Log(z) - float64(l[row[i]])
		}
		return out
	}
}
