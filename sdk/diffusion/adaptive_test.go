package diffusion

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"testing"
)

// adaptiveLaw returns the law of the output of the Confidence (knob: the
// threshold) or EntropyBounded (knob: the budget) sampler on the joint model
// with the given fixed spans, by following every branch of its choices in
// float64: at each state the positions the rule takes are drawn
// independently from their exact conditionals. margin is the closest any
// confidence (or partial entropy sum) came to the knob, which must be far
// above the float32 rounding of the sampler's own scores for the law to be
// the sampler's.
func adaptiveLaw(f *joint, pred Predictor, knob float64, fixed []Span) (law []float64, margin float64) {
	law = make([]float64, len(f.p0))
	margin = math.Inf(1)
	mask := int64(f.tokens)
	x := make([]int64, f.length)
	for i := range x {
		x[i] = mask
	}
	for _, sp := range fixed {
		copy(x[sp.Start:], sp.Tokens)
	}
	var walk func(x []int64, p float64)
	walk = func(x []int64, p float64) {
		var masked []int
		for i, tok := range x {
			if tok == mask {
				masked = append(masked, i)
			}
		}
		if len(masked) == 0 {
			law[f.seqIndex(x)] += p
			return
		}
		base := f.marg[f.code(x)]
		q := make([][]float64, len(masked)) // q[m][j]: P(x_i = j | unmasked)
		vals := make([]float64, len(masked))
		y := slices.Clone(x)
		for m, i := range masked {
			q[m] = make([]float64, f.tokens)
			var h float64
			for j := range q[m] {
				y[i] = int64(j)
				q[m][j] = f.marg[f.code(y)] / base
				h -= q[m][j] * math.Log(q[m][j])
			}
			y[i] = mask
			if pred == Confidence {
				vals[m] = slices.Max(q[m])
				margin = min(margin, math.Abs(vals[m]-knob))
			} else {
				vals[m] = h
			}
		}
		var take []int // indices into masked
		order := make([]int, len(masked))
		for m := range order {
			order[m] = m
		}
		if pred == Confidence {
			sort.SliceStable(order, func(a, b int) bool { return vals[order[a]] > vals[order[b]] })
		} else {
			sort.SliceStable(order, func(a, b int) bool { return vals[order[a]] < vals[order[b]] })
		}
		near := make([]bool, len(x))
		sum := 0.0
		for n, m := range order {
			if n > 0 && (pred == Confidence && vals[m] < knob || pred == EntropyBounded && sum > knob) {
				break
			}
			i := masked[m]
			if i > 0 && near[i-1] || i+1 < len(x) && near[i+1] {
				continue
			}
			near[i] = true
			take = append(take, m)
			sum += vals[m]
			if pred == EntropyBounded {
				margin = min(margin, math.Abs(sum-knob))
			}
		}
		// every assignment of the taken positions, drawn independently
		for a := range ipow(f.tokens, len(take)) {
			z := slices.Clone(x)
			pa := p
			for _, m := range take {
				j := a % f.tokens
				a /= f.tokens
				z[masked[m]] = int64(j)
				pa *= q[m][j]
			}
			walk(z, pa)
		}
	}
	walk(x, 1)
	return law, margin
}

// sharpenJoint raises the joint model's law to a power (renormalized), so
// that its conditionals come nearer to certainty and the adaptive samplers'
// knobs have room to act.
func sharpenJoint(f *joint, power float64) {
	var sum float64
	for k, p := range f.p0 {
		f.p0[k] = math.Pow(p, power)
		sum += f.p0[k]
	}
	for k := range f.p0 {
		f.p0[k] /= sum
	}
	for k := range f.marg {
		f.marg[k] = f.partial(k)
	}
}

// totalVariation returns ½ Σ |p - q|.
func totalVariation(p, q []float64) float64 {
	var d float64
	for k := range p {
		d += math.Abs(p[k] - q[k])
	}
	return d / 2
}

// klDivergence returns Σ p log(p / q).
func klDivergence(p, q []float64) float64 {
	var d float64
	for k := range p {
		if p[k] > 0 {
			d += p[k] * math.Log(p[k]/q[k])
		}
	}
	return d
}

// TestAdaptiveLaw: on the closed-form model whose positions depend on each
// other (4 positions, 3 tokens, the law squared to sharpen it), the
// confidence and entropy-bounded samplers are not the reverse process. For
// each setting the samples follow the law computed by following the
// sampler's choices exactly (χ² at level 1e-6), and that law's distance
// from the data law is (total variation; KL(data ‖ sampler) in nats):
//
//	threshold  0.3           0.5           0.6            0.7  0.9  1
//	TV, KL     0.391, 0.462  0.105, 0.103  0.001, 0.0008  0    0    0
//	budget     10            1             0.5            0
//	TV, KL     0.391, 0.462  0.374, 0.427  0.011, 0.008   0
//
// (threshold 0.3 and budget 10 take every position they may: two per call,
// never neighbours.) It shrinks to 0 as the knob tightens (asserted:
// non-increasing, 0 at the tight end, within the bounds of runAdaptive's
// comment). At threshold 1 and budget 0, one position per call chosen by
// confidence or entropy, the law is the data law: an order decided by the
// tokens already unmasked biases nothing when the scores are exact. (It is
// 0 to four decimals from 0.7 on here: no two non-neighbouring conditionals of
// this model are that confident at once.) The χ² against the data law
// passes at the tight end and fails (power) at the loosest knob.
func TestAdaptiveLaw(t *testing.T) {
	const tokens, length, batch = 3, 4, 20000
	f := newJoint(tokens, length, 11)
	sharpenJoint(f, 2)
	prefix := []Span{{Start: 0, Tokens: []int64{2}}}
	type setting struct {
		pred  Predictor
		knob  float64
		fixed []Span
	}
	curves := [][]setting{
		{{Confidence, 0.3, nil}, {Confidence, 0.5, nil}, {Confidence, 0.6, nil}, {Confidence, 0.7, nil}, {Confidence, 0.9, nil}, {Confidence, 1, nil}},
		{{EntropyBounded, 10, nil}, {EntropyBounded, 1, nil}, {EntropyBounded, 0.5, nil}, {EntropyBounded, 0, nil}},
		{{Confidence, 0.5, prefix}, {Confidence, 1, prefix}},
		{{EntropyBounded, 1, prefix}, {EntropyBounded, 0, prefix}},
	}
	for _, curve := range curves {
		prevTV := math.Inf(1)
		for k, st := range curve {
			name := fmt.Sprintf("%v %g", st.pred, st.knob)
			if st.fixed != nil {
				name += " with a prefix"
			}
			t.Run(name, func(t *testing.T) {
				want := f.conditional(st.fixed)
				law, margin := adaptiveLaw(f, st.pred, st.knob, st.fixed)
				if margin < 1e-4 {
					t.Fatalf("a confidence or entropy sum lies %g from the knob: float32 rounding may decide; choose another knob", margin)
				}
				cfg := Config{Graph: Absorbing{Tokens: tokens}, Noise: logLin, Predictor: st.pred, Batch: batch, Length: length, Seed: 5, Fixed: st.fixed}
				if st.pred == Confidence {
					cfg.Threshold = st.knob
				} else {
					cfg.EntropyBudget = st.knob
				}
				counts := jointLaw(t, f, cfg)
				stat, df := chiSquare(counts, law, batch)
				if crit := chiSquareCritical(df); stat > crit {
					t.Errorf("samples against the sampler's law: χ² = %.1f > %.1f (df %d)", stat, crit, df)
				}
				tv, kl := totalVariation(want, law), klDivergence(want, law)
				statData, dfData := chiSquare(counts, want, batch)
				critData := chiSquareCritical(dfData)
				t.Logf("TV from the data law %.4f, KL(data ‖ sampler) %.4f nats; χ² of the samples against the data law %.1f (critical %.1f, df %d)",
					tv, kl, statData, critData, dfData)
				last := k == len(curve)-1
				switch {
				case last && tv > 1e-9:
					t.Errorf("one position per call: TV from the data law %g, want 0", tv)
				case last && statData > critData:
					t.Errorf("one position per call: χ² against the data law %.1f > %.1f", statData, critData)
				case k == 0 && st.fixed == nil && statData < 4*critData:
					t.Errorf("loosest knob: χ² against the data law %.1f, want far above %.1f: the test cannot tell a wrong law", statData, critData)
				case tv > prevTV+1e-12:
					t.Errorf("TV %.4f grew from %.4f as the knob tightened", tv, prevTV)
				}
				free := length - spanTokens(st.fixed)
				if st.pred == Confidence && tv > float64(free)*(1-st.knob)+1e-12 {
					t.Errorf("TV %.4f above the bound free·(1 - threshold) = %.4f", tv, float64(free)*(1-st.knob))
				}
				if st.pred == EntropyBounded && kl > float64(free-1)*st.knob+1e-12 {
					t.Errorf("KL %.4f above the bound (calls with several positions)·budget ≤ %.4f", kl, float64(free-1)*st.knob)
				}
				prevTV = tv
			})
		}
	}
}

// TestAdaptiveCalls: each call evaluates only the rows that still hold a mask,
// at σ = -log(1 - masked/free) within [σ(EndTime), σ(1)]; the threshold 1
// and the budget 0 take one position per call (the independent model has no
// certain position); a loose knob takes several; the progress callback's
// Steps is an upper bound that ends equal to Index, T falls to 0; fixed
// tokens stay.
func TestAdaptiveCalls(t *testing.T) {
	const length, batch = 8, 4
	fixed := []Span{{Start: 2, Tokens: []int64{1, 2}}}
	free := length - spanTokens(fixed)
	for _, tc := range []struct {
		pred     Predictor
		knob     float64
		oneByOne bool
	}{{Confidence, 1, true}, {Confidence, 0.2, false}, {EntropyBounded, 0, true}, {EntropyBounded, 3, false}} {
		t.Run(fmt.Sprintf("%v %g", tc.pred, tc.knob), func(t *testing.T) {
			ind := newIndependent(absorb5, length, 4)
			var xs [][]int64
			var sigmas [][]float32
			ind.before = func(_ int, x []int64) error { xs = append(xs, slices.Clone(x)); return nil }
			rec := &recorder{ScoreFunc: ind}
			var seen []Step
			cfg := Config{Graph: absorb5, Noise: logLin, Predictor: tc.pred, Batch: batch, Length: length, Seed: 5, Fixed: fixed,
				Progress: func(s Step) error { seen = append(seen, s); return nil }}
			if tc.pred == Confidence {
				cfg.Threshold = tc.knob
			} else {
				cfg.EntropyBudget = tc.knob
			}
			out, err := sample(context.Background(), rec, cfg)
			if err != nil {
				t.Fatal(err)
			}
			sigmas = rec.sigmas
			mask := absorb5.Mask()
			if slices.Contains(out, mask) {
				t.Fatalf("masks left: %v", out)
			}
			for b := range batch {
				if got := out[b*length+2 : b*length+4]; !slices.Equal(got, fixed[0].Tokens) {
					t.Errorf("row %d: fixed tokens %v", b, got)
				}
			}
			top, floor := logLin.Total(1), logLin.Total(DefaultEndTime)
			for c, x := range xs {
				rows := len(x) / length
				if c == 0 && rows != batch {
					t.Fatalf("first call: %d rows, want %d", rows, batch)
				}
				for k := range rows {
					m := 0
					for _, tok := range x[k*length : (k+1)*length] {
						m += btoi(tok == mask)
					}
					if m == 0 {
						t.Errorf("call %d evaluates a row with no mask", c+1)
					}
					want := float32(min(max(-math.Log1p(-float64(m)/float64(free)), floor), top))
					if sigmas[c][k] != want {
						t.Errorf("call %d row %d: σ = %v with %d of %d masked, want %v", c+1, k, sigmas[c][k], m, free, want)
					}
				}
			}
			if tc.oneByOne && len(xs) != free {
				t.Errorf("%d calls, want %d (one position each)", len(xs), free)
			}
			if !tc.oneByOne && len(xs) >= free {
				t.Errorf("%d calls with a loose knob, want fewer than %d", len(xs), free)
			}
			if len(seen) != len(xs) {
				t.Fatalf("%d progress steps for %d calls", len(seen), len(xs))
			}
			for k, s := range seen {
				if s.Index != k+1 || s.Steps < s.Index || (k > 0 && (s.Steps > seen[k-1].Steps || s.T > seen[k-1].T)) {
					t.Errorf("progress %d: index %d of %d, T %v", k, s.Index, s.Steps, s.T)
				}
			}
			if last := seen[len(seen)-1]; last.Steps != last.Index || last.T != 0 {
				t.Errorf("last progress: index %d of %d, T %v; want Index = Steps and T 0", last.Index, last.Steps, last.T)
			}
		})
	}
}

// TestAdaptiveReproducible: the same seed gives the same tokens, also from a
// reused Sampler; another seed others; a row does not depend on the batch
// (rows finish after different numbers of calls); Steps and Denoise do not
// matter.
func TestAdaptiveReproducible(t *testing.T) {
	for _, pred := range []Predictor{Confidence, EntropyBounded} {
		t.Run(pred.String(), func(t *testing.T) {
			cfg := Config{Graph: absorb5, Noise: logLin, Predictor: pred, Batch: 8, Length: 16, Seed: 99, Temperature: 0.9, TopK: 3}
			if pred == Confidence {
				cfg.Threshold = 0.3
			} else {
				cfg.EntropyBudget = 2
			}
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
			cfg.Steps, cfg.Denoise = 7, true
			if e := run(cfg); !slices.Equal(e, a[:2*cfg.Length]) {
				t.Errorf("Steps or Denoise change the tokens")
			}
		})
	}
}

// TestAdaptivePinned pins a few tokens so that any change of the random
// streams, their order of use, the choice of positions or the maths shows up;
// update it only on purpose.
func TestAdaptivePinned(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want []int64
	}{
		{Config{Predictor: Confidence, Threshold: 0.3}, []int64{3, 2, 0, 2, 2, 2, 2, 0, 0, 1, 2, 2}},
		{Config{Predictor: EntropyBounded, EntropyBudget: 1.5}, []int64{2, 3, 2, 2, 0, 2, 2, 2, 2, 1, 0, 0}},
	} {
		cfg := tc.cfg
		cfg.Graph, cfg.Noise, cfg.Batch, cfg.Length, cfg.Seed = absorb5, logLin, 2, 6, 7
		out, err := sample(context.Background(), newIndependent(absorb5, 6, 1), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(out, tc.want) {
			t.Errorf("%v: tokens = %#v, want %#v", cfg.Predictor, out, tc.want)
		}
	}
}

func TestAdaptiveErrors(t *testing.T) {
	ok := Config{Graph: absorb5, Noise: logLin, Predictor: Confidence, Threshold: 0.9, Batch: 1, Length: 4}
	for _, tc := range []struct {
		name string
		edit func(*Config)
	}{
		{"threshold 0", func(c *Config) { c.Threshold = 0 }},
		{"threshold above 1", func(c *Config) { c.Threshold = 1.5 }},
		{"threshold NaN", func(c *Config) { c.Threshold = math.NaN() }},
		{"threshold with analytic", func(c *Config) { c.Predictor, c.Steps = Analytic, 4 }},
		{"budget with confidence", func(c *Config) { c.EntropyBudget = 1 }},
		{"negative budget", func(c *Config) { c.Predictor, c.Threshold, c.EntropyBudget = EntropyBounded, 0, -1 }},
		{"infinite budget", func(c *Config) { c.Predictor, c.Threshold, c.EntropyBudget = EntropyBounded, 0, math.Inf(1) }},
		{"uniform graph", func(c *Config) { c.Graph, c.Noise = uniform4, geo }},
	} {
		cfg := ok
		tc.edit(&cfg)
		if _, err := NewSampler(cfg); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", tc.name, err)
		}
	}
	for _, pred := range []Predictor{Confidence, EntropyBounded} {
		cfg := ok
		cfg.Predictor, cfg.Threshold, cfg.Batch = pred, 0, 2
		if pred == Confidence {
			cfg.Threshold = 1
		}
		f := newIndependent(absorb5, 4, 1)
		f.after = func(call int, sc *Scores) {
			if call == 2 {
				sc.LogScore[3] = float32(math.NaN())
				sc.LSE[0] = float32(math.NaN())
			}
		}
		_, err := sample(context.Background(), f, cfg)
		var se *ScoreError
		if !errors.As(err, &se) || !errors.Is(err, ErrNonFinite) || se.Step != 2 {
			t.Errorf("%v: NaN score at call 2: err = %v", pred, err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		g := newIndependent(absorb5, 4, 1)
		g.before = func(call int, _ []int64) error {
			if call == 2 {
				cancel()
			}
			return nil
		}
		if _, err := sample(ctx, g, cfg); !errors.Is(err, context.Canceled) || g.calls != 2 {
			t.Errorf("%v: err = %v after %d calls, want context.Canceled after 2", pred, err, g.calls)
		}
	}
}

func TestAdaptiveAllocs(t *testing.T) {
	assertRunAllocs(t, Config{Graph: absorb5, Noise: logLin, Predictor: Confidence, Threshold: 0.5, Batch: 3, Length: 32,
		Progress: func(Step) error { return nil }}, 32)
	assertRunAllocs(t, Config{Graph: absorb5, Noise: logLin, Predictor: EntropyBounded, EntropyBudget: 1, Batch: 3, Length: 32,
		Progress: func(Step) error { return nil }}, 32)
}

// TestEntropyAndConfidence checks the two per-position measures against
// direct sums.
func TestEntropyAndConfidence(t *testing.T) {
	row := []float32{-1, 0.5, 2, float32(math.Inf(-1)), -3}
	var z float64
	for _, v := range row {
		z += math.Exp(float64(v))
	}
	var h float64
	for _, v := range row {
		if q := math.Exp(float64(v)) / z; q > 0 {
			h -= q * math.Log(q)
		}
	}
	got, _, ok := entropy(row)
	if !ok || math.Abs(got-h) > 1e-12 {
		t.Errorf("entropy = %v, want %v", got, h)
	}
	c, _, ok := confidence(row, math.Log(z))
	if want := math.Exp(2) / z; !ok || math.Abs(c-want) > 1e-12 {
		t.Errorf("confidence = %v, want %v", c, want)
	}
	if _, _, ok := entropy([]float32{1, float32(math.NaN())}); ok {
		t.Errorf("entropy of a row with NaN: ok")
	}
	if _, _, ok := confidence([]float32{1, 2}, math.Inf(1)); ok {
		t.Errorf("confidence with an infinite log-sum-exp: ok")
	}
}
