package diffusion

import (
	"context"
	"fmt"
	"math"
	"slices"
)

// checkAdaptive validates Threshold and EntropyBudget: each is the knob of
// one predictor and must be left 0 with the others.
func checkAdaptive(cfg Config) error {
	switch {
	case cfg.Predictor == Confidence && !(cfg.Threshold > 0 && cfg.Threshold <= 1):
		return invalidf("threshold = %v, must be in (0, 1] with the confidence sampler", cfg.Threshold)
	case cfg.Predictor != Confidence && cfg.Threshold != 0:
		return invalidf("threshold = %v is a setting of the confidence sampler, not of %v; leave it 0", cfg.Threshold, cfg.Predictor)
	case cfg.Predictor == EntropyBounded && !(cfg.EntropyBudget >= 0 && cfg.EntropyBudget <= math.MaxFloat64):
		return invalidf("entropy budget = %v, must be a finite number of nats ≥ 0 with the entropy-bounded sampler", cfg.EntropyBudget)
	case cfg.Predictor != EntropyBounded && cfg.EntropyBudget != 0:
		return invalidf("entropy budget = %v is a setting of the entropy-bounded sampler, not of %v; leave it 0", cfg.EntropyBudget, cfg.Predictor)
	}
	return nil
}

// runAdaptive runs the Confidence or EntropyBounded sampler over the current
// block, from the all-mask start that start() has set up.
//
// Each network evaluation shows a row its current tokens; for every masked
// position i the normalized scores q_i(j) ∝ exp(s_ij) over the ordinary
// tokens are the network's estimate of the clean token's law given the
// unmasked ones (whatever σ). The row then unmasks a set U of its masked
// positions chosen from the q_i alone (Config.Threshold, Config.EntropyBudget;
// never empty), each to a token drawn from its own q_i (through Temperature,
// TopK, TopP), independently, in position order, one float64 uniform each
// from the row's stream (nothing else is drawn). The choice of U does not look
// at the draws, so a set of one position is drawn exactly: with exact scores,
// a run that unmasks one position per evaluation samples the data law
// whatever order the choices make (the chain rule holds in any order that is
// decided by the tokens already unmasked). What it gets wrong is the
// dependence between the positions of a U of several, which it draws as if
// independent: per evaluation at most Σ_{i∈U} P(x_i ≠ mode of q_i) ≤
// |U|·(1 - Threshold) in total variation, and at most the total correlation
// Σ_{i∈U} H(q_i) - H(joint) ≤ EntropyBudget in KL.
//
// σ: a time-conditioned network is shown the σ at which a fraction
// 1 - e^{-σ} of the positions is masked in the forward process, that fraction
// being the row's: σ = -log(1 - m/n) for m masked of its n free positions,
// kept within [σ(EndTime), σ(1)]. (The draws read only the normalized scores;
// for a time-independent network σ changes nothing.) A row with no mask left
// is not evaluated again: a call evaluates only the rows that still have one.
func (s *Sampler) runAdaptive(ctx context.Context, score ScoreFunc) error {
	B, L, N := s.cfg.Batch, s.w, s.g.n
	mask := int(s.g.mask)
	n := 0
	for i := range L {
		if !s.isFixed[i] {
			s.pending[n] = int32(i)
			n++
		}
	}
	for b := range B {
		copy(s.pending[b*L:b*L+n], s.pending[:n])
		s.left[b] = n
	}
	later := 0 // free positions of the blocks after this one
	for _, f := range s.blockFree[s.blk+1:] {
		later += f
	}
	top := s.cfg.Noise.Total(1)
	floor := s.cfg.Noise.Total(s.cfg.EndTime)
	s.calls = 0
	for {
		rows := s.subRows[:0]
		for b, m := range s.left {
			if m > 0 {
				rows = append(rows, b)
			}
		}
		if len(rows) == 0 {
			return nil
		}
		s.calls++
		idx := s.base + s.calls
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("diffusion: before step %d: %w", idx, err)
		}
		x, sigma := s.x, s.sigma
		if len(rows) < B {
			x, sigma = s.subX[:len(rows)*L], s.subSigma[:len(rows)]
			for k, b := range rows {
				copy(x[k*L:(k+1)*L], s.x[b*L:(b+1)*L])
			}
		}
		for k, b := range rows {
			sig := -math.Log1p(-float64(s.left[b]) / float64(n)) // +Inf when all are masked
			sigma[k] = float32(min(max(sig, floor), top))
		}
		sc, err := score.Score(ctx, x, sigma, len(rows), L)
		if err != nil {
			return fmt.Errorf("diffusion: score at step %d: %w", idx, err)
		}
		if err := sc.check(len(rows), L, N); err != nil {
			return &ScoreError{Step: idx, Detail: err.Error(), Err: ErrScoreShape}
		}
		for k, b := range rows {
			if err := s.unmaskRow(sc, k, b, idx, mask); err != nil {
				return err
			}
		}
		if s.cfg.Progress != nil {
			most := slices.Max(s.left)
			t := 0.0
			if most > 0 {
				t = timeOfSigma(s.cfg.Noise, min(-math.Log1p(-float64(most)/float64(n)), top))
			}
			// Steps is an upper bound (each evaluation unmasks at least one
			// position of every row left), exact at the last step.
			s.total = idx + most + later
			if err := s.report(s.calls, t); err != nil {
				return err
			}
		}
	}
}

// unmaskRow chooses and unmasks the positions of row b, whose scores are row
// k of sc.
func (s *Sampler) unmaskRow(sc Scores, k, b, idx, mask int) error {
	L := s.w
	pend := s.pending[b*L : b*L+s.left[b]]
	vals := s.vals[:len(pend)]
	for p, i := range pend {
		row := sc.Row(k, int(i))[:mask]
		var v float64
		var fault rowFault
		ok := true
		if s.cfg.Predictor == Confidence {
			v, fault, ok = confidence(row, float64(sc.LSE[k*L+int(i)]))
		} else {
			v, fault, ok = entropy(row)
		}
		if !ok {
			return unmaskFault(idx, b, int(i), fault)
		}
		vals[p] = v
	}
	take := s.take[:len(pend)]
	clear(take)
	// The candidates in order of preference (most confident, or lowest
	// entropy, first; ties: the lower position); a candidate next to a
	// position taken in this call is passed over.
	order := s.order[:len(pend)]
	for p := range order {
		order[p] = int32(p)
	}
	sign := 1.0
	if s.cfg.Predictor == Confidence {
		sign = -1
	}
	slices.SortFunc(order, func(a, c int32) int {
		if d := sign * (vals[a] - vals[c]); d != 0 {
			if d < 0 {
				return -1
			}
			return 1
		}
		return int(a - c)
	})
	near := s.near
	taken := 0.0
	for n, p := range order {
		if n > 0 && (s.cfg.Predictor == Confidence && vals[p] < s.cfg.Threshold ||
			s.cfg.Predictor == EntropyBounded && taken > s.cfg.EntropyBudget) {
			break
		}
		pos := int(pend[p])
		if pos > 0 && near[pos-1] || pos+1 < L && near[pos+1] {
			continue
		}
		near[pos] = true
		take[p] = true
		taken += vals[p]
	}
	r := s.rngs[b]
	kept := 0
	for p, i := range pend {
		if !take[p] {
			pend[kept] = i
			kept++
			continue
		}
		pos := int(i)
		near[pos] = false
		tok, fault, ok := drawUnmask(s.unmask, r, sc.Row(k, pos)[:mask], float64(sc.LSE[k*L+pos]), s.cum)
		if !ok {
			return unmaskFault(idx, b, pos, fault)
		}
		s.x[b*L+pos] = tok
	}
	s.left[b] = kept
	return nil
}

// confidence returns max_j q_j for q_j ∝ exp(row[j]), lse being the
// log-sum-exp of row (the network's own, as the draws use it).
func confidence(row []float32, lse float64) (float64, rowFault, bool) {
	if math.IsNaN(lse) || math.IsInf(lse, 0) {
		return 0, rowFault{-1, lse}, false
	}
	top := math.Inf(-1)
	for j, v := range row {
		x := float64(v)
		if badLogScore(x) {
			return 0, rowFault{j, x}, false
		}
		top = max(top, x)
	}
	return min(math.Exp(top-lse), 1), rowFault{}, true
}

// entropy returns the entropy in nats of q_j ∝ exp(row[j]), computed from the
// row itself in float64: log Z - Σ_j w_j·(s_j - m)/Z with m = max_j s_j,
// w_j = exp(s_j - m) and Z = Σ_j w_j.
func entropy(row []float32) (float64, rowFault, bool) {
	top := math.Inf(-1)
	for j, v := range row {
		x := float64(v)
		if badLogScore(x) {
			return 0, rowFault{j, x}, false
		}
		top = max(top, x)
	}
	if math.IsInf(top, -1) {
		return 0, rowFault{-1, top}, false
	}
	var z, ws float64
	for _, v := range row {
		d := float64(v) - top
		if d < -745 { // exp underflows to 0; so does its term
			continue
		}
		w := math.Exp(d)
		z += w
		ws += w * d
	}
	return max(math.Log(z)-ws/z, 0), rowFault{}, true
}
