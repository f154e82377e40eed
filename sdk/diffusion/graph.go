package diffusion

import "math"

// Graph is the state space of one position and its forward rate matrix. The
// two graphs of SEDD are Absorbing and Uniform; no other type can implement
// Graph. Graphs are plain values, safe for concurrent use.
type Graph interface {
	// States returns N, the number of states of one position (the last
	// dimension of Scores).
	States() int
	// Validate reports whether the graph's parameters are usable.
	Validate() error
	// ScoreEntropy returns the score entropy ℓ of one position, with the
	// reference's constants (ℓ ≥ 0, and 0 at the true score): x0 is the clean
	// token, xt the corrupted one at total noise sigma, logScore the N log
	// scores of that position for the corrupted sequence, and lse their
	// log-sum-exp over j ≠ xt (Scores.LSE). It panics if x0 or xt is not in
	// [0, N) or len(logScore) < N; SequenceScoreEntropy checks its arguments.
	ScoreEntropy(x0, xt int64, sigma float64, logScore []float32, lse float64) float64

	spec() graphSpec
}

// graphSpec is what the sampler needs to know about a Graph.
type graphSpec struct {
	absorb bool
	n      int   // states
	mask   int64 // absorb only: N-1
}

// Absorbing is the absorbing ("masked") graph: Tokens ordinary tokens and one
// mask state M = Tokens, so N = Tokens+1. Every token jumps to M at rate 1; M
// never leaves. Sampling starts from all masks, and a token, once unmasked,
// never changes.
type Absorbing struct {
	Tokens int
}

// States returns Tokens + 1.
func (g Absorbing) States() int { return g.Tokens + 1 }

// Mask returns the mask state M = Tokens.
func (g Absorbing) Mask() int64 { return int64(g.Tokens) }

// Validate reports an error unless Tokens ≥ 1.
func (g Absorbing) Validate() error {
	if g.Tokens < 1 || g.Tokens >= math.MaxInt32 {
		return invalidf("absorbing graph with %d tokens", g.Tokens)
	}
	return nil
}

func (g Absorbing) spec() graphSpec {
	return graphSpec{absorb: true, n: g.Tokens + 1, mask: int64(g.Tokens)}
}

// ScoreEntropy returns ℓ = Σ_{j<M} exp(s_j) - r·s_{x0} + r·(log r - 1) with
// r = 1/(e^σ - 1) when xt is the mask, and 0 otherwise (the reference's
// Absorbing.score_entropy). The first sum is exp(lse).
func (g Absorbing) ScoreEntropy(x0, xt int64, sigma float64, logScore []float32, lse float64) float64 {
	if xt != int64(g.Tokens) {
		return 0
	}
	r := 1 / math.Expm1(sigma)
	return math.Exp(lse) - r*float64(logScore[x0]) + r*(math.Log(r)-1)
}

// Uniform is the uniform graph: N = Tokens states, each jumping to every other
// at rate 1/N. Sampling starts from uniformly random tokens.
type Uniform struct {
	Tokens int
}

// States returns Tokens.
func (g Uniform) States() int { return g.Tokens }

// Validate reports an error unless Tokens ≥ 2.
func (g Uniform) Validate() error {
	if g.Tokens < 2 || g.Tokens >= math.MaxInt32 {
		return invalidf("uniform graph with %d tokens", g.Tokens)
	}
	return nil
}

func (g Uniform) spec() graphSpec { return graphSpec{n: g.Tokens} }

// ScoreEntropy returns the reference's Uniform.score_entropy for one position:
// with N states, E = e^σ - 1 and ρ = E/(E+N),
//
//	unmoved (xt = x0): ℓ = S/N - ρ·Σ'/N + (N-1)/N·ρ·(log ρ - 1)
//	moved   (xt ≠ x0): ℓ = S/N - s_{x0}/E - Σ'/N + ((-log ρ - 1)/ρ - (N-2))/N
//
// where S = exp(lse) and Σ' = Σ_{j≠xt} s_j. It reads the whole row (O(N)).
func (g Uniform) ScoreEntropy(x0, xt int64, sigma float64, logScore []float32, lse float64) float64 {
	n := float64(g.Tokens)
	em1 := math.Expm1(sigma)
	ratio := em1 / (em1 + n)
	var sum float64
	for j, v := range logScore[:g.Tokens] {
		if int64(j) != xt {
			sum += float64(v)
		}
	}
	pos := math.Exp(lse) / n
	neg := sum / n
	var c float64
	if xt == x0 {
		neg *= ratio
		c = (n - 1) / n * ratio * (math.Log(ratio) - 1)
	} else {
		neg += float64(logScore[x0]) / em1
		c = ((-math.Log(ratio)-1)/ratio - (n - 2)) / n
	}
	return pos - neg + c
}
