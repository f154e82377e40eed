package diffusion

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"
)

// jointLaw samples cfg from the joint model and returns the counts of each
// sequence (indexed like joint.p0).
func jointLaw(t *testing.T, f *joint, cfg Config) []int {
	t.Helper()
	out, err := sample(context.Background(), f, cfg)
	if err != nil {
		t.Fatal(err)
	}
	counts := make([]int, len(f.p0))
	for b := range cfg.Batch {
		row := out[b*cfg.Length : (b+1)*cfg.Length]
		for _, tok := range row {
			if tok < 0 || int(tok) >= f.tokens {
				t.Fatalf("row %d: %v holds a mask or a bad token", b, row)
			}
		}
		counts[f.seqIndex(row)]++
	}
	return counts
}

// conditional returns p0 restricted to the sequences that hold the fixed
// tokens, renormalized.
func (f *joint) conditional(fixed []Span) []float64 {
	p := slices.Clone(f.p0)
	var sum float64
	x := make([]int64, f.length)
	for s := range p {
		ss := s
		for i := range x {
			x[i] = int64(ss % f.tokens)
			ss /= f.tokens
		}
		for _, sp := range fixed {
			if !slices.Equal(x[sp.Start:sp.Start+len(sp.Tokens)], sp.Tokens) {
				p[s] = 0
			}
		}
		sum += p[s]
	}
	for s := range p {
		p[s] /= sum
	}
	return p
}

// TestFirstHittingLaw: on a model whose positions depend on each other, the
// first-hitting sampler's samples follow the exact data law (χ² at level
// 1e-6), as the analytic sampler's do at many steps, and the test can tell:
// the analytic sampler with one step, which unmasks every position at once
// and independently, fails it.
func TestFirstHittingLaw(t *testing.T) {
	const tokens, length, batch = 3, 3, 12000
	f := newJoint(tokens, length, 11)
	prefix := []Span{{Start: 0, Tokens: []int64{2}}}
	middle := []Span{{Start: 1, Tokens: []int64{0}}}
	tests := []struct {
		name  string
		noise Noise
		pred  Predictor
		steps int
		fixed []Span
		exact bool
	}{
		{"first-hitting loglinear", logLin, FirstHitting, 0, nil, true},
		{"first-hitting geometric", geo, FirstHitting, 0, nil, true},
		{"first-hitting with a prefix", logLin, FirstHitting, 0, prefix, true},
		{"first-hitting with a fixed middle", geo, FirstHitting, 0, middle, true},
		{"analytic 128 steps", logLin, Analytic, 128, nil, true},
		{"analytic 128 steps with a prefix", logLin, Analytic, 128, prefix, true},
		{"analytic 1 step (not exact)", logLin, Analytic, 1, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			counts := jointLaw(t, f, Config{Graph: Absorbing{Tokens: tokens}, Noise: tc.noise, Predictor: tc.pred,
				Steps: tc.steps, Denoise: true, Batch: batch, Length: length, Seed: 3, Fixed: tc.fixed})
			stat, df := chiSquare(counts, f.conditional(tc.fixed), batch)
			crit := chiSquareCritical(df)
			if tc.exact && stat > crit {
				t.Errorf("χ² = %.1f > %.1f (df %d): counts %v", stat, crit, df, counts)
			}
			if !tc.exact && stat < 4*crit {
				t.Errorf("χ² = %.1f, want far above %.1f (df %d): the test cannot tell a wrong law", stat, crit, df)
			}
		})
	}
}

// TestFirstHittingCalls: one network call per free position, each row's σ
// decreasing and never below σ(EndTime), and the progress callback once per
// call with T decreasing to 0.
func TestFirstHittingCalls(t *testing.T) {
	const length = 6
	for _, fixed := range [][]Span{nil, {{Start: 0, Tokens: []int64{1, 2}}}, {{Start: 0, Tokens: []int64{0, 0, 1, 2, 1, 0}}}} {
		t.Run(fmt.Sprintf("%d fixed", spanTokens(fixed)), func(t *testing.T) {
			ind := newIndependent(Absorbing{Tokens: 3}, length, 4)
			rec := &recorder{ScoreFunc: ind}
			var seen []Step
			cfg := Config{Graph: Absorbing{Tokens: 3}, Noise: logLin, Predictor: FirstHitting, Batch: 3, Length: length, Seed: 5, Fixed: fixed,
				Progress: func(s Step) error { seen = append(seen, s); return nil }}
			out, err := sample(context.Background(), rec, cfg)
			if err != nil {
				t.Fatal(err)
			}
			free := length - spanTokens(fixed)
			if len(rec.sigmas) != free || len(seen) != free {
				t.Fatalf("%d network calls and %d progress calls, want %d (the free positions)", len(rec.sigmas), len(seen), free)
			}
			floor := float32(logLin.Total(DefaultEndTime))
			for k, sig := range rec.sigmas {
				for b, s := range sig {
					if s < floor || (k > 0 && s > rec.sigmas[k-1][b]) {
						t.Errorf("call %d row %d: σ = %v after %v (floor %v)", k, b, s, rec.sigmas[max(k-1, 0)][b], floor)
					}
				}
			}
			for k, s := range seen {
				if s.Index != k+1 || s.Steps != free || (k > 0 && !(s.T < seen[k-1].T)) {
					t.Errorf("progress %d: index %d of %d, T %v", k, s.Index, s.Steps, s.T)
				}
			}
			if free > 0 && seen[free-1].T != 0 {
				t.Errorf("T after the last unmasking = %v, want 0", seen[free-1].T)
			}
			if slices.Contains(out, 3) {
				t.Errorf("masks left: %v", out)
			}
			for _, sp := range fixed {
				for b := range 3 {
					if got := out[b*length+sp.Start : b*length+sp.Start+len(sp.Tokens)]; !slices.Equal(got, sp.Tokens) {
						t.Errorf("row %d: %v at %d, want %v", b, got, sp.Start, sp.Tokens)
					}
				}
			}
		})
	}
}

func spanTokens(spans []Span) int {
	n := 0
	for _, sp := range spans {
		n += len(sp.Tokens)
	}
	return n
}

// recorder records the σ of every call of the score function it wraps.
type recorder struct {
	ScoreFunc
	sigmas [][]float32
}

func (r *recorder) Score(ctx context.Context, x []int64, sigma []float32, batch, length int) (Scores, error) {
	r.sigmas = append(r.sigmas, slices.Clone(sigma))
	return r.ScoreFunc.Score(ctx, x, sigma, batch, length)
}

func TestFirstHittingReproducible(t *testing.T) {
	cfg := Config{Graph: absorb5, Noise: logLin, Predictor: FirstHitting, Batch: 8, Length: 16, Seed: 99}
	run := func(cfg Config) []int64 {
		out, err := sample(context.Background(), newIndependent(absorb5, cfg.Length, 3), cfg)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	a := run(cfg)
	s, err := NewSampler(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f := newIndependent(absorb5, cfg.Length, 3)
	for range 2 {
		if c, err := s.Run(context.Background(), f); err != nil || !slices.Equal(a, c) {
			t.Errorf("a reused Sampler gives other tokens (%v)", err)
		}
	}
	cfg.Seed++
	if d := run(cfg); slices.Equal(a, d) {
		t.Errorf("seeds 99 and 100 give the same tokens")
	}
	cfg.Seed--
	cfg.Batch = 2
	if e := run(cfg); !slices.Equal(e[cfg.Length:], a[cfg.Length:2*cfg.Length]) {
		t.Errorf("row 1 depends on the batch size")
	}
	// Steps and Denoise do not matter.
	cfg.Steps, cfg.Denoise = 7, true
	if e := run(cfg); !slices.Equal(e, a[:2*cfg.Length]) {
		t.Errorf("Steps or Denoise change the first-hitting tokens")
	}
}

// TestFirstHittingPinned pins a few tokens so that any change of the random
// streams, their order of use or the maths shows up; update it only on purpose.
func TestFirstHittingPinned(t *testing.T) {
	out, err := sample(context.Background(), newIndependent(absorb5, 6, 1), Config{
		Graph: absorb5, Noise: logLin, Predictor: FirstHitting, Batch: 2, Length: 6, Seed: 7,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{2, 0, 0, 2, 0, 3, 3, 2, 2, 1, 2, 2}
	if !slices.Equal(out, want) {
		t.Errorf("tokens = %#v, want %#v", out, want)
	}
}

func TestFirstHittingErrors(t *testing.T) {
	if _, err := NewSampler(Config{Graph: uniform4, Noise: geo, Predictor: FirstHitting, Batch: 1, Length: 4}); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("uniform graph: %v, want ErrInvalidConfig", err)
	}
	f := newIndependent(absorb5, 4, 1)
	f.after = func(call int, sc *Scores) {
		for k := range sc.LSE {
			sc.LSE[k] = nanIf(call == 2, sc.LSE[k])
		}
	}
	_, err := sample(context.Background(), f, Config{Graph: absorb5, Noise: logLin, Predictor: FirstHitting, Batch: 2, Length: 4, Seed: 1})
	var se *ScoreError
	if !errors.As(err, &se) || !errors.Is(err, ErrNonFinite) || se.Step != 2 {
		t.Errorf("NaN log-sum-exp at call 2: err = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := newIndependent(absorb5, 4, 1)
	g.before = func(call int, _ []int64) error {
		if call == 2 {
			cancel()
		}
		return nil
	}
	if _, err := sample(ctx, g, Config{Graph: absorb5, Noise: logLin, Predictor: FirstHitting, Batch: 1, Length: 4}); !errors.Is(err, context.Canceled) || g.calls != 2 {
		t.Errorf("err = %v after %d calls, want context.Canceled after 2", err, g.calls)
	}
}

func TestFirstHittingAllocs(t *testing.T) {
	assertRunAllocs(t, Config{Graph: absorb5, Noise: logLin, Predictor: FirstHitting, Batch: 2, Length: 32,
		Progress: func(Step) error { return nil }}, 32)
}

// TestFirstHittingTimes: with n masked positions at masking probability p,
// the next unmasking happens where p' = p·u^{1/n}, so (p'/p)^n is uniform;
// checked on the first two calls (n = Length, then Length-1) with a χ² over
// ten bins.
func TestFirstHittingTimes(t *testing.T) {
	const batch, length = 5000, 5
	for _, noise := range []Noise{logLin, geo} {
		t.Run(fmt.Sprintf("%T", noise), func(t *testing.T) {
			rec := &recorder{ScoreFunc: newIndependent(absorb5, length, 2)}
			if _, err := sample(context.Background(), rec, Config{Graph: absorb5, Noise: noise, Predictor: FirstHitting, Batch: batch, Length: length, Seed: 9}); err != nil {
				t.Fatal(err)
			}
			prev := make([]float64, batch)
			for b := range prev {
				prev[b] = -math.Expm1(-noise.Total(1))
			}
			for call, n := range []int{length, length - 1} {
				counts := make([]int, 10)
				for b, s := range rec.sigmas[call] {
					p := -math.Expm1(-float64(s))
					v := math.Pow(p/prev[b], float64(n))
					counts[min(int(v*10), 9)]++
					prev[b] = p
				}
				uni := []float64{.1, .1, .1, .1, .1, .1, .1, .1, .1, .1}
				if stat, df := chiSquare(counts, uni, batch); stat > chiSquareCritical(df) {
					t.Errorf("call %d: χ² = %.1f: counts %v", call+1, stat, counts)
				}
			}
		})
	}
}
