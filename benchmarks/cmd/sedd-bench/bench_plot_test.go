package main

import (
	"encoding/json"
	"image/png"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestLinearTicks(t *testing.T) {
	for _, tc := range []struct{ lo, hi float64 }{
		{4.45, 4.66}, {0, 1}, {100, 3000}, {-0.3, 0.2}, {4.5, 4.5001}, {0.001, 0.0013},
	} {
		ticks := linearTicks{}.Ticks(tc.lo, tc.hi)
		var labels []string
		prev := tc.lo - 1
		for _, tk := range ticks {
			if tk.Value < tc.lo-1e-12 || tk.Value > tc.hi+1e-12 || tk.Value <= prev {
				t.Errorf("[%g, %g]: tick %g outside the range or out of order", tc.lo, tc.hi, tk.Value)
			}
			prev = tk.Value
			if tk.Label == "" {
				continue
			}
			v, err := strconv.ParseFloat(tk.Label, 64)
			if err != nil || abs(v-tk.Value) > 1e-9*max(1, abs(tk.Value)) {
				t.Errorf("[%g, %g]: label %q at %g does not say its value", tc.lo, tc.hi, tk.Label, tk.Value)
			}
			for _, l := range labels {
				if l == tk.Label {
					t.Errorf("[%g, %g]: label %q twice", tc.lo, tc.hi, tk.Label)
				}
			}
			labels = append(labels, tk.Label)
		}
		if len(labels) < 3 || len(labels) > 10 {
			t.Errorf("[%g, %g]: %d labels %v, want 3 to 10", tc.lo, tc.hi, len(labels), labels)
		}
	}
	if ticks := (linearTicks{}).Ticks(1, 1); ticks != nil {
		t.Errorf("an empty range got ticks %v", ticks)
	}
}

func abs(x float64) float64 {
	if x < 0 {
		return -x
	}
	return x
}

func TestBenchPlot(t *testing.T) {
	dir := t.TempDir()
	row := func(steps int, ppl, entropy float64) sweepRow {
		r := sweepRow{Kind: "sample", Predictor: "analytic", Steps: steps, NFE: steps + 1,
			SecondsPerSample: 0.01 * float64(steps), Entropy: entropy, EntropyStdErr: 0.1}
		r.Perplexity, r.Low, r.High = ppl, 0.9*ppl, 1.1*ppl
		return r
	}
	rep := sweepReport{ModelName: "m", Length: 8, Samples: 2, Rows: []sweepRow{row(8, 100, 2), row(16, 95, 2.1)}}
	raw, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "sweep.json")
	if err := os.WriteFile(path, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	r := sedd(t, "plot", path).OK(t)
	if !strings.Contains(r.Stderr, "incomplete") {
		t.Errorf("stderr %q does not say the sweep is incomplete", r.Stderr)
	}
	for _, name := range []string{"ppl.png", "entropy.png", "time.png"} {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := png.Decode(f); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		f.Close()
	}
	notJSON := filepath.Join(dir, "notes.txt")
	os.WriteFile(notJSON, []byte("hello"), 0o644)
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"plot"}, exitUsage, "exactly one SWEEP.json"},
		{[]string{"plot", filepath.Join(dir, "missing.json")}, exitRuntime, "missing.json"},
		{[]string{"plot", notJSON}, exitRuntime, "is not a sweep.json"},
	} {
		r := sedd(t, tc.args...)
		if r.Code != tc.code || !strings.Contains(r.Stderr, tc.want) {
			t.Errorf("sedd %v: exit %d, stderr %q; want exit %d mentioning %q", tc.args, r.Code, r.Stderr, tc.code, tc.want)
		}
	}
}
