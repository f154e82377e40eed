package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"image/png"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sedd-go/sedd/internal/cmdtest"
	"github.com/sedd-go/sedd/internal/testlib"
	"github.com/sedd-go/sedd/sdk"
	"github.com/sedd-go/sedd/sdk/perplexity"
)

func TestBenchSweepBadFlags(t *testing.T) {
	needORT(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
		code int
	}{
		{"steps 0", []string{"--steps", "0"}, `"0" is not a step count`, exitUsage},
		{"steps not a list", []string{"--steps", "8,x"}, `"x" is not a step count`, exitUsage},
		{"steps twice", []string{"--steps", "8,8"}, "listed twice", exitUsage},
		{"steps empty", []string{"--steps", ","}, "--steps is empty", exitUsage},
		{"unknown predictor", []string{"--predictors", "analytic,foo"}, `"foo" is not a predictor`, exitUsage},
		{"threshold 0", []string{"--thresholds", "0.5,0"}, `--thresholds: "0" is not in (0, 1]`, exitUsage},
		{"threshold twice", []string{"--thresholds", "0.5,0.5"}, "listed twice", exitUsage},
		{"budget not a number", []string{"--entropy-budgets", "x"}, `--entropy-budgets: "x" is not a finite number of nats > 0`, exitUsage},
		{"one sample", []string{"--samples", "1"}, "--samples must be ≥ 2", exitUsage},
		{"batch 0", []string{"--batch", "0"}, "--batch must be ≥ 1", exitUsage},
		{"not an int", []string{"--samples", "x"}, "invalid value", exitUsage},
		{"argument", []string{"extra"}, "takes no arguments", exitUsage},
		{"flag after an argument", []string{"extra", "--json"}, "looks like a flag", exitUsage},
		{"other model without evaluator", []string{"--model", tinyAbsorb}, "--evaluator DIR is required", exitUsage},
		{"evaluator on another tokenizer", []string{"--model", tinyAbsorb, "--evaluator", shippedAR}, "tokenizer", exitUsage},
		{"evaluator is not one", []string{"--evaluator", tinyAbsorb}, "causal-lm", exitRuntime},
		{"missing reference", []string{"--reference", filepath.Join(t.TempDir(), "none.txt")}, "reading --reference", exitRuntime},
		{"judge with a prefix", []string{"--judge", shippedAR, "--prefix", "The jury"}, "--judge scores whole decoded samples", exitUsage},
		{"judge is not one", []string{"--judge", tinyAbsorb}, "causal-lm", exitRuntime},
		{"judge missing", []string{"--judge", filepath.Join(t.TempDir(), "none")}, "no such file", exitRuntime},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := sedd(t, append([]string{"sweep", "--steps", "2", "--samples", "2"}, tc.args...)...)
			if r.Code != tc.code || !strings.Contains(r.Stderr, tc.want) {
				t.Fatalf("exit %d, want %d with %q; stderr:\n%s", r.Code, tc.code, tc.want, r.Stderr)
			}
			if r.Code == exitUsage && !strings.Contains(r.Stderr, "sedd-bench sweep --help") {
				t.Errorf("usage error without the help hint:\n%s", r.Stderr)
			}
		})
	}
	r := sedd(t, "nope")
	if r.Code != exitUsage || !strings.Contains(r.Stderr, `unknown command "nope"`) {
		t.Fatalf("sedd-bench nope: exit %d, stderr:\n%s", r.Code, r.Stderr)
	}
}

// TestBenchSweep runs a tiny sweep of the built-in model against its
// built-in twin and checks what it writes.
func TestBenchSweep(t *testing.T) {
	needORT(t)
	out := filepath.Join(t.TempDir(), "sweep")
	ref := cmdtest.Abs("../../../models/brown-sedd-small/README.md")
	r := sedd(t, "sweep", "--steps", "4,2", "--samples", "2", "--batch", "2", "--threads", "1",
		"--reference", ref, "--out", out, "--json").OK(t)
	var rep sweepReport
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, r.Stdout)
	}
	if rep.EvalName != "brown-sedd-small-ar" || rep.ModelName != "brown-sedd-small" || rep.Length != 128 || rep.ScoredFrom != 1 {
		t.Errorf("report header %+v", rep)
	}
	if !rep.Complete {
		t.Errorf("a finished sweep reports complete = false")
	}
	if rep.Model != "built-in" || rep.Evaluator != "built-in" {
		t.Errorf("model %q, evaluator %q: want \"built-in\", not a cache path", rep.Model, rep.Evaluator)
	}
	type key struct {
		kind, pred string
		steps      int
	}
	var keys []key
	for _, row := range rep.Rows {
		keys = append(keys, key{row.Kind, row.Predictor, row.Steps})
		if row.Samples != 2 || row.Tokens != 2*127 {
			t.Errorf("%+v: %d samples, %d tokens; want 2 and 254", row, row.Samples, row.Tokens)
		}
		if !(row.Low > 0 && row.Low <= row.Perplexity && row.Perplexity <= row.High) ||
			math.Abs(math.Log(row.Perplexity)-row.MeanNLL) > 1e-9 {
			t.Errorf("%s %s %d: perplexity %g [%g, %g], mean NLL %g", row.Kind, row.Predictor, row.Steps, row.Perplexity, row.Low, row.High, row.MeanNLL)
		}
		if !(row.Entropy > 0 && row.Entropy <= math.Log(127)) || row.EntropyStdErr < 0 {
			t.Errorf("%s %s %d: entropy %g ± %g outside (0, log 127]", row.Kind, row.Predictor, row.Steps, row.Entropy, row.EntropyStdErr)
		}
		if row.Example == "" {
			t.Errorf("%s %s %d: no example text", row.Kind, row.Predictor, row.Steps)
		}
		switch row.Kind {
		case "sample":
			if row.NFE != row.Steps+1 || !(row.SecondsPerSample > 0) || row.NetworkSecondsPerSample > row.SecondsPerSample {
				t.Errorf("%s %d: NFE %d, %g s/sample (network %g)", row.Predictor, row.Steps, row.NFE, row.SecondsPerSample, row.NetworkSecondsPerSample)
			}
		case "reference":
			if row.NFE != 0 || row.SecondsPerSample != 0 {
				t.Errorf("reference row with NFE %d, %g s/sample", row.NFE, row.SecondsPerSample)
			}
		}
	}
	want := []key{{"sample", "analytic", 2}, {"sample", "analytic", 4}, {"sample", "euler", 2}, {"sample", "euler", 4}, {"reference", "", 0}}
	if len(keys) != len(want) {
		t.Fatalf("rows %v, want %v", keys, want)
	}
	for i := range want {
		if keys[i] != want[i] {
			t.Fatalf("rows %v, want %v", keys, want)
		}
	}
	for _, s := range []string{"analytic    2 steps", "euler       4 steps", "reference text (2 windows)", "wrote sweep.json, sweep.csv"} {
		if !strings.Contains(r.Stderr, s) {
			t.Errorf("stderr lacks %q:\n%s", s, r.Stderr)
		}
	}

	// sweep.json holds the same report, sweep.csv one line per row.
	raw, err := os.ReadFile(filepath.Join(out, "sweep.json"))
	if err != nil {
		t.Fatal(err)
	}
	if string(raw) != r.Stdout {
		t.Errorf("sweep.json differs from --json output")
	}
	f, err := os.Open(filepath.Join(out, "sweep.csv"))
	if err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(f).ReadAll()
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1+len(rep.Rows) || strings.Join(recs[0], ",") != strings.Join(sweepCSVHeader, ",") {
		t.Fatalf("sweep.csv: %d records, header %v", len(recs), recs[0])
	}
	if got := strings.Join(recs[2][:4], ","); got != "sample,analytic,4,5" {
		t.Errorf("sweep.csv row 2 starts %q, want sample,analytic,4,5", got)
	}
	if got := strings.Join(recs[5][:4], ","); got != "reference,,,0" {
		t.Errorf("sweep.csv reference row starts %q", got)
	}

	// Each plot is a PNG with something drawn in colour on it.
	for _, name := range []string{"ppl.png", "entropy.png", "time.png"} {
		f, err := os.Open(filepath.Join(out, name))
		if err != nil {
			t.Fatal(err)
		}
		img, err := png.Decode(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b := img.Bounds()
		if b.Dx() < 400 || b.Dy() < 300 {
			t.Errorf("%s is %v, too small to read", name, b)
		}
		coloured := 0
		for y := b.Min.Y; y < b.Max.Y; y += 2 {
			for x := b.Min.X; x < b.Max.X; x += 2 {
				r, g, bl, _ := img.At(x, y).RGBA()
				if max(r, g, bl)-min(r, g, bl) > 0x2000 {
					coloured++
				}
			}
		}
		if coloured < 50 {
			t.Errorf("%s has %d coloured pixels: no lines drawn?", name, coloured)
		}
	}
}

// TestBenchSweepPrefixTable checks conditional generation: only the tokens
// after the prefix are scored, and the table names what was measured.
func TestBenchSweepPrefixTable(t *testing.T) {
	needORT(t)
	r := sedd(t, "sweep", "--steps", "2", "--samples", "2", "--predictors", "euler", "--threads", "1",
		"--prefix", "The jury said").OK(t)
	for _, want := range []string{"predictor", "gen. PPL", "95% interval", "entropy (nats)", "euler", "2 samples per row", "brown-sedd-small-ar"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, r.Stdout)
		}
	}
	if strings.Contains(r.Stdout, "scored from token 2 ") {
		t.Errorf("with a prefix, scoring must start after it:\n%s", r.Stdout)
	}
}

// TestBenchSweepInterruptKeepsFinishedRows stops a sweep once its first row
// is done, with SIGINT and with SIGKILL: the rows finished so far must be in
// sweep.json, marked incomplete, and sweep.csv, derived from sweep.json only
// at the end, must not be there to disagree with it (an old one from an
// earlier sweep in the same directory included). sedd-bench plot then writes
// a CSV that matches.
func TestBenchSweepInterruptKeepsFinishedRows(t *testing.T) {
	needORT(t)
	for _, sig := range []os.Signal{os.Interrupt, os.Kill} {
		t.Run(sig.String(), func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "sweep")
			if err := os.MkdirAll(out, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(out, "sweep.csv"), []byte("an older sweep's rows\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(command.Binary, "sweep", "--steps", "2,100000", "--predictors", "analytic",
				"--samples", "2", "--batch", "2", "--threads", "1", "--out", out)
			cmd.Dir = t.TempDir()
			cmd.Env = childEnv(t)
			stderr, err := cmd.StderrPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			var log bytes.Buffer
			br := bufio.NewReader(io.TeeReader(stderr, &log))
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					cmd.Process.Kill()
					t.Fatalf("no first row before the end of stderr: %v\n%s", err, log.String())
				}
				if strings.Contains(line, "2 steps:") {
					break
				}
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { io.Copy(io.Discard, br); done <- cmd.Wait() }()
			select {
			case err = <-done:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				t.Fatal("sedd-bench sweep did not stop within 30 s of the signal")
			}
			if sig == os.Interrupt {
				var exit *exec.ExitError
				if !errors.As(err, &exit) || exit.ExitCode() != exitInterrupted {
					t.Fatalf("exit %v, want status %d; stderr:\n%s", err, exitInterrupted, log.String())
				}
				if !strings.Contains(log.String(), "kept the 1 finished row in") {
					t.Errorf("stderr does not say where the finished rows are:\n%s", log.String())
				}
			}
			raw, err := os.ReadFile(filepath.Join(out, "sweep.json"))
			if err != nil {
				t.Fatal(err)
			}
			var rep sweepReport
			if err := json.Unmarshal(raw, &rep); err != nil {
				t.Fatalf("sweep.json: %v", err)
			}
			if rep.Complete || len(rep.Rows) != 1 || rep.Rows[0].Steps != 2 || rep.Model != "built-in" {
				t.Errorf("saved report: complete %v, %d rows (%+v), model %q; want one incomplete row of 2 steps",
					rep.Complete, len(rep.Rows), rep.Rows, rep.Model)
			}
			if _, err := os.Stat(filepath.Join(out, "sweep.csv")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("sweep.csv is there after the sweep was stopped (%v); it could disagree with sweep.json", err)
			}
			if sig == os.Interrupt {
				leftovers, _ := filepath.Glob(filepath.Join(out, ".*"))
				if len(leftovers) != 0 {
					t.Errorf("temporary files left behind: %v", leftovers)
				}
			}
			sedd(t, "plot", filepath.Join(out, "sweep.json")).OK(t)
			rows, err := csv.NewReader(bytes.NewReader(mustRead(t, filepath.Join(out, "sweep.csv")))).ReadAll()
			if err != nil || len(rows) != 2 {
				t.Errorf("sweep.csv from plot: %d lines (%v), want a header and one row", len(rows), err)
			}
		})
	}
}

func mustRead(t *testing.T, path string) []byte { return testlib.ReadFile(t, path) }

// TestBenchSweepFirstHitting: the first-hitting sampler is one row whatever
// --steps says, with one network call per generated token, and the
// unmasking settings are recorded in the report.
func TestBenchSweepFirstHitting(t *testing.T) {
	needORT(t)
	r := sedd(t, "sweep", "--steps", "2,4", "--samples", "2", "--batch", "2", "--threads", "1",
		"--predictors", "first-hitting,analytic", "--top-k", "40", "--temperature", "0.9", "--json").OK(t)
	var rep sweepReport
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, r.Stdout)
	}
	if rep.TopK != 40 || rep.Temperature == nil || *rep.Temperature != 0.9 || rep.TopP != nil {
		t.Errorf("settings %v, %d, %v", rep.Temperature, rep.TopK, rep.TopP)
	}
	if len(rep.Rows) != 3 {
		t.Fatalf("%d rows, want first-hitting and analytic at 2 and 4 steps", len(rep.Rows))
	}
	fh := rep.Rows[0]
	if fh.Predictor != "first-hitting" || fh.Steps != 128 || fh.NFE != 128 || fh.Samples != 2 {
		t.Errorf("first-hitting row %+v, want 128 steps and network calls", fh)
	}
}

// TestBenchSweepAdaptive: a row per threshold and per entropy budget, each
// with its knob, its unrounded calls per sample (fewer than the 128 tokens at
// a loose knob, all of them at threshold 1) and the knob in the CSV.
func TestBenchSweepAdaptive(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	r := sedd(t, "sweep", "--samples", "2", "--batch", "2", "--threads", "1", "--predictors", "confidence,entropy-bounded",
		"--thresholds", "1", "--entropy-budgets", "40", "--out", dir, "--json").OK(t)
	var rep sweepReport
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, r.Stdout)
	}
	if len(rep.Rows) != 2 {
		t.Fatalf("%d rows, want one per knob", len(rep.Rows))
	}
	c, e := rep.Rows[0], rep.Rows[1]
	if c.Predictor != "confidence" || c.Threshold != 1 || c.CallsPerSample != 128 || c.NFE != 128 || c.Steps != 128 {
		t.Errorf("confidence row %+v, want threshold 1 and 128 calls per sample", c)
	}
	if e.Predictor != "entropy-bounded" || e.EntropyBudget != 40 || !(e.CallsPerSample >= 1 && e.CallsPerSample < 64) {
		t.Errorf("entropy-bounded row %+v, want budget 40 and fewer than 64 calls per sample", e)
	}
	csv, err := os.ReadFile(filepath.Join(dir, "sweep.csv"))
	if err != nil || !strings.Contains(string(csv), ",40,") {
		t.Errorf("sweep.csv lacks the budget (%v):\n%s", err, csv)
	}
}

// TestBenchSweepReuse: the built-in model is time-independent, so at 512
// steps a sample is evaluated at most once per token plus once, and NFE says
// so, batch or not.
func TestBenchSweepReuse(t *testing.T) {
	needORT(t)
	for _, batch := range []string{"1", "3"} {
		r := sedd(t, "sweep", "--steps", "512", "--samples", "3", "--batch", batch, "--threads", "2",
			"--predictors", "analytic", "--json").OK(t)
		var rep sweepReport
		if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
			t.Fatalf("stdout is not one JSON object: %v\n%s", err, r.Stdout)
		}
		if len(rep.Rows) != 1 || rep.Rows[0].Steps != 512 || rep.Rows[0].NFE > 129 || rep.Rows[0].NFE < 2 {
			t.Errorf("batch %s: rows %+v, want one row of at most 129 network evaluations per sample", batch, rep.Rows)
		}
	}
}

// TestBenchSweepJudge runs a tiny sweep of the built-in model with a judge
// (a pretrained causal LM converted by export/judge/convert_judge.py, named by
// SEDD_JUDGE_DIR; SEDD_REQUIRE_JUDGE=1 makes its absence a failure) and checks
// the judge's columns, its plot, and that it tells real text from 2-step
// samples.
func TestBenchSweepJudge(t *testing.T) {
	needORT(t)
	judge := os.Getenv("SEDD_JUDGE_DIR")
	if judge == "" {
		if os.Getenv("SEDD_REQUIRE_JUDGE") == "1" {
			t.Fatal("SEDD_REQUIRE_JUDGE=1 but SEDD_JUDGE_DIR is unset")
		}
		t.Skip("SEDD_JUDGE_DIR is unset: no judge to sweep with (export/judge/convert_judge.py --print-dir makes one)")
	}
	out := filepath.Join(t.TempDir(), "sweep")
	ref := cmdtest.Abs("../../../models/brown-sedd-small/README.md")
	r := sedd(t, "sweep", "--steps", "2", "--samples", "3", "--batch", "3", "--threads", "1",
		"--reference", ref, "--judge", judge, "--out", out, "--json").OK(t)
	var rep sweepReport
	if err := json.Unmarshal([]byte(r.Stdout), &rep); err != nil {
		t.Fatalf("stdout is not one JSON object: %v\n%s", err, r.Stdout)
	}
	if rep.Judge != judge || rep.JudgeName == "" || len(rep.Rows) != 3 {
		t.Fatalf("report: judge %q (%q), %d rows", rep.Judge, rep.JudgeName, len(rep.Rows))
	}
	for _, row := range rep.Rows {
		j := row.Judge
		if j == nil || j.Samples != 3 || j.Tokens < 3*60 || !(j.Perplexity > 1) || !(j.Low <= j.Perplexity && j.Perplexity <= j.High) ||
			!(j.Entropy > 2 && j.Entropy < math.Log(float64(j.Tokens))) {
			t.Errorf("row %s %d: judge %+v", row.Predictor, row.Steps, j)
		}
	}
	two, real := rep.Rows[1].Judge, rep.Rows[2].Judge
	if rep.Rows[2].Kind != "reference" || !(two.Perplexity > 2*real.Perplexity) {
		t.Errorf("the judge's perplexity of 2-step samples (%.1f) is not far above real text's (%.1f)", two.Perplexity, real.Perplexity)
	}
	recs, err := csv.NewReader(bytes.NewReader(mustRead(t, filepath.Join(out, "sweep.csv")))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	col := -1
	for i, h := range recs[0] {
		if h == "judge_perplexity" {
			col = i
		}
	}
	if col < 0 || len(recs) != 4 || recs[1][col] == "" || recs[3][col] == "" {
		t.Errorf("sweep.csv has no judge_perplexity values: %v", recs)
	}
	if _, err := png.Decode(bytes.NewReader(mustRead(t, filepath.Join(out, "judge-ppl.png")))); err != nil {
		t.Errorf("judge-ppl.png: %v", err)
	}
	tbl := sedd(t, "sweep", "--steps", "2", "--samples", "2", "--batch", "2", "--threads", "1", "--judge", judge).OK(t)
	if !strings.Contains(tbl.Stdout, "judge PPL") || !strings.Contains(tbl.Stdout, "by the judge "+rep.JudgeName) {
		t.Errorf("table without the judge's columns:\n%s", tbl.Stdout)
	}
}

// TestJudgeTextsInvalidUTF8 scores texts with the twin standing in for a
// judge: a decoded sample that is not valid UTF-8 (a byte-level token cut
// inside a character) is scored with its bad bytes replaced, not refused.
func TestJudgeTextsInvalidUTF8(t *testing.T) {
	needORT(t)
	testlib.Setup()
	judge, err := perplexity.Open(shippedAR, sdk.WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	defer judge.Close()
	texts := []string{"The jury said \xe2\x80 it was fine.", "A caf\xc3 and a \xff\xfe river ran by."}
	var row sweepRow
	if err := judgeTexts(context.Background(), judge, texts, &row); err != nil {
		t.Fatal(err)
	}
	if row.Judge == nil || row.Judge.Samples != 2 || !(row.Judge.Perplexity > 1) {
		t.Fatalf("judge score %+v", row.Judge)
	}
	if err := judgeTexts(context.Background(), judge, []string{"ok text", "a"}, &row); err == nil || !strings.Contains(err.Error(), "at least 2") {
		t.Errorf("a text of one judge token: got %v", err)
	}
}
