package diffusion

import (
	"fmt"
	"math"
	"math/rand/v2"
)

// SequenceScoreEntropy returns Σ_i ℓ_i, the score entropy of row b of sc
// summed over positions, where sc holds the scores of the corrupted sequence
// xt at total noise sigma and x0 is the clean sequence (see
// Graph.ScoreEntropy). If dst is not nil it receives the Length per-position
// values. The loss of the reference (losses.py) for one draw is σ'(t) times
// the result. It costs O(Length) on the absorbing graph (it needs only
// sc.LSE there) and O(Length·N) on the uniform graph. sc may hold some
// positions only (Scores.Rows) if it holds those the entropy reads: on the
// absorbing graph the masked positions of xt. Errors wrap
// ErrInvalidConfig (bad arguments), ErrScoreShape or ErrNonFinite.
func SequenceScoreEntropy(dst []float64, g Graph, x0, xt []int64, sigma float64, sc Scores, b int) (float64, error) {
	if g == nil {
		return 0, invalidf("nil graph")
	}
	if err := g.Validate(); err != nil {
		return 0, err
	}
	sp := g.spec()
	L := sc.Length
	if err := sc.checkRows(sc.Batch, L, sp.n, sc.Rows); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrScoreShape, err)
	}
	if b < 0 || b >= sc.Batch || len(x0) != L || len(xt) != L || (dst != nil && len(dst) != L) {
		return 0, invalidf("row %d of batch %d, %d clean and %d corrupted tokens, dst %d, length %d", b, sc.Batch, len(x0), len(xt), len(dst), L)
	}
	if !(sigma > 0) || math.IsInf(sigma, 1) {
		return 0, invalidf("sigma = %v, must be > 0", sigma)
	}
	limit := int64(sp.n)
	if sp.absorb {
		limit = sp.mask
	}
	var total float64
	for i := range L {
		if x0[i] < 0 || x0[i] >= limit || xt[i] < 0 || xt[i] >= int64(sp.n) {
			return 0, invalidf("position %d: clean token %d, corrupted token %d", i, x0[i], xt[i])
		}
		var ent float64
		if !sp.absorb || xt[i] == sp.mask {
			k := sc.Slot(b, i)
			if k < 0 {
				return 0, fmt.Errorf("%w: no output at row %d, position %d (a position the bound reads)", ErrScoreShape, b, i)
			}
			lse := float64(sc.LSE[k])
			if math.IsNaN(lse) || math.IsInf(lse, 0) {
				return 0, fmt.Errorf("%w: log-sum-exp at row %d, position %d = %v", ErrNonFinite, b, i, lse)
			}
			row := sc.Row(b, i)
			if v := float64(row[x0[i]]); badLogScore(v) || math.IsInf(v, -1) {
				return 0, fmt.Errorf("%w: log score at row %d, position %d, state %d = %v", ErrNonFinite, b, i, x0[i], v)
			}
			ent = g.ScoreEntropy(x0[i], xt[i], sigma, row, lse)
			if math.IsNaN(ent) || math.IsInf(ent, 0) {
				return 0, fmt.Errorf("%w: score entropy at row %d, position %d = %v", ErrNonFinite, b, i, ent)
			}
		}
		if dst != nil {
			dst[i] = ent
		}
		total += ent
	}
	return total, nil
}

// Corrupt writes to dst a draw of the forward process at total noise sigma
// from the clean tokens x0: each position independently, with probability
// 1 - e^{-σ}, becomes the mask (absorbing) or a uniformly random token, which
// may equal the old one (uniform), as the reference's sample_transition. It
// consumes r in position order: one uniform per position, plus one token draw
// per replaced position on the uniform graph. dst and x0 may be the same slice.
func Corrupt(dst []int64, g Graph, r *rand.Rand, x0 []int64, sigma float64) error {
	if g == nil || r == nil {
		return invalidf("nil graph or random source")
	}
	if err := g.Validate(); err != nil {
		return err
	}
	if len(dst) != len(x0) {
		return invalidf("dst has %d tokens, x0 %d", len(dst), len(x0))
	}
	if !(sigma >= 0) || math.IsInf(sigma, 1) {
		return invalidf("sigma = %v, must be ≥ 0 and finite", sigma)
	}
	sp := g.spec()
	move := -math.Expm1(-sigma)
	for i, tok := range x0 {
		if r.Float64() >= move {
			dst[i] = tok
			continue
		}
		if sp.absorb {
			dst[i] = sp.mask
		} else {
			dst[i] = int64(r.Uint64N(uint64(sp.n)))
		}
	}
	return nil
}
