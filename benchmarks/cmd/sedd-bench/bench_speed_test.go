package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sedd-go/sedd/internal/cmdtest"
)

func TestBenchSpeed(t *testing.T) {
	needORT(t)
	r := sedd(t, "speed", "--model", tinyAbsorb, "--steps", "2,5", "--batch", "2", "--threads", "1", "--json").OK(t)
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d JSON lines, want one per step count:\n%s", len(lines), r.Stdout)
	}
	for i, want := range []int{2, 5} {
		var row speedRow
		if err := json.Unmarshal([]byte(lines[i]), &row); err != nil {
			t.Fatalf("line %d: %v", i, err)
		}
		if row.Impl != "sedd-go" || row.Steps != want || row.NetworkCalls != want+1 || row.Batch != 2 || row.Length != 32 || row.Threads != 1 {
			t.Errorf("row %d = %+v, want steps %d, %d network calls, batch 2, length 32, 1 thread", i, row, want, want+1)
		}
		if !(row.ForwardS > 0 && row.OtherS >= 0 && row.StepS >= row.ForwardS) {
			t.Errorf("row %d: step %g s, forward %g s, other %g s: want 0 < forward ≤ step", i, row.StepS, row.ForwardS, row.OtherS)
		}
		if d := row.SampleS - row.StepS*float64(row.NetworkCalls); d > 1e-9 || d < -1e-9 {
			t.Errorf("row %d: sample %g s is not step × network calls", i, row.SampleS)
		}
		if row.OtherShare < 0 || row.OtherShare > 1 {
			t.Errorf("row %d: other share %g outside [0, 1]", i, row.OtherShare)
		}
		if row.PeakSamplingMi <= 0 && row.PeakMi <= 0 {
			t.Errorf("row %d: no peak memory reported", i)
		}
	}
	text := sedd(t, "speed", "--model", tinyAbsorb, "--steps", "3").OK(t)
	for _, want := range []string{"tiny", "steps", "per call", "SDK share", "allocs/call", "\n3 "} {
		if !strings.Contains(text.Stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, text.Stdout)
		}
	}
}

// TestBenchSpeedReuse: --reuse both times a time-independent model with and
// without the reuse of network outputs, side by side, and compares tokens.
func TestBenchSpeedReuse(t *testing.T) {
	needORT(t)
	ti := cmdtest.Abs("../../../sdk/testdata/tiny-absorb-ti")
	r := sedd(t, "speed", "--model", ti, "--steps", "256", "--threads", "1", "--reuse", "both", "--json").OK(t)
	lines := strings.Split(strings.TrimSpace(r.Stdout), "\n")
	if len(lines) != 2 {
		t.Fatalf("got %d JSON lines, want two (reuse on, off):\n%s", len(lines), r.Stdout)
	}
	var on, off speedRow
	if json.Unmarshal([]byte(lines[0]), &on) != nil || json.Unmarshal([]byte(lines[1]), &off) != nil {
		t.Fatalf("bad JSON:\n%s", r.Stdout)
	}
	if on.Reuse != "on" || on.NetworkCalls > 33 || on.SameTokens != nil ||
		off.Reuse != "off" || off.NetworkCalls != 257 || off.SameTokens == nil || !*off.SameTokens {
		t.Errorf("reuse on %+v\noff %+v", on, off)
	}
	text := sedd(t, "speed", "--model", ti, "--steps", "64", "--reuse", "both").OK(t).Stdout
	if !strings.Contains(text, "64 steps: reuse is") || !strings.Contains(text, "with the same tokens") {
		t.Errorf("no reuse line:\n%s", text)
	}
	plain := sedd(t, "speed", "--model", tinyAbsorb, "--steps", "4", "--reuse", "off", "--json").OK(t).Stdout
	var row speedRow
	if json.Unmarshal([]byte(plain), &row) != nil || row.Reuse != "n/a" || row.NetworkCalls != 5 {
		t.Errorf("time-conditioned model: %s", plain)
	}
}

func TestBenchSpeedBadFlags(t *testing.T) {
	needORT(t)
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"steps 0", []string{"--steps", "0"}, "--steps"},
		{"steps not a list", []string{"--steps", "8,x"}, `"x" is not a step count`},
		{"unknown sampler", []string{"--sampler", "foo"}, "--sampler"},
		{"unknown sampler, old spelling", []string{"--predictor", "foo"}, "--sampler"},
		{"batch 0", []string{"--batch", "0"}, "--batch must be ≥ 1"},
		{"reuse", []string{"--reuse", "sometimes"}, "--reuse"},
		{"argument", []string{"extra"}, "takes no arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := sedd(t, append([]string{"speed", "--model", tinyAbsorb}, tc.args...)...)
			if r.Code != exitUsage || !strings.Contains(r.Stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d mentioning %q", r.Code, r.Stderr, exitUsage, tc.want)
			}
		})
	}
}
