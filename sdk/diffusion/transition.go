package diffusion

import (
	"fmt"
	"math"
)

// transitionProbs writes to dst the exact distribution of the next state of one
// position after one step of predictor p from time t to t-dt, as the
// reference's EulerPredictor, AnalyticPredictor or NonePredictor would draw it:
// the unnormalised weights of sampling.py, negative weights counted as 0 (the
// reference's Gumbel-argmax draw never picks them), normalised to sum 1.
//
// x is the position's current state, logScore its N log scores for the current
// sequence at σ(t) (the entry at x is taken as 0, as the score network
// guarantees). dst must have length N = g.States(). This is the dense O(N)
// form of the maths; the Sampler draws the same distribution with fast paths.
// The errors wrap ErrInvalidConfig or ErrNonFinite.
func transitionProbs(dst []float64, g Graph, noise Noise, p Predictor, t, dt float64, x int64, logScore []float32) error {
	sp, err := checkDense(dst, g, noise, x, logScore)
	if err != nil {
		return err
	}
	switch p {
	case None:
		clear(dst)
		dst[x] = 1
		return nil
	case Euler:
		eulerWeights(dst, sp, dt*noise.Rate(t), x, logScore)
	case Analytic:
		tweedieWeights(dst, sp, noise.Total(t)-noise.Total(t-dt), x, logScore, false)
	default:
		return invalidf("unknown predictor %v", p)
	}
	return normalise(dst, sp, x)
}

// denoiseProbs writes to dst the exact distribution of the final denoising
// step (the reference's Denoiser at t = eps, dσ = σ(eps)) of one position in
// state x, with the same conventions as transitionProbs. For the absorbing
// graph the mask column is dropped, so dst[M] is 0 and every mask is removed.
func denoiseProbs(dst []float64, g Graph, noise Noise, eps float64, x int64, logScore []float32) error {
	sp, err := checkDense(dst, g, noise, x, logScore)
	if err != nil {
		return err
	}
	tweedieWeights(dst, sp, noise.Total(eps), x, logScore, true)
	return normalise(dst, sp, x)
}

func checkDense(dst []float64, g Graph, noise Noise, x int64, logScore []float32) (graphSpec, error) {
	if g == nil || noise == nil {
		return graphSpec{}, invalidf("nil graph or noise")
	}
	if err := g.Validate(); err != nil {
		return graphSpec{}, err
	}
	if err := noise.Validate(); err != nil {
		return graphSpec{}, err
	}
	sp := g.spec()
	if len(dst) != sp.n || len(logScore) != sp.n {
		return sp, invalidf("dst has %d and logScore %d entries, want N = %d", len(dst), len(logScore), sp.n)
	}
	if x < 0 || x >= int64(sp.n) {
		return sp, invalidf("state %d outside [0, %d)", x, sp.n)
	}
	for j, v := range logScore {
		if badLogScore(float64(v)) {
			return sp, fmt.Errorf("%w: log score %d = %v", ErrNonFinite, j, v)
		}
	}
	return sp, nil
}

// badLogScore reports NaN and +Inf; -Inf is a legitimate log of 0.
func badLogScore(v float64) bool { return v != v || v > math.MaxFloat64 }

// expScore returns exp(s_j), taking the entry at x as exp(0) = 1.
func expScore(logScore []float32, j int, x int64) float64 {
	if int64(j) == x {
		return 1
	}
	return math.Exp(float64(logScore[j]))
}

// eulerWeights writes one_hot(x) + scale·reverse_rate(x, score), scale = Δt·σ'(t).
func eulerWeights(dst []float64, sp graphSpec, scale float64, x int64, logScore []float32) {
	clear(dst)
	if sp.absorb && x != sp.mask {
		dst[x] = 1 // the transposed rate row of a token is -1 at x only: no move
		return
	}
	w := scale // absorb: rate 1 from M to every token
	if !sp.absorb {
		w = scale / float64(sp.n)
	}
	var out float64
	for j := range dst {
		if int64(j) == x {
			continue
		}
		dst[j] = w * expScore(logScore, j, x)
		out += dst[j]
	}
	dst[x] = 1 - out
}

// tweedieWeights writes staggered_score(score, d) · transp_transition(x, d), the
// weights of the analytic predictor (dσ = d) and of the denoiser (d = σ(eps),
// dropMask set).
//
// On the uniform graph the weight of j ≠ x is proportional to
// e^{d}·(e_j - Σe/N) + Σe/N: for large d it amplifies the rounding of float32
// scores by e^{d}, and all weights can come out ≤ 0 although exact arithmetic
// always leaves one positive. The position then keeps its token (normalise);
// the reference's argmax would pick an arbitrary state.
func tweedieWeights(dst []float64, sp graphSpec, d float64, x int64, logScore []float32, dropMask bool) {
	clear(dst)
	if sp.absorb {
		if x != sp.mask {
			dst[x] = 1 // e^{d}·score_x·e^{-d}; every other entry has transition 0
			return
		}
		ed := math.Exp(d)
		em := 1 - math.Exp(-d)
		total := 1.0 // score at x = M
		for j := range int(sp.mask) {
			e := math.Exp(float64(logScore[j]))
			total += e
			dst[j] = ed * e * em
		}
		if !dropMask {
			dst[sp.mask] = ed + (1-ed)*total
		}
		return
	}
	n := float64(sp.n)
	epow := math.Exp(-d)
	var total float64
	for j := range dst {
		dst[j] = expScore(logScore, j, x)
		total += dst[j]
	}
	shift := (epow - 1) / (n * epow) * total
	off := (1 - epow) / n
	for j := range dst {
		dst[j] = (shift + dst[j]/epow) * off
	}
	dst[x] = (shift + 1/epow) * (1 - (n-1)*off)
}

// normalise clamps negative weights to 0 and scales dst to sum 1. On the
// uniform graph, weights that are all ≤ 0 (see tweedieWeights) become one-hot
// on x.
func normalise(dst []float64, sp graphSpec, x int64) error {
	var sum float64
	for j, v := range dst {
		if v < 0 {
			dst[j] = 0
		} else {
			sum += v
		}
	}
	if sum == 0 && !sp.absorb {
		dst[x] = 1
		return nil
	}
	if !(sum > 0) || math.IsInf(sum, 1) {
		return fmt.Errorf("%w: transition weights sum to %v", ErrNonFinite, sum)
	}
	for j := range dst {
		dst[j] /= sum
	}
	return nil
}
