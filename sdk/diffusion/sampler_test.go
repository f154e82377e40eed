package diffusion

import (
	"context"
	"errors"
	"fmt"
	"math"
	"runtime"
	"slices"
	"testing"
)

var (
	absorb5  = Absorbing{Tokens: 4}
	uniform4 = Uniform{Tokens: 4}
	logLin   = LogLinear{Eps: 1e-3}
	geo      = Geometric{SigmaMin: 1e-4, SigmaMax: 20}
)

// TestSampleMarginals samples many rows from the closed-form independent
// model, whose exact scores make the analytic sampler (and, on the absorbing
// graph, euler too) exact: the tokens at each position must follow pi (χ² at
// level 1e-6). This is the end-to-end check of start, steps, denoiser and the
// time grid together.
func TestSampleMarginals(t *testing.T) {
	tests := []struct {
		name  string
		g     Graph
		noise Noise
		pred  Predictor
		steps int
	}{
		{"absorb-analytic", absorb5, logLin, Analytic, 16},
		{"absorb-euler", absorb5, logLin, Euler, 16},
		{"absorb-analytic-one-step", absorb5, logLin, Analytic, 1},
		{"absorb-none-denoiser-only", absorb5, logLin, None, 4},
		{"uniform-analytic", uniform4, geo, Analytic, 16},
	}
	const batch, length = 4000, 3
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newIndependent(tc.g, length, 5)
			out, err := sample(context.Background(), f, Config{
				Graph: tc.g, Noise: tc.noise, Predictor: tc.pred, Steps: tc.steps,
				Denoise: true, Batch: batch, Length: length, Seed: 42,
			})
			if err != nil {
				t.Fatal(err)
			}
			for i := range length {
				counts := make([]int, len(f.pi[i]))
				for b := range batch {
					tok := out[b*length+i]
					if tok < 0 || int(tok) >= len(counts) {
						t.Fatalf("row %d position %d: token %d is not an ordinary token (mask left?)", b, i, tok)
					}
					counts[tok]++
				}
				stat, df := chiSquare(counts, f.pi[i], batch)
				if crit := chiSquareCritical(df); stat > crit {
					t.Errorf("position %d: χ² = %.1f > %.1f: counts %v, pi %v", i, stat, crit, counts, f.pi[i])
				}
			}
		})
	}
}

func TestSampleKeepsFixedTokens(t *testing.T) {
	const length = 12
	spans := map[string][]Span{
		"prefix": {{Start: 0, Tokens: []int64{3, 1, 2}}},
		"suffix": {{Start: length - 2, Tokens: []int64{0, 3}}},
		"middle": {{Start: 5, Tokens: []int64{2, 2, 1}}},
		"all":    {{Start: 0, Tokens: []int64{1}}, {Start: 4, Tokens: []int64{0, 1}}, {Start: length - 1, Tokens: []int64{2}}},
	}
	for _, g := range []Graph{absorb5, uniform4} {
		for _, pred := range []Predictor{Analytic, Euler, None} {
			for name, fixed := range spans {
				t.Run(fmt.Sprintf("%T/%v/%s", g, pred, name), func(t *testing.T) {
					f := newIndependent(g, length, 1)
					f.before = func(call int, x []int64) error {
						for _, sp := range fixed {
							for b := range 3 {
								if got := x[b*length+sp.Start : b*length+sp.Start+len(sp.Tokens)]; !slices.Equal(got, sp.Tokens) {
									return fmt.Errorf("call %d, row %d: score sees %v at %d, want %v", call, b, got, sp.Start, sp.Tokens)
								}
							}
						}
						return nil
					}
					out, err := sample(context.Background(), f, Config{
						Graph: g, Noise: logLin, Predictor: pred, Steps: 8, Denoise: true,
						Batch: 3, Length: length, Seed: 7, Fixed: fixed,
					})
					if err != nil {
						t.Fatal(err)
					}
					for _, sp := range fixed {
						for b := range 3 {
							if got := out[b*length+sp.Start : b*length+sp.Start+len(sp.Tokens)]; !slices.Equal(got, sp.Tokens) {
								t.Errorf("row %d: %v at %d, want %v", b, got, sp.Start, sp.Tokens)
							}
						}
					}
					if sp := g.spec(); sp.absorb && slices.Contains(out, sp.mask) {
						t.Errorf("masks left after the denoiser: %v", out)
					}
				})
			}
		}
	}
}

func TestSampleReproducible(t *testing.T) {
	for _, g := range []Graph{absorb5, uniform4} {
		t.Run(fmt.Sprintf("%T", g), func(t *testing.T) {
			cfg := Config{Graph: g, Noise: geo, Predictor: Analytic, Steps: 20, Denoise: true, Batch: 8, Length: 16, Seed: 99}
			run := func(cfg Config, procs int) []int64 {
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
				out, err := sample(context.Background(), newIndependent(g, cfg.Length, 3), cfg)
				if err != nil {
					t.Fatal(err)
				}
				return out
			}
			a, b := run(cfg, 1), run(cfg, 8)
			if !slices.Equal(a, b) {
				t.Errorf("GOMAXPROCS 1 and 8 differ:\n%v\n%v", a, b)
			}
			s, err := NewSampler(cfg)
			if err != nil {
				t.Fatal(err)
			}
			f := newIndependent(g, cfg.Length, 3)
			for range 2 {
				c, err := s.Run(context.Background(), f)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(a, c) {
					t.Errorf("a reused Sampler gives other tokens")
				}
			}
			cfg.Seed++
			if d := run(cfg, 1); slices.Equal(a, d) {
				t.Errorf("seeds 99 and 100 give the same tokens %v", d)
			}
			// Rows use their own streams: row 1 of a batch of 8 is row 1 of a batch of 2.
			cfg.Seed--
			cfg.Batch = 2
			if e := run(cfg, 1); !slices.Equal(e[cfg.Length:], a[cfg.Length:2*cfg.Length]) {
				t.Errorf("row 1 depends on the batch size")
			}
		})
	}
}

// TestSamplePinned pins a few tokens so that any change of the random streams,
// their order of use or the maths shows up; update it only on purpose.
func TestSamplePinned(t *testing.T) {
	out, err := sample(context.Background(), newIndependent(absorb5, 6, 1), Config{
		Graph: absorb5, Noise: logLin, Steps: 10, Denoise: true, Batch: 2, Length: 6, Seed: 7,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []int64{1, 0, 0, 1, 2, 1, 0, 1, 1, 2, 2, 3}
	if !slices.Equal(out, want) {
		t.Errorf("tokens = %#v, want %#v", out, want)
	}
}

// TestSampleUniformLargeStep: one analytic step from σ = 20 amplifies the
// float32 rounding of the scores by e^20, so every weight of a position can
// round to ≤ 0; the position then keeps its token instead of failing.
func TestSampleUniformLargeStep(t *testing.T) {
	f := newIndependent(uniform4, 8, 1)
	out, err := sample(context.Background(), f, Config{Graph: uniform4, Noise: geo, Steps: 1, Denoise: true, Batch: 50, Length: 8})
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range out {
		if tok < 0 || tok >= 4 {
			t.Fatalf("token %d", tok)
		}
	}
}

func TestSampleProgress(t *testing.T) {
	stop := errors.New("enough")
	tests := []struct {
		name      string
		denoise   bool
		stopAt    int
		wantCalls int
		wantErr   error
	}{
		{"all steps", false, 0, 5, nil},
		{"all steps and denoiser", true, 0, 6, nil},
		{"stopped at 3", true, 3, 3, stop},
		{"stopped at denoiser", true, 6, 6, stop},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var seen []Step
			f := newIndependent(absorb5, 4, 1)
			_, err := sample(context.Background(), f, Config{
				Graph: absorb5, Noise: logLin, Steps: 5, Denoise: tc.denoise, Batch: 2, Length: 4,
				Progress: func(s Step) error {
					s.Tokens = slices.Clone(s.Tokens)
					seen = append(seen, s)
					if s.Index == tc.stopAt {
						return stop
					}
					return nil
				},
			})
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (err == nil) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if len(seen) != tc.wantCalls || f.calls != tc.wantCalls {
				t.Fatalf("%d progress calls, %d score calls, want %d", len(seen), f.calls, tc.wantCalls)
			}
			for k, s := range seen {
				if s.Index != k+1 || s.Steps != 5+btoi(tc.denoise) || s.Batch != 2 || s.Length != 4 || len(s.Tokens) != 8 {
					t.Errorf("call %d: %+v", k, s)
				}
				if k > 0 && !(s.T < seen[k-1].T) {
					t.Errorf("T does not decrease: %v then %v", seen[k-1].T, s.T)
				}
			}
			if last := seen[len(seen)-1]; tc.denoise && tc.wantErr == nil && last.T != 0 {
				t.Errorf("T after the denoiser = %v, want 0", last.T)
			}
		})
	}
}

func TestSampleContextCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	f := newIndependent(uniform4, 4, 1)
	f.before = func(call int, _ []int64) error {
		if call == 2 {
			cancel()
		}
		return nil
	}
	_, err := sample(ctx, f, Config{Graph: uniform4, Noise: geo, Steps: 10, Denoise: true, Batch: 1, Length: 4})
	if !errors.Is(err, context.Canceled) || f.calls != 2 {
		t.Errorf("err = %v after %d score calls, want context.Canceled after 2", err, f.calls)
	}
	f = newIndependent(uniform4, 4, 1)
	_, err = sample(ctx, f, Config{Graph: uniform4, Noise: geo, Steps: 10, Batch: 1, Length: 4})
	if !errors.Is(err, context.Canceled) || f.calls != 0 {
		t.Errorf("done context: err = %v after %d score calls", err, f.calls)
	}
}

func TestSampleBadScores(t *testing.T) {
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	boom := errors.New("forward failed")
	tests := []struct {
		name     string
		g        Graph
		pred     Predictor
		after    func(call int, sc *Scores)
		before   func(call int, x []int64) error
		wantErr  error
		wantStep int
		wantPos  [2]int // row, position
	}{
		{
			name: "NaN LSE at step 3", g: absorb5, pred: Analytic,
			after:   func(call int, sc *Scores) { sc.LSE[1*4+2] = nanIf(call == 3, sc.LSE[6]) },
			wantErr: ErrNonFinite, wantStep: 3, wantPos: [2]int{1, 2},
		},
		{
			name: "Inf LSE at the denoiser", g: uniform4, pred: Euler,
			after:   func(call int, sc *Scores) { sc.LSE[3] = infIf(call == 7, sc.LSE[3]) },
			wantErr: ErrNonFinite, wantStep: 7, wantPos: [2]int{0, 3},
		},
		{
			name: "NaN in a row the denoiser reads", g: absorb5, pred: None,
			after:   func(call int, sc *Scores) { sc.Row(1, 1)[2] = nan },
			wantErr: ErrNonFinite, wantStep: 7, wantPos: [2]int{1, 1},
		},
		{
			name: "+Inf in a uniform analytic row", g: uniform4, pred: Analytic,
			after:   func(call int, sc *Scores) { sc.Row(0, 0)[1] = inf },
			wantErr: ErrNonFinite, wantStep: 1, wantPos: [2]int{0, 0},
		},
		{
			name: "wrong N", g: absorb5, pred: Analytic,
			after:   func(call int, sc *Scores) { sc.N-- },
			wantErr: ErrScoreShape, wantStep: 1,
		},
		{
			name: "short LSE", g: uniform4, pred: Euler,
			after:   func(call int, sc *Scores) { sc.LSE = sc.LSE[:len(sc.LSE)-1] },
			wantErr: ErrScoreShape, wantStep: 1,
		},
		{
			name: "score function error", g: uniform4, pred: Euler,
			before:  func(call int, _ []int64) error { return boom },
			wantErr: boom,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newIndependent(tc.g, 4, 1)
			f.after, f.before = tc.after, tc.before
			_, err := sample(context.Background(), f, Config{
				Graph: tc.g, Noise: logLin, Predictor: tc.pred, Steps: 6, Denoise: true, Batch: 2, Length: 4,
			})
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			var se *ScoreError
			if tc.wantStep == 0 {
				if errors.As(err, &se) {
					t.Errorf("unexpected ScoreError %v", se)
				}
				return
			}
			if !errors.As(err, &se) {
				t.Fatalf("err = %v is not a *ScoreError", err)
			}
			if se.Step != tc.wantStep || [2]int{se.Row, se.Position} != tc.wantPos {
				t.Errorf("ScoreError at step %d, row %d, position %d; want step %d, %v (%v)", se.Step, se.Row, se.Position, tc.wantStep, tc.wantPos, se)
			}
		})
	}
}

func nanIf(c bool, v float32) float32 {
	if c {
		return float32(math.NaN())
	}
	return v
}

func infIf(c bool, v float32) float32 {
	if c {
		return float32(math.Inf(1))
	}
	return v
}

func TestNewSamplerErrors(t *testing.T) {
	ok := Config{Graph: absorb5, Noise: logLin, Steps: 4, Batch: 1, Length: 8}
	tests := []struct {
		name   string
		change func(*Config)
	}{
		{"no graph", func(c *Config) { c.Graph = nil }},
		{"no noise", func(c *Config) { c.Noise = nil }},
		{"absorbing without tokens", func(c *Config) { c.Graph = Absorbing{} }},
		{"uniform with one token", func(c *Config) { c.Graph = Uniform{Tokens: 1} }},
		{"loglinear eps 0", func(c *Config) { c.Noise = LogLinear{} }},
		{"loglinear eps 1", func(c *Config) { c.Noise = LogLinear{Eps: 1} }},
		{"geometric reversed", func(c *Config) { c.Noise = Geometric{SigmaMin: 2, SigmaMax: 1} }},
		{"geometric zero", func(c *Config) { c.Noise = Geometric{SigmaMax: 1} }},
		{"predictor", func(c *Config) { c.Predictor = Predictor(9) }},
		{"zero steps", func(c *Config) { c.Steps = 0 }},
		{"steps past MaxSteps", func(c *Config) { c.Steps = MaxSteps + 1 }},
		{"steps at the int limit", func(c *Config) { c.Steps = math.MaxInt }},
		{"eps 1", func(c *Config) { c.EndTime = 1 }},
		{"eps negative", func(c *Config) { c.EndTime = -1e-5 }},
		{"eps NaN", func(c *Config) { c.EndTime = math.NaN() }},
		{"zero batch", func(c *Config) { c.Batch = 0 }},
		{"zero length", func(c *Config) { c.Length = 0 }},
		{"span past the end", func(c *Config) { c.Fixed = []Span{{Start: 6, Tokens: []int64{1, 2, 3}}} }},
		{"negative start", func(c *Config) { c.Fixed = []Span{{Start: -1, Tokens: []int64{1}}} }},
		{"fixed mask", func(c *Config) { c.Fixed = []Span{{Start: 0, Tokens: []int64{4}}} }},
		{"negative token", func(c *Config) { c.Fixed = []Span{{Start: 0, Tokens: []int64{-1}}} }},
		{"overlap", func(c *Config) { c.Fixed = []Span{{Start: 0, Tokens: []int64{1, 2}}, {Start: 1, Tokens: []int64{2}}} }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.change(&cfg)
			if _, err := NewSampler(cfg); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("NewSampler = %v, want ErrInvalidConfig", err)
			}
		})
	}
	if _, err := NewSampler(ok); err != nil {
		t.Errorf("valid config: %v", err)
	}
	s, _ := NewSampler(ok)
	if _, err := s.Run(context.Background(), nil); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("Run(nil score) = %v", err)
	}
}

// TestStepAllocs shows that a steady-state step, the denoiser included,
// allocates nothing.
func TestStepAllocs(t *testing.T) {
	for _, g := range []Graph{absorb5, uniform4} {
		for _, pred := range []Predictor{Analytic, Euler} {
			t.Run(fmt.Sprintf("%T/%v", g, pred), func(t *testing.T) {
				s, err := NewSampler(Config{Graph: g, Noise: logLin, Predictor: pred, Steps: 1000, Denoise: true, Batch: 2, Length: 64,
					Fixed: []Span{{Start: 3, Tokens: []int64{1, 2}}}, Progress: func(Step) error { return nil }})
				if err != nil {
					t.Fatal(err)
				}
				f := newIndependent(g, 64, 1)
				ctx := context.Background()
				s.start(true)
				k := 0
				if err := s.step(ctx, f, k); err != nil { // warm the fake's buffers
					t.Fatal(err)
				}
				if n := testing.AllocsPerRun(50, func() {
					k++
					if err := s.step(ctx, f, k); err != nil {
						t.Fatal(err)
					}
					if err := s.report(k+1, s.grid[k+1]); err != nil {
						t.Fatal(err)
					}
				}); n != 0 {
					t.Errorf("%v allocations per step", n)
				}
				if n := testing.AllocsPerRun(10, func() {
					if err := s.denoise(ctx, f); err != nil {
						t.Fatal(err)
					}
				}); n != 0 {
					t.Errorf("%v allocations per denoising step", n)
				}
			})
		}
	}
}

// TestRunAllocsIndependentOfSteps: a whole Run allocates only its result.
func TestRunAllocsIndependentOfSteps(t *testing.T) {
	allocs := func(steps int) float64 {
		s, err := NewSampler(Config{Graph: absorb5, Noise: logLin, Steps: steps, Denoise: true, Batch: 2, Length: 32})
		if err != nil {
			t.Fatal(err)
		}
		f := newIndependent(absorb5, 32, 1)
		if _, err := s.Run(context.Background(), f); err != nil {
			t.Fatal(err)
		}
		return testing.AllocsPerRun(5, func() {
			if _, err := s.Run(context.Background(), f); err != nil {
				t.Fatal(err)
			}
		})
	}
	if a, b := allocs(2), allocs(64); a != b || a > 1 {
		t.Errorf("Run allocates %v times with 2 steps and %v with 64; want the same, at most 1", a, b)
	}
}

func TestTimeGrid(t *testing.T) {
	for _, steps := range []int{1, 2, 7, 1024} {
		g := linspace(1, 1e-5, steps+1)
		if g[0] != 1 || g[steps] != 1e-5 {
			t.Errorf("steps %d: grid runs from %v to %v", steps, g[0], g[steps])
		}
		dt := (1 - 1e-5) / float64(steps)
		for k := 1; k <= steps; k++ {
			if d := g[k-1] - g[k]; math.Abs(d-dt) > 1e-14 {
				t.Errorf("steps %d: t_%d - t_%d = %v, want %v", steps, k-1, k, d, dt)
			}
		}
	}
}

func TestPredictorNames(t *testing.T) {
	for p, want := range map[Predictor]string{Analytic: "analytic", Euler: "euler", None: "none", 7: "Predictor(7)"} {
		if got := p.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(p), got, want)
		}
	}
}
