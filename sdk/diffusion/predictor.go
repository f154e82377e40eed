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
)

// String returns the reference's name of p: "analytic", "euler" or "none".
func (p Predictor) String() string {
	switch p {
	case Analytic:
		return "analytic"
	case Euler:
		return "euler"
	case None:
		return "none"
	}
	return fmt.Sprintf("Predictor(%d)", int(p))
}

func (p Predictor) valid() bool { return p == Analytic || p == Euler || p == None }
