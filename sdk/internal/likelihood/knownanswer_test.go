package likelihood

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/sedd-go/sedd/sdk/diffusion"
)

// TestKnownAnswerAbsorb checks the estimator against the exact answer on a
// distribution with independent positions. With the exact scores every
// masked position contributes ℓ_i = -r·log p_i(x0_i), r = 1/(e^σ - 1), and it
// is masked with probability 1 - e^{-σ}, so the integrand's expectation is
// σ'(t)·e^{-σ(t)}·NLL and
//
//	E[estimate] = (e^{-σ(eps_l)} - e^{-σ(1)})·NLL = NLL - truncation - prior,
//
// truncation = (1 - e^{-σ(eps_l)})·NLL, prior = e^{-σ(1)}·NLL. The test
// checks the estimate against that value within its own standard errors
// (three for the corpus, 3.5 for each sequence: the integrand is skewed, so
// its tails are a little heavier than normal), and that a wrong score is
// caught.
func TestKnownAnswerAbsorb(t *testing.T) {
	tests := []struct {
		name  string
		noise diffusion.Noise
		eps   float64
	}{
		{"loglinear eps_l=1e-3", diffusion.LogLinear{Eps: 1e-3}, 1e-3},
		{"loglinear eps_l=0.05", diffusion.LogLinear{Eps: 1e-3}, 0.05},
		{"geometric", diffusion.Geometric{SigmaMin: 1e-3, SigmaMax: 8}, 1e-3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			const tokens, length, K = 6, 256, 400
			g := diffusion.Absorbing{Tokens: tokens}
			m := newIndependent(g, length, tokens, 3)
			r := rand.New(rand.NewPCG(1, 2))
			seqs := [][]int64{m.sample(r), m.sample(r), m.sample(r)}
			res, err := Evaluate(context.Background(), m, seqs, Config{Graph: g, Noise: tc.noise, Timesteps: K, MinTime: tc.eps, Seed: 9, BatchSize: 16})
			if err != nil {
				t.Fatal(err)
			}
			keepLow := math.Exp(-tc.noise.Total(tc.eps)) // e^{-σ(eps_l)}
			keepHigh := math.Exp(-tc.noise.Total(1))     // e^{-σ(1)}
			var nllTotal, wantTotal float64
			for s, seq := range seqs {
				nll := m.nll(seq)
				truncation := (1 - keepLow) * nll
				prior := keepHigh * nll
				want := nll - truncation - prior
				got := res.Sequences[s]
				t.Logf("sequence %d: NLL %.4f, estimate %.4f ± %.4f, want %.4f (truncation %.4f, prior %.4f)", s, nll, got.Nats, got.NatsStdErr, want, truncation, prior)
				if d := math.Abs(got.Nats - want); d > 3.5*got.NatsStdErr {
					t.Errorf("sequence %d: estimate %v, want %v: off by %.2f standard errors", s, got.Nats, want, d/got.NatsStdErr)
				}
				if got.NatsStdErr > 0.02*nll {
					t.Errorf("sequence %d: standard error %v too large for the test to mean anything (NLL %v)", s, got.NatsStdErr, nll)
				}
				nllTotal += nll
				wantTotal += want
			}
			if d := math.Abs(res.Nats - wantTotal); d > 3*res.NatsStdErr {
				t.Errorf("corpus: estimate %v ± %v, want %v (NLL %v): off by %.2f standard errors", res.Nats, res.NatsStdErr, wantTotal, nllTotal, d/res.NatsStdErr)
			}
			// The estimate is a bound only up to what is left out: it must not
			// exceed the NLL by more than its error.
			if res.Nats > nllTotal+3*res.NatsStdErr {
				t.Errorf("corpus: estimate %v above the true NLL %v", res.Nats, nllTotal)
			}

			// Negative control: scores off by a constant make the bound looser,
			// by far more than the standard error.
			m.shift = 1
			bad, err := Evaluate(context.Background(), m, seqs, Config{Graph: g, Noise: tc.noise, Timesteps: K, MinTime: tc.eps, Seed: 9})
			m.shift = 0
			if err != nil {
				t.Fatal(err)
			}
			if bad.Nats < wantTotal+5*bad.NatsStdErr {
				t.Errorf("wrong scores: estimate %v ± %v not clearly above %v", bad.Nats, bad.NatsStdErr, wantTotal)
			}
		})
	}
}

// TestKnownAnswerUniform checks the uniform graph on the same kind of
// distribution: the estimate matches the exact expectation
// ∫_{eps_l}^1 σ'(t)·f(σ(t)) dt (f enumerates each position's corrupted state)
// within its standard error; the exact identity
// NLL = ∫_0^{σ(eps_l)} f dσ + that integral + prior KL holds; and every
// per-position score entropy is ≥ 0.
func TestKnownAnswerUniform(t *testing.T) {
	const tokens, length, K = 5, 128, 400
	g := diffusion.Uniform{Tokens: tokens}
	noise := diffusion.Geometric{SigmaMin: 1e-3, SigmaMax: 6}
	m := newIndependent(g, length, tokens, 5)
	r := rand.New(rand.NewPCG(3, 4))
	seqs := [][]int64{m.sample(r), m.sample(r)}
	res, err := Evaluate(context.Background(), m, seqs, Config{Graph: g, Noise: noise, Timesteps: K, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	for s, seq := range seqs {
		nll := m.nll(seq)
		f := func(sigma float64) float64 { return m.expectedEntropy(seq, sigma) }
		want := gaussLegendre(func(tt float64) float64 { return noise.Rate(tt) * f(noise.Total(tt)) }, DefaultMinTime, 1, 100)
		// The σ-integral below σ(eps_l), with log-spaced panels near 0.
		sLow := noise.Total(DefaultMinTime)
		truncation := gaussLegendre(func(u float64) float64 { v := math.Exp(u); return v * f(v) }, math.Log(sLow)-40, math.Log(sLow), 100)
		prior := m.priorKL(seq, noise.Total(1))
		got := res.Sequences[s]
		t.Logf("sequence %d: NLL %.5f, estimate %.4f ± %.4f, exact %.5f, truncation %.5f, prior %.5f", s, nll, got.Nats, got.NatsStdErr, want, truncation, prior)
		if d := math.Abs(truncation + want + prior - nll); d > 1e-6*nll {
			t.Errorf("sequence %d: truncation + integral + prior = %v, NLL %v", s, truncation+want+prior, nll)
		}
		if d := math.Abs(got.Nats - want); d > 3*got.NatsStdErr {
			t.Errorf("sequence %d: estimate %v, exact %v: off by %.2f standard errors", s, got.Nats, want, d/got.NatsStdErr)
		}
		if got.NatsStdErr > 0.02*nll {
			t.Errorf("sequence %d: standard error %v too large (NLL %v)", s, got.NatsStdErr, nll)
		}
		if got.Nats < nll-truncation-prior-3*got.NatsStdErr {
			t.Errorf("sequence %d: estimate %v below NLL - truncation - prior = %v", s, got.Nats, nll-truncation-prior)
		}
	}

	// Score entropy is ≥ 0 at every position, for exact and wrong scores.
	for _, shift := range []float64{0, 0.7, -0.7} {
		m.shift = shift
		for _, sigma := range []float64{1e-3, 0.1, 1, 5} {
			x0 := seqs[0]
			xt := make([]int64, length)
			if err := diffusion.Corrupt(xt, g, rand.New(rand.NewPCG(uint64(sigma*1e3), 1)), x0, sigma); err != nil {
				t.Fatal(err)
			}
			sc, _ := m.Score(context.Background(), xt, []float32{float32(sigma)}, 1, length)
			ent := make([]float64, length)
			if _, err := diffusion.SequenceScoreEntropy(ent, g, x0, xt, float64(float32(sigma)), sc, 0); err != nil {
				t.Fatal(err)
			}
			for i, v := range ent {
				if v < -1e-9 {
					t.Errorf("shift %v, sigma %v, position %d: score entropy %v < 0", shift, sigma, i, v)
				}
			}
		}
	}
	m.shift = 0
}
