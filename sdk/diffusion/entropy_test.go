package diffusion

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// trueConditional writes the log ratios p(x_i := j | x0) / p(xt | x0) of the
// forward process at sigma: the minimiser of the score entropy for a
// point-mass data distribution. It returns their log-sum-exp over j ≠ xt.
func trueConditional(row []float32, g Graph, x0, xt int64, sigma float64) float64 {
	sp := g.spec()
	p := make([]float64, sp.n)
	keep := math.Exp(-sigma)
	if sp.absorb {
		p[x0] = keep
		p[sp.mask] = -math.Expm1(-sigma)
	} else {
		for j := range p {
			p[j] = (1 - keep) / float64(sp.n)
		}
		p[x0] += keep
	}
	var s float64
	for j := range p {
		row[j] = float32(math.Log(p[j] / p[xt]))
		if int64(j) != xt {
			s += p[j] / p[xt]
		}
	}
	row[xt] = 0
	return math.Log(s)
}

// TestScoreEntropyZeroAtTrueScore: ℓ = 0 at the true score and > 0 elsewhere.
// The tolerance allows for the float32 rounding of the score.
func TestScoreEntropyZeroAtTrueScore(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, g := range []Graph{Absorbing{Tokens: 7}, Uniform{Tokens: 7}} {
		for _, sigma := range []float64{1e-4, 0.3, 0.7, 2.5, 9} {
			t.Run(fmt.Sprintf("%T/sigma%g", g, sigma), func(t *testing.T) {
				sp := g.spec()
				row := make([]float32, sp.n)
				for _, c := range []struct{ x0, xt int64 }{{2, 2}, {2, 5}, {0, 6}, {3, int64(sp.n - 1)}} {
					if sp.absorb && c.xt != c.x0 && c.xt != sp.mask {
						continue // unreachable: a token only ever becomes the mask
					}
					lse := trueConditional(row, g, c.x0, c.xt, sigma)
					got := g.ScoreEntropy(c.x0, c.xt, sigma, row, lse)
					var big float64
					for _, v := range row {
						if !math.IsInf(float64(v), -1) {
							big = max(big, math.Abs(float64(v)))
						}
					}
					tol := 1e-9 + 2e-7*big*(1+1/math.Expm1(sigma))
					if math.Abs(got) > tol {
						t.Errorf("x0 %d, xt %d: ℓ at the true score = %v, want 0 ± %v", c.x0, c.xt, got, tol)
					}
					for range 20 {
						noisy := slices.Clone(row)
						var s float64
						for j := range noisy {
							if int64(j) == c.xt {
								continue
							}
							if math.IsInf(float64(noisy[j]), -1) {
								noisy[j] = -3
							}
							noisy[j] += float32(0.5 * r.NormFloat64())
							s += math.Exp(float64(noisy[j]))
						}
						if got := g.ScoreEntropy(c.x0, c.xt, sigma, noisy, math.Log(s)); !(got > -tol) {
							t.Errorf("x0 %d, xt %d: ℓ = %v < 0 at a wrong score", c.x0, c.xt, got)
						}
					}
				}
			})
		}
	}
}

func TestSequenceScoreEntropy(t *testing.T) {
	g := Absorbing{Tokens: 3}
	x0 := []int64{0, 1, 2}
	xt := []int64{3, 1, 3}
	sc := Scores{Batch: 2, Length: 3, N: 4, LogScore: make([]float32, 24), LSE: make([]float32, 6)}
	for b := range 2 {
		for i := range 3 {
			sc.LSE[b*3+i] = float32(trueConditional(sc.Row(b, i), g, x0[i], xt[i], 0.5))
		}
	}
	per := make([]float64, 3)
	total, err := SequenceScoreEntropy(per, g, x0, xt, 0.5, sc, 1)
	if err != nil || math.Abs(total) > 1e-6 || per[1] != 0 {
		t.Errorf("true score: total %v, per position %v, err %v", total, per, err)
	}
	sc.Row(1, 2)[2] += 1 // a wrong score at a masked position costs
	sc.LSE[5] = sc.Row(1, 2)[2]
	if total, _ := SequenceScoreEntropy(nil, g, x0, xt, 0.5, sc, 1); !(total > 0.1) {
		t.Errorf("wrong score: total %v, want > 0", total)
	}

	nanRow := Scores{Batch: 1, Length: 3, N: 4, LogScore: slices.Clone(sc.LogScore[:12]), LSE: slices.Clone(sc.LSE[:3])}
	nanRow.LSE[2] = float32(math.NaN())
	tests := []struct {
		name    string
		dst     []float64
		g       Graph
		x0, xt  []int64
		sigma   float64
		sc      Scores
		row     int
		wantErr error
	}{
		{"nil graph", nil, nil, x0, xt, 0.5, sc, 0, ErrInvalidConfig},
		{"row out of range", nil, g, x0, xt, 0.5, sc, 2, ErrInvalidConfig},
		{"short x0", nil, g, x0[:2], xt, 0.5, sc, 0, ErrInvalidConfig},
		{"short dst", make([]float64, 2), g, x0, xt, 0.5, sc, 0, ErrInvalidConfig},
		{"clean mask", nil, g, []int64{3, 1, 2}, xt, 0.5, sc, 0, ErrInvalidConfig},
		{"corrupted token out of range", nil, g, x0, []int64{4, 1, 3}, 0.5, sc, 0, ErrInvalidConfig},
		{"zero sigma", nil, g, x0, xt, 0, sc, 0, ErrInvalidConfig},
		{"wrong N", nil, Absorbing{Tokens: 4}, x0, xt, 0.5, sc, 0, ErrScoreShape},
		{"NaN LSE", nil, g, x0, xt, 0.5, nanRow, 0, ErrNonFinite},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := SequenceScoreEntropy(tc.dst, tc.g, tc.x0, tc.xt, tc.sigma, tc.sc, tc.row); !errors.Is(err, tc.wantErr) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}

// TestCorrupt checks the forward process: the fraction of changed positions
// is 1 - e^{-σ} (absorbing) or (1 - e^{-σ})(N-1)/N (uniform) within 5 standard
// errors, and a stream seeded alike gives the same draw.
func TestCorrupt(t *testing.T) {
	const n = 50000
	x0 := make([]int64, n)
	for i := range x0 {
		x0[i] = int64(i % 5)
	}
	for _, g := range []Graph{Absorbing{Tokens: 5}, Uniform{Tokens: 5}} {
		for _, sigma := range []float64{0, 1e-3, 0.4, 3} {
			t.Run(fmt.Sprintf("%T/sigma%g", g, sigma), func(t *testing.T) {
				dst := make([]int64, n)
				if err := Corrupt(dst, g, rowRand(9, 0), x0, sigma); err != nil {
					t.Fatal(err)
				}
				p := -math.Expm1(-sigma)
				if _, ok := g.(Uniform); ok {
					p *= 4.0 / 5
				}
				changed := 0
				for i := range dst {
					if dst[i] != x0[i] {
						changed++
						if a, ok := g.(Absorbing); ok && dst[i] != a.Mask() {
							t.Fatalf("absorbing: %d became %d", x0[i], dst[i])
						}
					}
				}
				se := math.Sqrt(p * (1 - p) / n)
				if got := float64(changed) / n; math.Abs(got-p) > 5*se+1e-12 {
					t.Errorf("changed fraction %v, want %v ± %v", got, p, 5*se)
				}
				again := slices.Clone(x0) // in place, same stream
				if err := Corrupt(again, g, rowRand(9, 0), again, sigma); err != nil || !slices.Equal(again, dst) {
					t.Errorf("same seed, in place: different draw (err %v)", err)
				}
			})
		}
	}
	for name, err := range map[string]error{
		"nil graph":     Corrupt(make([]int64, 2), nil, rowRand(0, 0), x0[:2], 1),
		"nil rand":      Corrupt(make([]int64, 2), Uniform{Tokens: 5}, nil, x0[:2], 1),
		"short dst":     Corrupt(make([]int64, 1), Uniform{Tokens: 5}, rowRand(0, 0), x0[:2], 1),
		"NaN sigma":     Corrupt(make([]int64, 2), Uniform{Tokens: 5}, rowRand(0, 0), x0[:2], math.NaN()),
		"graph invalid": Corrupt(make([]int64, 2), Uniform{}, rowRand(0, 0), x0[:2], 1),
	} {
		if !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: err = %v", name, err)
		}
	}
}

func TestTransitionProbsErrors(t *testing.T) {
	g := Absorbing{Tokens: 3}
	row := []float32{0.1, -1, 2, 0}
	tests := []struct {
		name    string
		dst     []float64
		g       Graph
		noise   Noise
		p       Predictor
		x       int64
		row     []float32
		wantErr error
	}{
		{"nil graph", make([]float64, 4), nil, logLin, Euler, 3, row, ErrInvalidConfig},
		{"nil noise", make([]float64, 4), g, nil, Euler, 3, row, ErrInvalidConfig},
		{"bad noise", make([]float64, 4), g, LogLinear{}, Euler, 3, row, ErrInvalidConfig},
		{"short dst", make([]float64, 3), g, logLin, Euler, 3, row, ErrInvalidConfig},
		{"state out of range", make([]float64, 4), g, logLin, Euler, 4, row, ErrInvalidConfig},
		{"predictor", make([]float64, 4), g, logLin, Predictor(7), 3, row, ErrInvalidConfig},
		{"NaN", make([]float64, 4), g, logLin, Analytic, 3, []float32{0, float32(math.NaN()), 0, 0}, ErrNonFinite},
		{"+Inf", make([]float64, 4), g, logLin, Euler, 3, []float32{0, float32(math.Inf(1)), 0, 0}, ErrNonFinite},
		{"-Inf is fine", make([]float64, 4), g, logLin, Euler, 3, []float32{0, float32(math.Inf(-1)), 0, 0}, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := transitionProbs(tc.dst, tc.g, tc.noise, tc.p, 0.5, 0.1, tc.x, tc.row)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil && err != nil) {
				t.Errorf("err = %v, want %v", err, tc.wantErr)
			}
		})
	}
}
