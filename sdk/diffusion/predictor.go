package diffusion

import "fmt"

// Predictor is the update rule of one reverse-diffusion step.
type Predictor int

const (
	// Analytic is the reference's "analytic" predictor (Tweedie τ-leaping): the
	// staggered score times the transposed transition over dσ = σ(t) - σ(t-Δt).
	// It is the zero value.
	Analytic Predictor = iota
	// Euler is the reference's "euler" predictor: jump i → j with probability
	// Δt·σ'(t)·Q(j, i)·score_j.
	Euler
	// None leaves the tokens unchanged and evaluates no score; only useful with
	// the denoiser.
	None
	// FirstHitting is the first-hitting sampler of the absorbing graph (Zheng
	// et al., arXiv 2409.02908): instead of stepping down a time grid it draws
	// the time at which the next masked position unmasks, picks that position
	// uniformly among the masked ones and draws its token, so it samples the
	// reverse process without discretization error in one network evaluation
	// per masked position. It ignores Config.Steps and Config.Denoise (no mask
	// is left at the end).
	FirstHitting
	// Confidence is an adaptive sampler of the absorbing graph that is not
	// the reverse process: at each network evaluation every masked position
	// whose most likely token has probability at least Config.Threshold
	// unmasks, and at least one does (the most confident). See runAdaptive.
	Confidence
	// EntropyBounded is the adaptive sampler that unmasks masked positions in
	// order of increasing entropy of their token distribution while the
	// entropy already taken stays within Config.EntropyBudget (nats), at
	// least one per evaluation. See runAdaptive.
	EntropyBounded
)

// String returns the name of p: the reference's "analytic", "euler" or
// "none", "first-hitting", "confidence" or "entropy-bounded".
func (p Predictor) String() string {
	switch p {
	case Analytic:
		return "analytic"
	case Euler:
		return "euler"
	case None:
		return "none"
	case FirstHitting:
		return "first-hitting"
	case Confidence:
		return "confidence"
	case EntropyBounded:
		return "entropy-bounded"
	}
	return fmt.Sprintf("Predictor(%d)", int(p))
}

func (p Predictor) valid() bool { return p >= Analytic && p <= EntropyBounded }

// adaptive reports whether p unmasks a number of positions per evaluation
// that depends on the scores (Confidence, EntropyBounded).
func (p Predictor) adaptive() bool { return p == Confidence || p == EntropyBounded }
