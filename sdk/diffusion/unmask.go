package diffusion

import (
	"math"
	"math/rand/v2"
	"sort"
)

// unmaskFilter reshapes the distribution q_j ∝ exp(s_j) over the ordinary
// tokens that a masked position of the absorbing graph unmasks to: the
// temperature first (q_j ∝ exp(s_j / T)), then top-k (the k most likely
// tokens), then top-p (the smallest set of the most likely tokens whose mass
// is at least p), each renormalized. Ties in likelihood are broken by the
// lower token id. The probability of unmasking at all is left as it is.
type unmaskFilter struct {
	invT  float64 // 1 / temperature
	topK  int     // 0: off
	topP  float64 // 0: off
	w     []float64
	order []int32
}

// newUnmaskFilter returns nil when the settings leave the distribution as it
// is (temperature 0 or 1, top-k 0 or ≥ tokens, top-p 0 or 1), so the default
// draws stay those of drawExp.
func newUnmaskFilter(temperature float64, topK int, topP float64, tokens int) *unmaskFilter {
	f := &unmaskFilter{invT: 1}
	if temperature != 0 {
		f.invT = 1 / temperature
	}
	if topK > 0 && topK < tokens {
		f.topK = topK
	}
	if topP > 0 && topP < 1 {
		f.topP = topP
	}
	if f.invT == 1 && f.topK == 0 && f.topP == 0 {
		return nil
	}
	f.w = make([]float64, tokens)
	if f.topK != 0 || f.topP != 0 {
		f.order = make([]int32, tokens)
	}
	return f
}

// weights writes the unnormalized filtered weights of row (the log scores of
// the ordinary tokens) to f.w, in token order, 0 for every dropped token, and
// returns their sum.
func (f *unmaskFilter) weights(row []float32) (float64, rowFault, bool) {
	top := math.Inf(-1)
	for j, v := range row {
		s := float64(v)
		if badLogScore(s) {
			return 0, rowFault{j, s}, false
		}
		top = max(top, s)
	}
	if math.IsInf(top, -1) {
		return 0, rowFault{-1, 0}, false
	}
	w := f.w[:len(row)]
	var total float64
	for j, v := range row {
		w[j] = math.Exp((float64(v) - top) * f.invT)
		total += w[j]
	}
	if f.order == nil {
		return total, rowFault{}, true
	}
	order := f.order[:len(row)]
	for j := range order {
		order[j] = int32(j)
	}
	sort.Sort((*byWeight)(f))
	keep := len(order)
	if f.topK != 0 {
		keep = min(keep, f.topK)
	}
	if f.topP != 0 {
		var kept float64
		for _, j := range order[:keep] {
			kept += w[j]
		}
		target := f.topP * kept
		var cum float64
		for k, j := range order[:keep] {
			cum += w[j]
			if cum >= target {
				keep = k + 1
				break
			}
		}
	}
	for _, j := range order[keep:] {
		w[j] = 0
	}
	total = 0
	for _, v := range w {
		total += v
	}
	return total, rowFault{}, true
}

// draw draws a token from the filtered distribution of row by inverse CDF in
// token order, with one float64 uniform (as drawExp).
func (f *unmaskFilter) draw(r *rand.Rand, row []float32, cum []float64) (int64, rowFault, bool) {
	u := r.Float64()
	total, fault, ok := f.weights(row)
	if !ok {
		return 0, fault, false
	}
	cum = cum[:len(row)]
	var run float64
	for j, v := range f.w[:len(row)] {
		run += v
		cum[j] = run
	}
	return searchCum(cum, u*total)
}

// byWeight sorts f.order by decreasing weight, then increasing token id.
type byWeight unmaskFilter

func (b *byWeight) Len() int { return len(b.order) }
func (b *byWeight) Less(i, j int) bool {
	wi, wj := b.w[b.order[i]], b.w[b.order[j]]
	return wi > wj || (wi == wj && b.order[i] < b.order[j])
}
func (b *byWeight) Swap(i, j int) { b.order[i], b.order[j] = b.order[j], b.order[i] }

// drawUnmask draws the token a masked position of the absorbing graph unmasks
// to: ∝ exp(s_j) over the ordinary tokens, reshaped by f when it is not nil.
func drawUnmask(f *unmaskFilter, r *rand.Rand, row []float32, lse float64, cum []float64) (int64, rowFault, bool) {
	if f == nil {
		return drawExp(r, row, -1, lse, cum)
	}
	return f.draw(r, row, cum)
}
