package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/sedd-go/sedd/sdk"
)

// TestFirstHitting runs the first-hitting sampler through ONNX Runtime: one
// network call per free position (never more than the length), the prefix
// kept, no mask left, the same tokens for the same seed.
func TestFirstHitting(t *testing.T) {
	m := open(t, tinyAbsorb)
	info := m.Info()
	for _, req := range []sdk.SampleRequest{
		{Sampler: sdk.FirstHitting, Batch: 2, Seed: 3},
		{Sampler: sdk.FirstHitting, Prefix: "Once", Suffix: "end.", Seed: 4},
		{Sampler: sdk.FirstHitting, Template: "ab[MASK:5]cd", Seed: 5},
		{Sampler: sdk.FirstHitting, Temperature: new(0.8), TopP: new(0.9), Seed: 6},
	} {
		t.Run(req.Prefix+req.Template+strings.Repeat("T", int(req.Seed/6)), func(t *testing.T) {
			res, err := m.Sample(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			fixed := len(req.Prefix) + len(req.Suffix)
			free := info.Length - fixed
			if req.Template != "" {
				free = info.Length - 4 // the literal bytes (the byte tokenizer has no end-of-text token to pin)
			}
			if res.NetworkCalls != free || res.Steps != free || res.NetworkCalls > info.Length || res.Denoise {
				t.Errorf("%d network calls, %d steps, denoise %v; want %d (the free positions)", res.NetworkCalls, res.Steps, res.Denoise, free)
			}
			for _, s := range res.Samples {
				if slices.Contains(s.Tokens, int64(info.MaskID)) {
					t.Errorf("mask left: %v", s.Tokens)
				}
				if !strings.HasPrefix(s.Text, req.Prefix) || !strings.HasSuffix(s.Text, req.Suffix) {
					t.Errorf("%q lost its prefix or suffix", s.Text)
				}
				if req.Template != "" && (!strings.HasPrefix(s.Text, "ab") || !strings.HasSuffix(s.Text, "cd") || len(s.Tokens) != 9) {
					t.Errorf("infill %q (%d tokens)", s.Text, len(s.Tokens))
				}
			}
			again, err := m.Sample(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			for b := range res.Samples {
				if !slices.Equal(res.Samples[b].Tokens, again.Samples[b].Tokens) {
					t.Errorf("same seed, other tokens")
				}
			}
		})
	}
	steps := 0
	for st, err := range m.Stream(context.Background(), sdk.SampleRequest{Sampler: sdk.FirstHitting, Prefix: "ab"}) {
		if err != nil {
			t.Fatal(err)
		}
		steps++
		if st.Steps != info.Length-2 || st.Masked != info.Length-2-st.Index {
			t.Errorf("step %d of %d, %d masked", st.Index, st.Steps, st.Masked)
		}
	}
	if steps != info.Length-2 {
		t.Errorf("%d steps streamed, want %d", steps, info.Length-2)
	}
}

// TestAdaptiveSamplers runs the confidence and entropy-bounded samplers
// through ONNX Runtime: no mask left, prefix, suffix and template kept, at
// most one network call per free position, fewer with a loose knob, the
// knob (or its default) reported, the same tokens for the same seed; and
// Stream's steps end with Index = Steps, the rows' masks counted down.
func TestAdaptiveSamplers(t *testing.T) {
	m := open(t, tinyAbsorb)
	info := m.Info()
	for _, req := range []sdk.SampleRequest{
		{Sampler: sdk.Confidence, Batch: 3, Seed: 3},
		{Sampler: sdk.Confidence, Threshold: 0.001, Prefix: "Once", Suffix: "end.", Seed: 4, Temperature: new(0.8), TopP: new(0.9)},
		{Sampler: sdk.EntropyBounded, Batch: 2, Seed: 5},
		{Sampler: sdk.EntropyBounded, EntropyBudget: 40, Template: "ab[MASK:5]cd", Seed: 6},
		{Sampler: sdk.EntropyBounded, EntropyBudget: 1e-9, Seed: 7},
	} {
		t.Run(fmt.Sprintf("%s %g %g %s%s", req.Sampler, req.Threshold, req.EntropyBudget, req.Prefix, req.Template), func(t *testing.T) {
			res, err := m.Sample(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			free := info.Length - len(req.Prefix) - len(req.Suffix)
			if req.Template != "" {
				free = info.Length - 4
			}
			if res.NetworkCalls < 1 || res.NetworkCalls > free || res.Steps != res.NetworkCalls || res.Denoise || res.NetworkRows > res.NetworkCalls*len(res.Samples) {
				t.Errorf("%d network calls (%d rows), %d steps, denoise %v; want 1 to %d (the free positions)", res.NetworkCalls, res.NetworkRows, res.Steps, res.Denoise, free)
			}
			loose := req.Threshold == 0.001 || req.EntropyBudget == 40
			if loose && res.NetworkCalls > free/2 {
				t.Errorf("%d network calls with a loose knob, want at most %d", res.NetworkCalls, free/2)
			}
			if req.EntropyBudget == 1e-9 && res.NetworkCalls != free {
				t.Errorf("%d network calls with a budget of 1e-9 nats, want %d (one position each)", res.NetworkCalls, free)
			}
			wantT, wantB := req.Threshold, req.EntropyBudget
			switch {
			case req.Sampler == sdk.Confidence && wantT == 0:
				wantT = sdk.DefaultThreshold
			case req.Sampler == sdk.EntropyBounded && wantB == 0:
				wantB = sdk.DefaultEntropyBudget
			}
			if res.Threshold != wantT || res.EntropyBudget != wantB || res.Sampler != req.Sampler {
				t.Errorf("reported %s, threshold %v, budget %v; want %s, %v, %v", res.Sampler, res.Threshold, res.EntropyBudget, req.Sampler, wantT, wantB)
			}
			for _, s := range res.Samples {
				if slices.Contains(s.Tokens, int64(info.MaskID)) {
					t.Errorf("mask left: %v", s.Tokens)
				}
				if !strings.HasPrefix(s.Text, req.Prefix) || !strings.HasSuffix(s.Text, req.Suffix) {
					t.Errorf("%q lost its prefix or suffix", s.Text)
				}
				if req.Template != "" && (!strings.HasPrefix(s.Text, "ab") || !strings.HasSuffix(s.Text, "cd") || len(s.Tokens) != 9) {
					t.Errorf("infill %q (%d tokens)", s.Text, len(s.Tokens))
				}
			}
			again, err := m.Sample(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			for b := range res.Samples {
				if !slices.Equal(res.Samples[b].Tokens, again.Samples[b].Tokens) {
					t.Errorf("same seed, other tokens")
				}
			}
		})
	}
	var last sdk.Step
	steps := 0
	for st, err := range m.Stream(context.Background(), sdk.SampleRequest{Sampler: sdk.EntropyBounded, EntropyBudget: 8, Batch: 2, Prefix: "ab"}) {
		if err != nil {
			t.Fatal(err)
		}
		steps++
		if st.Index != steps || st.Steps < st.Index || (steps > 1 && (st.Steps > last.Steps || st.Masked >= last.Masked)) {
			t.Errorf("step %d of %d, %d masked, after step %d of %d, %d masked", st.Index, st.Steps, st.Masked, last.Index, last.Steps, last.Masked)
		}
		last = st
	}
	if last.Result == nil || last.Index != last.Steps || last.Masked != 0 || last.Result.Steps != steps {
		t.Errorf("last step %d of %d, %d masked, result %v; want the result at Index = Steps = %d", last.Index, last.Steps, last.Masked, last.Result != nil, steps)
	}
	// blocks past the trained length
	res, err := m.Sample(context.Background(), sdk.SampleRequest{Sampler: sdk.Confidence, Threshold: 0.2, Length: 80, BlockOverlap: 8, Prefix: "Once", Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	if tok := res.Samples[0].Tokens; len(tok) != 80 || slices.Contains(tok, int64(info.MaskID)) || !strings.HasPrefix(res.Samples[0].Text, "Once") {
		t.Errorf("blocks: %d tokens %q", len(tok), res.Samples[0].Text)
	}
}

// TestUnmaskKnobs: top-k 1 with the same seed on every sampler gives tokens
// that differ from the untruncated run, the settings come back in the result,
// and the defaults are reported as such.
func TestUnmaskKnobs(t *testing.T) {
	m := open(t, tinyAbsorb)
	for _, sampler := range []string{sdk.Analytic, sdk.Euler, sdk.FirstHitting} {
		t.Run(sampler, func(t *testing.T) {
			steps := 8
			if sampler == sdk.FirstHitting {
				steps = 0
			}
			plain, err := m.Sample(context.Background(), sdk.SampleRequest{Sampler: sampler, Steps: steps, Batch: 3, Seed: 9})
			if err != nil {
				t.Fatal(err)
			}
			if plain.Temperature != 1 || plain.TopK != 0 || plain.TopP != 1 {
				t.Errorf("defaults reported as temperature %v, top-k %d, top-p %v", plain.Temperature, plain.TopK, plain.TopP)
			}
			greedy, err := m.Sample(context.Background(), sdk.SampleRequest{Sampler: sampler, Steps: steps, Batch: 3, Seed: 9, TopK: 1, Temperature: new(0.5), TopP: new(0.5)})
			if err != nil {
				t.Fatal(err)
			}
			if greedy.TopK != 1 || greedy.Temperature != 0.5 || greedy.TopP != 0.5 {
				t.Errorf("settings reported as temperature %v, top-k %d, top-p %v", greedy.Temperature, greedy.TopK, greedy.TopP)
			}
			same := 0
			for b := range plain.Samples {
				if slices.Equal(plain.Samples[b].Tokens, greedy.Samples[b].Tokens) {
					same++
				}
			}
			if same == len(plain.Samples) {
				t.Errorf("top-k 1 changed no sample")
			}
			// Temperature 0 and TopP 0 are greedy, as in ollama and OpenAI:
			// the tokens of TopK 1; Temperature 1 and TopP 1 are nil's.
			for name, req := range map[string]sdk.SampleRequest{
				"temperature 0": {Temperature: new(0.0)}, "top-p 0": {TopP: new(0.0)},
				"temperature 1": {Temperature: new(1.0)}, "top-p 1": {TopP: new(1.0)},
			} {
				req.Sampler, req.Steps, req.Batch, req.Seed = sampler, steps, 3, 9
				res, err := m.Sample(context.Background(), req)
				if err != nil {
					t.Fatal(name, err)
				}
				want := plain
				if strings.HasSuffix(name, "0") {
					want = greedy
				}
				for b := range res.Samples {
					if !slices.Equal(res.Samples[b].Tokens, want.Samples[b].Tokens) {
						t.Errorf("%s: sample %d differs from the %s one", name, b, map[bool]string{true: "top-k 1", false: "default"}[want == greedy])
					}
				}
			}
		})
	}
}

func TestSamplerBadRequests(t *testing.T) {
	absorb, uniform := open(t, tinyAbsorb), open(t, tinyUniform)
	tests := []struct {
		name  string
		m     *sdk.Model
		req   sdk.SampleRequest
		field string
	}{
		{"first-hitting with steps", absorb, sdk.SampleRequest{Sampler: sdk.FirstHitting, Steps: 16}, "Steps"},
		{"first-hitting on a uniform model", uniform, sdk.SampleRequest{Sampler: sdk.FirstHitting}, "Sampler"},
		{"confidence with steps", absorb, sdk.SampleRequest{Sampler: sdk.Confidence, Steps: 16}, "Steps"},
		{"entropy-bounded on a uniform model", uniform, sdk.SampleRequest{Sampler: sdk.EntropyBounded}, "Sampler"},
		{"threshold above 1", absorb, sdk.SampleRequest{Sampler: sdk.Confidence, Threshold: 1.5}, "Threshold"},
		{"negative threshold", absorb, sdk.SampleRequest{Sampler: sdk.Confidence, Threshold: -0.5}, "Threshold"},
		{"threshold with analytic", absorb, sdk.SampleRequest{Threshold: 0.5}, "Threshold"},
		{"threshold with entropy-bounded", absorb, sdk.SampleRequest{Sampler: sdk.EntropyBounded, Threshold: 0.5}, "Threshold"},
		{"negative budget", absorb, sdk.SampleRequest{Sampler: sdk.EntropyBounded, EntropyBudget: -1}, "EntropyBudget"},
		{"budget with first-hitting", absorb, sdk.SampleRequest{Sampler: sdk.FirstHitting, EntropyBudget: 1}, "EntropyBudget"},
		{"negative temperature", absorb, sdk.SampleRequest{Temperature: new(-1.0)}, "Temperature"},
		{"huge temperature", absorb, sdk.SampleRequest{Temperature: new(1e6)}, "Temperature"},
		{"negative top-k", absorb, sdk.SampleRequest{TopK: -1}, "TopK"},
		{"top-p above 1", absorb, sdk.SampleRequest{TopP: new(1.2)}, "TopP"},
		{"top-k on a uniform model", uniform, sdk.SampleRequest{TopK: 3}, "TopK"},
		{"temperature on a uniform model", uniform, sdk.SampleRequest{Temperature: new(0.5)}, "Temperature"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.m.Sample(context.Background(), tt.req)
			var fe *sdk.FieldError
			if !errors.Is(err, sdk.ErrBadRequest) || !errors.As(err, &fe) || fe.Field != tt.field {
				t.Fatalf("Sample error = %v, want a FieldError on %s", err, tt.field)
			}
		})
	}
}

// TestBlocks samples tiny-absorb (trained length 32) at 80 tokens in blocks:
// prefix and suffix kept, no mask left, the calls of three blocks (starts
// 0, 24 and 48 with overlap 8; 0, 22 and 38 for 70 tokens with overlap 10),
// the same seed the same tokens, and for first-hitting one call per
// generated token.
func TestBlocks(t *testing.T) {
	m := open(t, tinyAbsorb)
	mask := int64(m.Info().MaskID)
	for _, tc := range []struct {
		req   sdk.SampleRequest
		calls int
	}{
		{sdk.SampleRequest{Steps: 4, Length: 80, BlockOverlap: 8, Prefix: "Once", Suffix: "end.", Batch: 2, Seed: 1}, 3 * 5},
		{sdk.SampleRequest{Sampler: sdk.FirstHitting, Length: 80, BlockOverlap: 8, Prefix: "Once", Seed: 2}, 80 - 4},
		{sdk.SampleRequest{Steps: 2, Length: 70, BlockOverlap: 10, Template: "ab[MASK:60]cd", Seed: 3}, 3 * 3},
	} {
		t.Run(tc.req.Sampler+tc.req.Template, func(t *testing.T) {
			res, err := m.Sample(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if res.NetworkCalls != tc.calls || res.BlockOverlap != tc.req.BlockOverlap {
				t.Errorf("%d network calls, block overlap %d; want %d, %d", res.NetworkCalls, res.BlockOverlap, tc.calls, tc.req.BlockOverlap)
			}
			for _, s := range res.Samples {
				if slices.Contains(s.Tokens, mask) {
					t.Errorf("mask left: %v", s.Tokens)
				}
				if !strings.HasPrefix(s.Text, tc.req.Prefix) || !strings.HasSuffix(s.Text, tc.req.Suffix) {
					t.Errorf("%q lost its prefix or suffix", s.Text)
				}
				if tc.req.Template != "" && (len(s.Tokens) != 64 || !strings.HasPrefix(s.Text, "ab") || !strings.HasSuffix(s.Text, "cd")) {
					t.Errorf("infill across blocks: %q (%d tokens)", s.Text, len(s.Tokens))
				}
				if tc.req.Template == "" && len(s.Tokens) != tc.req.Length {
					t.Errorf("%d tokens, want %d", len(s.Tokens), tc.req.Length)
				}
			}
			again, err := m.Sample(context.Background(), tc.req)
			if err != nil || !slices.Equal(again.Samples[0].Tokens, res.Samples[0].Tokens) {
				t.Errorf("same seed, other tokens (%v)", err)
			}
		})
	}
	// Without a length above the trained one, BlockOverlap changes nothing.
	a, err := m.Sample(context.Background(), sdk.SampleRequest{Steps: 4, Seed: 5, BlockOverlap: 8})
	if err != nil {
		t.Fatal(err)
	}
	b, err := m.Sample(context.Background(), sdk.SampleRequest{Steps: 4, Seed: 5})
	if err != nil || !slices.Equal(a.Samples[0].Tokens, b.Samples[0].Tokens) || a.BlockOverlap != 0 {
		t.Errorf("BlockOverlap at the trained length changed the run (%v)", err)
	}
	uniform := open(t, tinyUniform)
	for _, tc := range []struct {
		m   *sdk.Model
		req sdk.SampleRequest
	}{
		{m, sdk.SampleRequest{Length: 80, BlockOverlap: -1}},
		{m, sdk.SampleRequest{Length: 80, BlockOverlap: 32}},
		{uniform, sdk.SampleRequest{Length: 80, BlockOverlap: 8}},
	} {
		_, err := tc.m.Sample(context.Background(), tc.req)
		var fe *sdk.FieldError
		if !errors.As(err, &fe) || fe.Field != "BlockOverlap" {
			t.Errorf("%+v: %v, want a FieldError on BlockOverlap", tc.req, err)
		}
	}
}

// TestTimeIndependentPlumbing: sedd.json's model.time_independent reaches
// Info and the sampler, which then calls the network at most once per
// unmasking plus once, however many steps; NoCache calls it every step.
// (tiny-absorb's network does condition on time, so only the calls are
// checked here; TestTimeIndependentExport checks the tokens on a network
// that does not.)
func TestTimeIndependentPlumbing(t *testing.T) {
	dir := fixtureCopy(t, tinyAbsorb)
	rewrite(t, filepath.Join(dir, "sedd.json"), `"scale_by_sigma": true,`, `"scale_by_sigma": true, "time_independent": true,`)
	m := open(t, dir)
	if !m.Info().TimeIndependent || open(t, tinyAbsorb).Info().TimeIndependent {
		t.Fatalf("Info().TimeIndependent does not follow sedd.json")
	}
	req := sdk.SampleRequest{Steps: 256, Seed: 1}
	res, err := m.Sample(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if res.NetworkCalls > m.Info().Length+1 {
		t.Errorf("%d network calls for 256 steps, want at most %d", res.NetworkCalls, m.Info().Length+1)
	}
	req.NoCache = true
	if res, err = m.Sample(context.Background(), req); err != nil || res.NetworkCalls != 257 {
		t.Errorf("NoCache: %d network calls (%v), want 257", res.NetworkCalls, err)
	}
}

// TestTimeIndependentExport: on a network exported with its time input held
// constant (tiny-absorb-ti: export.py --random-init tiny --time-independent
// --seed 3), reusing the last output while no token moves gives the tokens of
// the uncached run, with at most Length+1 network calls for 1024 steps.
func TestTimeIndependentExport(t *testing.T) {
	m := open(t, "testdata/tiny-absorb-ti")
	if rep, err := m.Verify(context.Background(), sdk.VerifyRequest{}); err != nil || !rep.OK {
		t.Fatalf("Verify: %v %+v", err, rep)
	}
	if !m.Info().TimeIndependent {
		t.Fatal("tiny-absorb-ti is not marked time-independent")
	}
	for _, req := range []sdk.SampleRequest{
		{Steps: 1024, Seed: 1},
		{Steps: 1024, Seed: 2, Batch: 3, Prefix: "Once"},
		{Steps: 1024, Seed: 5, Batch: 8}, // rows recomputed apart, the others reused
		{Steps: 300, Seed: 3, Sampler: sdk.Euler, TopP: new(0.9)},
		{Steps: 200, Seed: 4, Length: 80, BlockOverlap: 8},
	} {
		t.Run(fmt.Sprintf("%d steps seed %d", req.Steps, req.Seed), func(t *testing.T) {
			cached, err := m.Sample(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			req.NoCache = true
			plain, err := m.Sample(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			for b := range plain.Samples {
				if !slices.Equal(cached.Samples[b].Tokens, plain.Samples[b].Tokens) {
					t.Errorf("sample %d: cached tokens differ\n%v\n%v", b, cached.Samples[b].Tokens, plain.Samples[b].Tokens)
				}
			}
			limit := max(req.Batch, 1)*m.Info().Length + 1
			if req.BlockOverlap > 0 {
				limit = req.Length + 3 // each block's first call, then one per unmasking
			}
			if cached.NetworkCalls > limit {
				t.Errorf("%d network calls cached (%d uncached), want at most %d", cached.NetworkCalls, plain.NetworkCalls, limit)
			}
			t.Logf("%d network calls instead of %d; %v instead of %v", cached.NetworkCalls, plain.NetworkCalls, cached.Elapsed, plain.Elapsed)
		})
	}
}
