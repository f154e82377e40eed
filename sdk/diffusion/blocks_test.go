package diffusion

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
)

// TestBlocksLaw: with exact scores and the exact first-hitting sampler, block
// k generates its new positions from the data law of a window conditioned on
// the positions it shares with block k-1. For the joint model of length 3 in
// a sequence of 5 with overlap 2 (blocks at 0, 1, 2) the law of the output
// is therefore p0(x0, x1, x2)·p0(x3 | x1, x2)·p0(x4 | x2, x3), with p0's
// conditionals taken at window positions 2 given 0 and 1; χ² at level 1e-6.
func TestBlocksLaw(t *testing.T) {
	const tokens, window, length, batch = 3, 3, 5, 20000
	f := newJoint(tokens, window, 21)
	cond := func(a, b, c int64) float64 { // p0(window[2] = c | window[0] = a, window[1] = b)
		x := []int64{a, b, c}
		num := f.p0[f.seqIndex(x)]
		var den float64
		for c2 := range int64(tokens) {
			den += f.p0[f.seqIndex([]int64{a, b, c2})]
		}
		return num / den
	}
	want := make([]float64, ipow(tokens, length))
	seq := make([]int64, length)
	for k := range want {
		kk := k
		for i := range seq {
			seq[i] = int64(kk % tokens)
			kk /= tokens
		}
		want[k] = f.p0[f.seqIndex(seq[:3])] * cond(seq[1], seq[2], seq[3]) * cond(seq[2], seq[3], seq[4])
	}
	out, err := sample(context.Background(), f, Config{Graph: Absorbing{Tokens: tokens}, Noise: logLin, Predictor: FirstHitting,
		Batch: batch, Length: length, Window: window, Overlap: 2, Seed: 8})
	if err != nil {
		t.Fatal(err)
	}
	counts := make([]int, len(want))
	for b := range batch {
		row := out[b*length : (b+1)*length]
		k := 0
		for i := length - 1; i >= 0; i-- {
			k = k*tokens + int(row[i])
		}
		counts[k]++
	}
	stat, df := chiSquare(counts, want, batch)
	if crit := chiSquareCritical(df); stat > crit {
		t.Errorf("χ² = %.1f > %.1f (df %d)", stat, crit, df)
	}
}

// windowRecorder checks what the network sees in block-wise sampling.
type windowRecorder struct {
	ScoreFunc
	window  int
	lengths []int
	seen    [][]int64
}

func (r *windowRecorder) Score(ctx context.Context, x []int64, sigma []float32, batch, length int) (Scores, error) {
	r.lengths = append(r.lengths, length)
	r.seen = append(r.seen, slices.Clone(x))
	return r.ScoreFunc.Score(ctx, x, sigma, batch, length)
}

// TestBlocks: the network always sees Window positions; each block starts
// with the positions shared with earlier blocks holding their final tokens
// and the others masked (but for fixed ones); prefix, suffix and a span
// across a block boundary are kept; no mask is left; the calls and the
// progress steps add up; the same seed gives the same tokens, and a row does
// not depend on the batch.
func TestBlocks(t *testing.T) {
	const length, window, overlap, batch = 20, 8, 3, 3
	starts := []int{0, 5, 10, 12}
	fixed := []Span{{Start: 0, Tokens: []int64{1, 2}}, {Start: 6, Tokens: []int64{3, 3, 0}}, {Start: 18, Tokens: []int64{0, 1}}}
	userFixed := spanTokens(fixed)
	for _, pred := range []Predictor{Analytic, FirstHitting, Confidence, EntropyBounded} {
		t.Run(pred.String(), func(t *testing.T) {
			rec := &windowRecorder{ScoreFunc: newIndependent(absorb5, window, 6), window: window}
			var seen []Step
			var firstTokens []int64
			cfg := Config{Graph: absorb5, Noise: logLin, Predictor: pred, Steps: 4, Denoise: true, Batch: batch, Length: length,
				Window: window, Overlap: overlap, Seed: 12, Fixed: fixed,
				Progress: func(s Step) error {
					if len(s.Tokens) != batch*length {
						return fmt.Errorf("step %d: %d tokens", s.Index, len(s.Tokens))
					}
					if len(seen) == 0 {
						firstTokens = slices.Clone(s.Tokens)
					}
					seen = append(seen, s)
					return nil
				}}
			if pred == Confidence {
				cfg.Threshold = 1 // one position per call, as first hitting
			}
			out, err := sample(context.Background(), rec, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if slices.Contains(out, absorb5.Mask()) {
				t.Fatalf("masks left: %v", out)
			}
			for _, sp := range fixed {
				for b := range batch {
					if got := out[b*length+sp.Start : b*length+sp.Start+len(sp.Tokens)]; !slices.Equal(got, sp.Tokens) {
						t.Errorf("row %d: %v at %d, want %v", b, got, sp.Start, sp.Tokens)
					}
				}
			}
			for _, l := range rec.lengths {
				if l != window {
					t.Fatalf("the network saw length %d, want %d", l, window)
				}
			}
			wantCalls := len(starts) * (cfg.Steps + 1)
			if pred != Analytic {
				wantCalls = length - userFixed // each position is generated once
			}
			if len(rec.seen) != wantCalls || len(seen) != wantCalls || seen[len(seen)-1].Steps != wantCalls {
				t.Fatalf("%d calls, %d progress steps, want %d", len(rec.seen), len(seen), wantCalls)
			}
			// The first call of each block: earlier blocks' positions hold their final tokens.
			call := 0
			for k, a := range starts {
				frontier := 0
				if k > 0 {
					frontier = starts[k-1] + window
				}
				free := 0
				for i := range window {
					pos := a + i
					if pos >= frontier && !slices.ContainsFunc(fixed, func(sp Span) bool { return pos >= sp.Start && pos < sp.Start+len(sp.Tokens) }) {
						free++
					}
				}
				if pred != Analytic && free == 0 {
					continue // nothing left to generate: no call
				}
				x := rec.seen[call]
				for b := range batch {
					for i := range window {
						pos, tok := a+i, x[b*window+i]
						final := out[b*length+pos]
						pinned := slices.ContainsFunc(fixed, func(sp Span) bool { return pos >= sp.Start && pos < sp.Start+len(sp.Tokens) })
						if (pos < frontier || pinned) != (tok == final) || (pos >= frontier && !pinned && tok != absorb5.Mask()) {
							t.Fatalf("block %d row %d: position %d shows %d at the start (final %d, frontier %d)", k, b, pos, tok, final, frontier)
						}
					}
				}
				if pred != Analytic {
					call += free
				} else {
					call += cfg.Steps + 1
				}
			}
			for k, s := range seen {
				if s.Index != k+1 {
					t.Fatalf("progress %d has index %d", k, s.Index)
				}
			}
			// The progress callback saw the blocks to come as masks (the
			// tokens were cloned: the buffer is reused).
			if got := firstTokens[window]; got != absorb5.Mask() {
				t.Errorf("first progress step: position %d holds %d, not a mask", window, got)
			}
			again, err := sample(context.Background(), newIndependent(absorb5, window, 6), cfg)
			if err != nil || !slices.Equal(again, out) {
				t.Errorf("same seed, other tokens (%v)", err)
			}
			cfg.Batch, cfg.Progress = 1, nil
			one, err := sample(context.Background(), newIndependent(absorb5, window, 6), cfg)
			if err != nil || !slices.Equal(one, out[:length]) {
				t.Errorf("row 0 depends on the batch (%v)", err)
			}
		})
	}
}

func TestBlocksErrors(t *testing.T) {
	ok := Config{Graph: absorb5, Noise: logLin, Steps: 4, Batch: 1, Length: 16, Window: 8, Overlap: 2}
	if _, err := NewSampler(ok); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func(*Config)
	}{
		{"overlap 0", func(c *Config) { c.Overlap = 0 }},
		{"overlap the window", func(c *Config) { c.Overlap = 8 }},
		{"negative window", func(c *Config) { c.Window = -1 }},
		{"uniform graph", func(c *Config) { c.Graph, c.Noise = uniform4, geo }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.change(&cfg)
			if _, err := NewSampler(cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("NewSampler = %v, want ErrInvalidConfig", err)
			}
		})
	}
	// A window as long as the sequence is one block: the tokens of no window.
	cfg := ok
	cfg.Window, cfg.Overlap, cfg.Length = 16, 0, 16
	a, err := sample(context.Background(), newIndependent(absorb5, 16, 1), cfg)
	cfg.Window = 0
	b, err2 := sample(context.Background(), newIndependent(absorb5, 16, 1), cfg)
	if err != nil || err2 != nil || !slices.Equal(a, b) {
		t.Errorf("a window of the whole length changes the tokens (%v, %v)", err, err2)
	}
}

func TestBlocksAllocs(t *testing.T) {
	assertRunAllocs(t, Config{Graph: absorb5, Noise: logLin, Steps: 4, Denoise: true, Batch: 2, Length: 40, Window: 16, Overlap: 4}, 16)
}
