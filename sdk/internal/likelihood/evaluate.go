package likelihood

import (
	"cmp"
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/sedd-go/sedd/sdk/diffusion"
)

// Evaluate estimates the negative-ELBO bound on −log p(x) of every sequence
// of seqs under the score network score, as the package documentation
// describes, and returns per-sequence and corpus results.
//
// Sequences may differ in length (each is evaluated at its own length; only
// rows of equal length share a ScoreFunc call). Clean tokens must be data
// tokens: in [0, Tokens) for the absorbing graph, [0, N) for the uniform one.
//
// Errors: ErrInvalidConfig (bad cfg, no sequences, an empty sequence), a
// *TokenError (ErrBadToken), a *ScoreError (a NaN, +Inf or misshapen score,
// naming the sequence and timestep), the ScoreFunc's own error, ctx.Err(), or
// the error returned by cfg.Progress, each wrapped with context.
//
// Evaluate keeps no state between calls; concurrent calls are safe when the
// ScoreFunc is.
func Evaluate(ctx context.Context, score diffusion.ScoreFunc, seqs [][]int64, cfg Config) (*Result, error) {
	cfg, err := cfg.resolved()
	if err != nil {
		return nil, err
	}
	if score == nil {
		return nil, invalidf("nil score function")
	}
	if err := checkSequences(cfg.Graph, seqs); err != nil {
		return nil, err
	}
	if len(seqs) > MaxDraws/cfg.Timesteps {
		return nil, invalidf("%d sequences × %d timesteps is more than %d draws; evaluate the text in parts", len(seqs), cfg.Timesteps, MaxDraws)
	}
	e := newEvaluator(cfg, seqs)
	if err := e.run(ctx, score); err != nil {
		return nil, err
	}
	return e.result(), nil
}

// checkSequences reports an empty input, an empty sequence or a token the
// graph cannot hold as a clean token.
func checkSequences(g diffusion.Graph, seqs [][]int64) error {
	if len(seqs) == 0 {
		return invalidf("no sequences")
	}
	limit := int64(g.States())
	switch a := g.(type) {
	case diffusion.Absorbing:
		limit = a.Mask()
	case *diffusion.Absorbing:
		limit = a.Mask()
	}
	for s, seq := range seqs {
		if len(seq) == 0 {
			return invalidf("sequence %d is empty", s)
		}
		for i, tok := range seq {
			if tok < 0 || tok >= limit {
				return &TokenError{Sequence: s, Position: i, Token: tok, Limit: limit}
			}
		}
	}
	return nil
}

// row is one (sequence, timestep) pair: one corrupted sequence, one network
// row, one value of the integrand.
type row struct {
	seq, k         int
	t, sigma, rate float64
	sigma32        float32
	xt             []int64 // view into the batch's token buffer
	value          float64 // σ'(t)·Σ_i ℓ_i
	err            error
}

type evaluator struct {
	cfg   Config
	seqs  [][]int64
	draws [][]float64 // draws[s][k] = σ'(t_k)·Σ_i ℓ_i of sequence s
	width float64     // 1 - eps_l, the length of the time interval
}

func newEvaluator(cfg Config, seqs [][]int64) *evaluator {
	e := &evaluator{cfg: cfg, seqs: seqs, width: 1 - cfg.MinTime}
	flat := make([]float64, len(seqs)*cfg.Timesteps)
	e.draws = make([][]float64, len(seqs))
	for s := range seqs {
		e.draws[s] = flat[s*cfg.Timesteps : (s+1)*cfg.Timesteps : (s+1)*cfg.Timesteps]
	}
	return e
}

// time returns t_k of sequence s.
func (e *evaluator) time(st *stream, s, k int) float64 {
	K := float64(e.cfg.Timesteps)
	var v float64
	switch e.cfg.Sampling {
	case Antithetic:
		u := st.reset(e.cfg.Seed, s, k/2, purposeTime).Float64()
		if k%2 == 1 {
			u = 1 - u
		}
		v = u
	default: // Stratified
		u := st.reset(e.cfg.Seed, s, k, purposeTime).Float64()
		v = (float64(k) + u) / K
	}
	return e.cfg.MinTime + e.width*v
}

// prepare sets the time of r and draws its corrupted sequence into r.xt.
func (e *evaluator) prepare(r *row, st *stream) error {
	r.t = e.time(st, r.seq, r.k)
	// The network sees σ as a float32; the score entropy uses the same value,
	// so that its constants match the scores (for scale_by_sigma models the
	// network itself subtracts log(e^σ - 1)).
	r.sigma32 = float32(e.cfg.Noise.Total(r.t))
	r.sigma = float64(r.sigma32)
	r.rate = e.cfg.Noise.Rate(r.t)
	rng := st.reset(e.cfg.Seed, r.seq, r.k, purposeNoise)
	return diffusion.Corrupt(r.xt, e.cfg.Graph, rng, e.seqs[r.seq], r.sigma)
}

// loss stores σ'(t)·Σ_i ℓ_i of row b of sc into r.value.
func (e *evaluator) loss(r *row, sc diffusion.Scores, b int) error {
	v, err := drawLoss(nil, e.cfg.Graph, r.sigma, r.rate, e.seqs[r.seq], r.xt, sc, b)
	if err != nil {
		return &ScoreError{Sequence: r.seq, Timestep: r.k, T: r.t, Sigma: r.sigma, Err: err}
	}
	r.value = v
	return nil
}

// drawLossAt returns the loss of one draw, σ'(t)·Σ_i ℓ_i: the integrand of the
// bound at time t for the clean sequence x0 and its corruption xt, whose
// scores at σ(t) are row b of sc. It is the reference's training loss
// (losses.py) for one sequence. If dst is not nil it receives the Length
// per-position score entropies ℓ_i (0 at the unmasked positions of the
// absorbing graph). On the absorbing graph it reads, per masked position, the
// log-sum-exp and the one log score at x0: O(Length). It uses σ(t) in
// float64; Evaluate first rounds σ to the float32 it passes to the network.
// The errors wrap
// diffusion.ErrInvalidConfig, diffusion.ErrScoreShape or diffusion.ErrNonFinite.
func drawLossAt(dst []float64, g diffusion.Graph, noise diffusion.Noise, t float64, x0, xt []int64, sc diffusion.Scores, b int) (float64, error) {
	if noise == nil {
		return 0, fmt.Errorf("%w: nil noise", diffusion.ErrInvalidConfig)
	}
	return drawLoss(dst, g, noise.Total(t), noise.Rate(t), x0, xt, sc, b)
}

func drawLoss(dst []float64, g diffusion.Graph, sigma, rate float64, x0, xt []int64, sc diffusion.Scores, b int) (float64, error) {
	ent, err := diffusion.SequenceScoreEntropy(dst, g, x0, xt, sigma, sc, b)
	if err != nil {
		return 0, err
	}
	return rate * ent, nil
}

func (e *evaluator) run(ctx context.Context, score diffusion.ScoreFunc) error {
	K := e.cfg.Timesteps
	// Rows of equal length are packed together: visit sequences by length.
	order := make([]int, len(e.seqs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(len(e.seqs[a]), len(e.seqs[b])) })

	maxLen := len(e.seqs[order[len(order)-1]])
	total := len(e.seqs) * K
	bs := min(e.cfg.BatchSize, total) // a huge BatchSize must not size the buffers
	tokens := make([]int64, bs*maxLen)
	sigmas := make([]float32, bs)
	rows := make([]row, 0, bs)
	// the positions the bound reads, when score can compute some only: on
	// the absorbing graph the masked positions of each draw
	rs, _ := score.(diffusion.RowScoreFunc)
	absorb, isAbsorb := e.cfg.Graph.(interface{ Mask() int64 }) // Absorbing or *Absorbing
	if !isAbsorb {
		rs = nil
	}
	var want []int32
	if rs != nil {
		want = make([]int32, 0, bs*maxLen)
	}
	done := 0
	workers := newPool(bs)

	flush := func() error {
		if len(rows) == 0 {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("likelihood: %w", err)
		}
		L := len(e.seqs[rows[0].seq])
		n := len(rows)
		for b := range rows {
			rows[b].xt = tokens[b*L : (b+1)*L : (b+1)*L]
		}
		if err := workers.each(rows, func(r *row, st *stream) error { return e.prepare(r, st) }); err != nil {
			return fmt.Errorf("likelihood: corrupting: %w", err)
		}
		for b := range rows {
			sigmas[b] = rows[b].sigma32
		}
		var sc diffusion.Scores
		var err error
		if rs != nil {
			want = maskedRows(want[:0], tokens[:n*L], absorb.Mask())
			sc, err = rs.ScoreRows(ctx, tokens[:n*L], sigmas[:n], n, L, want)
		} else {
			want = want[:0]
			sc, err = score.Score(ctx, tokens[:n*L], sigmas[:n], n, L)
		}
		if err != nil {
			return fmt.Errorf("likelihood: score function: %w", err)
		}
		if err := sc.CheckRows(n, L, e.cfg.Graph.States(), want); err != nil {
			r := rows[0]
			return &ScoreError{Sequence: r.seq, Timestep: r.k, T: r.t, Sigma: r.sigma, Err: err}
		}
		err = workers.eachIndex(rows, func(b int, r *row) error { return e.loss(r, sc, b) })
		if err != nil {
			return err
		}
		for _, r := range rows {
			e.draws[r.seq][r.k] = r.value
		}
		done += n
		rows = rows[:0]
		if e.cfg.Progress != nil {
			if err := e.cfg.Progress(done, total); err != nil {
				return fmt.Errorf("likelihood: stopped by progress callback after %d of %d rows: %w", done, total, err)
			}
		}
		return nil
	}

	for _, s := range order {
		if len(rows) > 0 && len(e.seqs[rows[0].seq]) != len(e.seqs[s]) {
			if err := flush(); err != nil {
				return err
			}
		}
		for k := range K {
			rows = append(rows, row{seq: s, k: k})
			if len(rows) == bs {
				if err := flush(); err != nil {
					return err
				}
			}
		}
	}
	return flush()
}

// maskedRows appends to dst the flat positions of x that hold the mask.
func maskedRows(dst []int32, x []int64, mask int64) []int32 {
	for k, v := range x {
		if v == mask {
			dst = append(dst, int32(k))
		}
	}
	return dst
}

// pool runs per-row work on up to GOMAXPROCS goroutines. Every row's result
// depends on the row alone, so the split does not change any number; when
// several rows fail, the error of the first row (in batch order) is returned.
type pool struct {
	streams []*stream
}

func newPool(rows int) *pool {
	n := max(1, min(runtime.GOMAXPROCS(0), rows))
	p := &pool{streams: make([]*stream, n)}
	for i := range p.streams {
		p.streams[i] = newStream()
	}
	return p
}

func (p *pool) each(rows []row, f func(*row, *stream) error) error {
	return p.run(rows, func(b int, r *row, st *stream) error { return f(r, st) })
}

func (p *pool) eachIndex(rows []row, f func(int, *row) error) error {
	return p.run(rows, func(b int, r *row, _ *stream) error { return f(b, r) })
}

func (p *pool) run(rows []row, f func(int, *row, *stream) error) error {
	workers := min(len(p.streams), len(rows))
	if workers <= 1 {
		for b := range rows {
			if err := f(b, &rows[b], p.streams[0]); err != nil {
				return err
			}
		}
		return nil
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func(st *stream) {
			defer wg.Done()
			for {
				b := int(next.Add(1) - 1)
				if b >= len(rows) {
					return
				}
				rows[b].err = f(b, &rows[b], st)
			}
		}(p.streams[w])
	}
	wg.Wait()
	for b := range rows {
		if rows[b].err != nil {
			return rows[b].err
		}
	}
	return nil
}
