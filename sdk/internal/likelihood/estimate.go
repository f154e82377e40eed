package likelihood

import "math"

// z95 is the two-sided 95 % quantile of the standard normal distribution.
const z95 = 1.959963984540054

// Bound is the estimated likelihood bound of one sequence or of a corpus.
// StdErr fields are Monte-Carlo standard errors: they measure how far the
// estimate may be from the exact bound of this model on this text, not how
// the text was sampled (see the package documentation). With too few
// timesteps to estimate a spread (K = 1, or K = 2 antithetic) the standard
// errors are +Inf and the interval is [0, +Inf]; encoding/json refuses such
// values, so use K ≥ 2 (K ≥ 4 antithetic) when the result is marshalled.
type Bound struct {
	// Tokens is the number of tokens scored.
	Tokens int `json:"tokens"`
	// Timesteps is the number of (sequence, timestep) draws used, each one
	// network row: K for a sequence, K times the number of sequences for a
	// corpus.
	Timesteps int `json:"timesteps"`
	// Nats is the estimated bound on −log p(text) in nats, and NatsStdErr its
	// standard error.
	Nats       float64 `json:"nats"`
	NatsStdErr float64 `json:"nats_stderr"`
	// NatsPerToken is Nats/Tokens, and StdErr its standard error.
	NatsPerToken float64 `json:"nats_per_token"`
	StdErr       float64 `json:"stderr"`
	// Perplexity is the perplexity bound exp(NatsPerToken), and
	// [PerplexityLow, PerplexityHigh] = exp(NatsPerToken ∓ 1.96·StdErr) its
	// 95 % Monte-Carlo interval.
	Perplexity     float64 `json:"perplexity"`
	PerplexityLow  float64 `json:"perplexity_low"`
	PerplexityHigh float64 `json:"perplexity_high"`
}

// newBound fills the derived fields of a bound from its totals.
func newBound(tokens, timesteps int, nats, natsSE float64) Bound {
	b := Bound{Tokens: tokens, Timesteps: timesteps, Nats: nats, NatsStdErr: natsSE}
	b.NatsPerToken = nats / float64(tokens)
	b.StdErr = natsSE / float64(tokens)
	b.Perplexity = math.Exp(b.NatsPerToken)
	b.PerplexityLow = math.Exp(b.NatsPerToken - z95*b.StdErr)
	b.PerplexityHigh = math.Exp(b.NatsPerToken + z95*b.StdErr)
	return b
}

// Result is the outcome of Evaluate: the corpus bound (all sequences
// together: total nats over total tokens) and one Bound per input sequence,
// in input order.
type Result struct {
	Bound
	Sequences []Bound `json:"sequences"`
}

func (e *evaluator) result() *Result {
	res := &Result{Sequences: make([]Bound, len(e.seqs))}
	var nats, variance float64
	var tokens int
	for s, seq := range e.seqs {
		mean, se := meanStdErr(e.draws[s], e.cfg.Sampling)
		b := newBound(len(seq), len(e.draws[s]), e.width*mean, e.width*se)
		res.Sequences[s] = b
		nats += b.Nats
		variance += b.NatsStdErr * b.NatsStdErr
		tokens += b.Tokens
	}
	res.Bound = newBound(tokens, len(e.seqs)*e.cfg.Timesteps, nats, math.Sqrt(variance))
	return res
}

// meanStdErr returns the mean of the K draws y of one sequence and an
// estimate of its standard error.
//
// Antithetic: the K/2 pair means are independent and identically
// distributed, so the usual s/√(K/2) over pair means is unbiased (for the
// variance). K = 2 leaves one pair and no estimate: +Inf.
//
// Stratified: one draw per stratum leaves no within-stratum variance to
// measure, so strata are collapsed into adjacent groups of two (the last group
// has three when K is odd) and the variance of the mean is estimated as
//
//	V = (1/K²) Σ_g m_g/(m_g−1) Σ_{k∈g} (y_k − ȳ_g)².
//
// Its expectation is the true variance plus (1/K²) Σ_g m_g/(m_g−1) Σ_{k∈g}
// (μ_k − μ̄_g)², where μ_k is the mean of stratum k: conservative, and only
// slightly so when the integrand changes little between neighbouring strata.
// (The plain sample variance of the K draws would also be conservative, but
// by the whole spread of the integrand over t.) K = 1 gives +Inf.
func meanStdErr(y []float64, s Sampling) (mean, se float64) {
	K := len(y)
	for _, v := range y {
		mean += v
	}
	mean /= float64(K)
	if s == Antithetic {
		pairs := K / 2
		if pairs < 2 {
			return mean, math.Inf(1)
		}
		var ss float64
		for m := range pairs {
			d := (y[2*m]+y[2*m+1])/2 - mean
			ss += d * d
		}
		return mean, math.Sqrt(ss / float64(pairs-1) / float64(pairs))
	}
	if K < 2 {
		return mean, math.Inf(1)
	}
	var v float64
	for g := 0; g < K; {
		m := 2
		if K-g == 3 {
			m = 3
		}
		var gm float64
		for _, x := range y[g : g+m] {
			gm += x
		}
		gm /= float64(m)
		var ss float64
		for _, x := range y[g : g+m] {
			ss += (x - gm) * (x - gm)
		}
		v += float64(m) / float64(m-1) * ss
		g += m
	}
	return mean, math.Sqrt(v) / float64(K)
}
