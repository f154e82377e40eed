package perplexity_test

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/sedd-go/sedd/sdk"
	"github.com/sedd-go/sedd/sdk/perplexity"
)

// A judge is a pretrained causal LM converted by export/judge/convert_judge.py,
// kept outside the repository. SEDD_JUDGE_DIR names one; SEDD_REQUIRE_JUDGE=1
// (scripts/test.sh sets it) turns a missing judge into a failure.
const (
	envJudgeDir     = "SEDD_JUDGE_DIR"
	envRequireJudge = "SEDD_REQUIRE_JUDGE"
)

// judgeReference is reference.json, written by the converter with the
// Hugging Face tokenizer and transformers' own forward pass.
type judgeReference struct {
	Window int `json:"window"`
	Stride int `json:"stride"`
	Rows   []struct {
		Text   string  `json:"text"`
		IDs    []int64 `json:"ids"`
		NLL    float64 `json:"nll"`
		Tokens int     `json:"tokens"`
	} `json:"rows"`
	Perplexity float64 `json:"transformers_perplexity"`
}

func judgeDir(t *testing.T) (string, *judgeReference) {
	t.Helper()
	dir := os.Getenv(envJudgeDir)
	if dir == "" {
		if os.Getenv(envRequireJudge) == "1" {
			t.Fatalf("%s=1 but %s is unset: convert a judge with export/judge/convert_judge.py and point %s at it", envRequireJudge, envJudgeDir, envJudgeDir)
		}
		t.Skipf("%s is unset: no judge to test (export/judge/convert_judge.py --print-dir makes one)", envJudgeDir)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "reference.json"))
	if err != nil {
		t.Fatalf("%s: %v (a judge made by export/judge/convert_judge.py has reference.json)", envJudgeDir, err)
	}
	var ref judgeReference
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatalf("reference.json: %v", err)
	}
	if len(ref.Rows) < 5 {
		t.Fatalf("reference.json has %d texts, want the converter's test corpus", len(ref.Rows))
	}
	return dir, &ref
}

// TestJudgeTokenizerMatchesHuggingFace encodes the converter's test corpus
// (export/judge/texts.txt: English prose, digits, contractions, accented,
// Cyrillic, Greek, CJK and Hangul text, emoji, code, tabs, runs of spaces and
// special tokens written in the text) with the judge's tokenizer.json in Go
// and compares the ids with those the Hugging Face tokenizer gave.
func TestJudgeTokenizerMatchesHuggingFace(t *testing.T) {
	dir, ref := judgeDir(t)
	e := openEvaluator(t, dir)
	nonASCII := 0
	for i, r := range ref.Rows {
		got, err := e.Tokenize(r.Text)
		if err != nil {
			t.Fatalf("text %d: %v", i, err)
		}
		if !slices.Equal(got, r.IDs) {
			k := 0
			for k < min(len(got), len(r.IDs)) && got[k] == r.IDs[k] {
				k++
			}
			t.Errorf("text %d (%.40q...): Go gives %d ids, Hugging Face %d; first difference at %d: Go %v, HF %v",
				i, r.Text, len(got), len(r.IDs), k, got[k:min(k+5, len(got))], r.IDs[k:min(k+5, len(r.IDs))])
		}
		for _, c := range r.Text {
			if c > 127 {
				nonASCII++
				break
			}
		}
	}
	if nonASCII < 3 {
		t.Errorf("only %d texts of the corpus hold non-ASCII characters", nonASCII)
	}
}

// TestJudgePerplexityMatchesTransformers scores the Hugging Face tokenizer's
// ids of the test corpus with the judge in Go (ONNX Runtime) and compares
// every text's negative log-likelihood, and the perplexity over all, with
// transformers' forward pass on the same weights in float32: within 1e-3
// relative (both are float32 networks; the difference is rounding in two
// runtimes).
func TestJudgePerplexityMatchesTransformers(t *testing.T) {
	dir, ref := judgeDir(t)
	e := openEvaluator(t, dir)
	rows := make([][]int64, len(ref.Rows))
	for i, r := range ref.Rows {
		rows[i] = r.IDs
	}
	got, err := e.Score(context.Background(), rows, perplexity.ScoreRequest{Stride: ref.Stride})
	if err != nil {
		t.Fatal(err)
	}
	var gotSum, wantSum float64
	var n int
	for i, r := range ref.Rows {
		if got[i].Tokens != r.Tokens {
			t.Errorf("text %d: %d tokens scored, transformers %d", i, got[i].Tokens, r.Tokens)
		}
		if d := math.Abs(got[i].NLL-r.NLL) / r.NLL; d > 1e-3 {
			t.Errorf("text %d: NLL %.6f, transformers %.6f (relative difference %.2g > 1e-3)", i, got[i].NLL, r.NLL, d)
		}
		gotSum += got[i].NLL
		wantSum += r.NLL
		n += r.Tokens
	}
	ppl, want := math.Exp(gotSum/float64(n)), ref.Perplexity
	if d := math.Abs(ppl-want) / want; d > 1e-3 {
		t.Errorf("perplexity %.4f, transformers %.4f (relative difference %.2g > 1e-3)", ppl, want, d)
	}
	t.Logf("judge %s: perplexity %.4f over %d tokens of %d texts, transformers %.4f", e.Name(), ppl, n, len(rows), want)
}

// TestJudgeVerify runs the judge's golden cases, as sedd-bench verify does.
func TestJudgeVerify(t *testing.T) {
	dir, _ := judgeDir(t)
	e := openEvaluator(t, dir)
	rep, err := e.Verify(context.Background(), sdk.VerifyRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK || len(rep.Cases) == 0 {
		t.Fatalf("verify: %+v", rep)
	}
}
