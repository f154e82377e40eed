package diffusion

import (
	"math"
	"math/rand/v2"
)

// stepKind is the kind of one sampling step.
type stepKind int

const (
	kindEuler stepKind = iota
	kindAnalytic
	kindDenoise
)

// stepMath holds the per-step constants of the fast draws. The draws follow
// the same distributions as transitionProbs and denoiseProbs but read only the
// log-sum-exp of a position unless the position may move (always on the
// absorbing graph and for euler; for analytic and denoise on the uniform graph
// unless a bound on the move mass already decides that it stays).
type stepMath struct {
	kind stepKind
	g    graphSpec
	// unmask, when set, reshapes the token a masked position unmasks to.
	unmask *unmaskFilter
	// jump turns S = exp(lse) into the probability of leaving x (before
	// clamping to 1): euler Δt·σ'(t) (divided by N for uniform); absorbing
	// analytic e^{dσ} - 1.
	jump float64
	// Uniform analytic and denoise, with d = dσ (or σ(eps)):
	a     float64 // e^{d}
	c     float64 // (1 - e^{-d}) / N, the transition to each j ≠ x
	logC  float64 // log c
	stayT float64 // 1 - (N-1)·c, the transition to x
}

func newEulerMath(g graphSpec, scale float64) stepMath {
	m := stepMath{kind: kindEuler, g: g, jump: scale}
	if !g.absorb {
		m.jump = scale / float64(g.n)
	}
	return m
}

func newAnalyticMath(g graphSpec, d float64, denoise bool) stepMath {
	m := stepMath{kind: kindAnalytic, g: g, jump: math.Expm1(d)}
	if denoise {
		m.kind = kindDenoise
	}
	if !g.absorb {
		m.a = math.Exp(d)
		m.c = -math.Expm1(-d) / float64(g.n)
		m.logC = math.Log(m.c)
		m.stayT = 1 - float64(g.n-1)*m.c
	}
	return m
}

// rowFault describes a bad entry met while drawing: its index in the row
// (-1: the lse) and value.
type rowFault struct {
	index int
	value float64
}

// draw returns the next state of one position in state x, given its N log
// scores and their log-sum-exp over j ≠ x (finite), consuming r in a fixed
// order. cum is scratch of length ≥ N. ok is false when the row holds a NaN or
// +Inf or leaves no state with positive weight; fault then says where.
func (m *stepMath) draw(r *rand.Rand, x int64, row []float32, lse float64, cum []float64) (next int64, fault rowFault, ok bool) {
	if m.g.absorb {
		if x != m.g.mask {
			return x, rowFault{}, true
		}
		if m.kind != kindDenoise {
			// Leave the mask with probability min(1, jump·S); then j ∝ exp(s_j).
			if r.Float64() >= m.jump*math.Exp(lse) {
				return x, rowFault{}, true
			}
		}
		return drawUnmask(m.unmask, r, row[:m.g.mask], lse, cum)
	}
	if m.kind == kindEuler {
		if r.Float64() >= m.jump*math.Exp(lse) {
			return x, rowFault{}, true
		}
		return drawExp(r, row, x, lse, cum)
	}
	return m.drawUniformTweedie(r, x, row, lse, cum)
}

// drawExp draws j ∝ exp(row[j]) over the row, skipping index skip, by inverse
// CDF with one float64 uniform. lse only shifts the exponents (for range).
func drawExp(r *rand.Rand, row []float32, skip int64, lse float64, cum []float64) (int64, rowFault, bool) {
	u := r.Float64()
	cum = cum[:len(row)]
	var total float64
	for j, v := range row {
		s := float64(v)
		if badLogScore(s) {
			return 0, rowFault{j, s}, false
		}
		if int64(j) != skip {
			total += math.Exp(s - lse)
		}
		cum[j] = total
	}
	return searchCum(cum, u*total)
}

// drawUniformTweedie draws from staggered_score · transp_transition on the
// uniform graph. With A = e^{d}, S = exp(lse), B = (1-A)(1+S)/N, the weight of
// x is stayT·(A + B) and that of j ≠ x is c·(A·e^{s_j} + B), positive only when
// s_j > log(c·(1+S)); negative weights count as 0. The inverse CDF orders x
// first. Since B ≤ 0, the total move weight is at most c·A·S, so a uniform
// below stay/(stay + c·A·S) means "stay" whatever the row holds: most
// positions are decided in O(1), and only the others read their row, where
// the exponential is skipped for every weight that is certainly clamped.
func (m *stepMath) drawUniformTweedie(r *rand.Rand, x int64, row []float32, lse float64, cum []float64) (int64, rowFault, bool) {
	u := r.Float64()
	n := m.g.n
	log1pS := softplus(lse) // log(1 + S)
	b := -m.jump * math.Exp(log1pS) / float64(n)
	stay := max(0, m.stayT*(m.a+b))
	if u*(stay+m.c*m.a*math.Exp(lse)) < stay {
		return x, rowFault{}, true
	}
	thr := m.logC + log1pS
	ac, bc := m.a*m.c, b*m.c
	cum = cum[:n]
	var moves float64
	for j, v := range row[:n] {
		s := float64(v)
		if badLogScore(s) {
			return 0, rowFault{j, s}, false
		}
		if int64(j) != x && s > thr {
			if w := ac*math.Exp(s) + bc; w > 0 {
				moves += w
			}
		}
		cum[j] = moves
	}
	total := stay + moves
	if total == 0 {
		return x, rowFault{}, true // see tweedieWeights: rounding left no positive weight
	}
	target := u * total
	if target < stay || moves == 0 {
		return x, rowFault{}, true
	}
	return searchCum(cum, target-stay)
}

// softplus returns log(1 + e^l) without overflow.
func softplus(l float64) float64 {
	if l > 0 {
		return l + math.Log1p(math.Exp(-l))
	}
	return math.Log1p(math.Exp(l))
}

// searchCum returns the smallest j with cum[j] > target, cum being the running
// sum of non-negative weights. Rounding can leave target ≥ cum[last]; then the
// last index with positive weight is returned.
func searchCum(cum []float64, target float64) (int64, rowFault, bool) {
	total := cum[len(cum)-1]
	if !(total > 0) || math.IsInf(total, 1) {
		return 0, rowFault{-1, total}, false
	}
	lo, hi := 0, len(cum)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if cum[mid] > target {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	if lo == len(cum) {
		lo = len(cum) - 1
		for lo > 0 && cum[lo-1] == total {
			lo--
		}
	}
	return int64(lo), rowFault{}, true
}
