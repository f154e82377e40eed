package main

import (
	"encoding/json"
	"strings"
	"testing"
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
	for _, want := range []string{"tiny", "steps", "per step", "SDK share", "allocs/step", "\n3 "} {
		if !strings.Contains(text.Stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, text.Stdout)
		}
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
		{"unknown predictor", []string{"--predictor", "foo"}, "--predictor"},
		{"batch 0", []string{"--batch", "0"}, "--batch must be ≥ 1"},
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
