package diffusion

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// DefaultEndTime is the end time of sampling used when Config.EndTime is 0, as in the
// reference (t runs from 1 down to its sampling eps).
const DefaultEndTime = 1e-5

// MaxSteps bounds Config.Steps: the time grid takes 8 bytes per step (128 MiB
// at the bound), and a step count near the int limit would overflow it.
const MaxSteps = 1 << 24

// Span fixes Tokens at positions Start, Start+1, … of every row ("projection"
// in the reference's conditional sampling). A prompt is Span{0, prompt}; a
// suffix of a length-L sequence is Span{L - len(suffix), suffix}.
type Span struct {
	Start  int
	Tokens []int64
}

// Step is what a Progress callback sees after each step.
type Step struct {
	// Index counts the steps done so far, from 1 to Steps.
	Index int
	// Steps is the number of steps of the run: Config.Steps, plus 1 for the
	// denoiser when Config.Denoise is set; with FirstHitting the number of
	// positions to unmask (those not fixed). With blocks (Config.Window),
	// the steps of all blocks: Index runs on through them.
	Steps int
	// T is the diffusion time the tokens now belong to: t_Index of the time
	// grid, and 0 after the denoiser. With FirstHitting each row has a time of
	// its own; T is the latest of them, and 0 once no mask is left.
	T float64
	// Batch and Length give the shape of Tokens.
	Batch, Length int
	// Tokens holds the current tokens of every row (Batch*Length, row-major),
	// fixed spans imposed (with blocks, the positions of blocks still to
	// come are masks). It is only valid during the callback, which must
	// not modify it.
	Tokens []int64
}

// Config describes one sampling run. The zero values of Predictor (Analytic),
// EndTime (DefaultEndTime) and Seed are usable; Graph, Noise, Steps, Batch and Length
// must be set. Note that Denoise is false unless set, while the reference (and
// the SDK built on this package) denoise by default.
type Config struct {
	Graph     Graph
	Noise     Noise
	Predictor Predictor
	// Steps is the number of predictor steps (> 0), on the time grid
	// t_k = linspace(1, EndTime, Steps+1), Δt = (1-EndTime)/Steps.
	// FirstHitting ignores it: it takes one step per free position.
	Steps int
	// EndTime is the last time of the grid, in (0, 1); 0 means DefaultEndTime.
	// FirstHitting never shows the network a σ below σ(EndTime).
	EndTime float64
	// Denoise adds the reference's denoising step at t = EndTime, which for the
	// absorbing graph removes every remaining mask.
	Denoise bool
	// Batch is the number of sequences, Length their length.
	Batch, Length int
	// Seed selects the random streams: row b uses rowRand(Seed, b), so a run
	// is reproducible bit for bit on any machine.
	Seed uint64
	// Temperature, TopK and TopP reshape the distribution q_j ∝ exp(s_j) of
	// the token a masked position of the absorbing graph unmasks to, in every
	// step and in the denoiser, in this order: q_j ∝ exp(s_j / Temperature);
	// then only the TopK most likely tokens; then only the smallest set of
	// the most likely tokens holding at least TopP of the mass; each
	// renormalized, ties broken by the lower token id. The probability that a
	// position unmasks is not changed. They bias the samples away from the
	// model's law (low temperatures lower the entropy of the text as well as
	// its generative perplexity). The zero values (and Temperature 1, TopK ≥
	// Tokens, TopP 1) leave the distribution alone. Temperature must be > 0,
	// TopK ≥ 0, TopP in [0, 1]; the uniform graph, where no token unmasks,
	// takes only the values that change nothing (TopK 0).
	Temperature float64
	TopK        int
	TopP        float64
	// Window, when in [1, Length), generates the sequence semi-autoregressively
	// in blocks of Window positions, the length the network sees (its trained
	// length, say): the first block holds positions [0, Window), and each next
	// one starts Window-Overlap positions after the previous one's start
	// (the last ends at Length, so it may share more), with the positions it
	// shares with earlier blocks fixed to what they generated. Each block is a
	// whole run of the predictor (Steps steps and the denoiser, or one
	// first-hitting step per free position); Fixed spans are imposed in
	// every block that holds them, so a prefix conditions the first block and
	// a suffix the last. Absorbing graph only; Overlap must be in
	// [1, Window). 0 (or ≥ Length) samples the whole Length at once.
	Window, Overlap int
	// Threshold is the Confidence sampler's threshold, in (0, 1]: at each
	// network evaluation a row unmasks every masked position whose
	// confidence, the probability max_j q_j of the most likely token of its
	// distribution q_j ∝ exp(s_j) (before Temperature, TopK and TopP, which
	// shape only the token drawn), is at least Threshold, taking them from
	// the most confident down (ties: the lower position) and passing over a
	// position next to one already taken in the call; when none is, the most
	// confident one. 1 unmasks one position per evaluation. It must be 0
	// with the other predictors.
	Threshold float64
	// EntropyBudget is the EntropyBounded sampler's budget in nats, ≥ 0: at
	// each network evaluation a row takes its masked positions in order of
	// increasing entropy H of q (ties: the lower position) and unmasks each
	// while the entropy of the positions taken before it sums to at most
	// EntropyBudget, so at least one, passing over a position next to one
	// already taken in the call (neighbours' tokens depend on each other
	// most); the total correlation of the positions
	// unmasked together, which is what drawing them independently gets
	// wrong, is at most that sum. 0 unmasks one position per evaluation
	// (more only where q is certain). It must be 0 with the other predictors.
	EntropyBudget float64
	// TimeIndependent says the network's output depends on σ only through
	// the absorbing graph's scale_by_sigma term -log(e^σ - 1), added to every
	// log score of a position but the zero at its own state (a network
	// trained with its time input held constant; RADD, arXiv 2406.03736).
	// The sampler then skips the network call of a step in which no token
	// moved since the last call, and uses that call's output with the term
	// recomputed, so a run of many steps makes at most one call per
	// unmasking event plus one. In a batch, a call evaluates only the rows
	// that moved (all of them at once when every row did) and the sampler
	// keeps its own copy of the output, Batch × window × N float32 more
	// memory; each row is evaluated at most once per unmasking event in it
	// plus once. Absorbing graph only; the first-hitting
	// sampler moves a token at every call and gains nothing. Set it only when
	// the model says so: for a time-conditioned network it changes the law.
	TimeIndependent bool
	// Fixed tokens are imposed on every row before each step, before the
	// denoiser and on the output. Spans must not overlap; an absorbing graph's
	// mask cannot be fixed.
	Fixed []Span
	// Progress, if set, is called after each step; a non-nil error stops the
	// run, and Run returns it wrapped.
	Progress func(Step) error
}

// Sampler runs the reverse diffusion of one Config. It holds every buffer the
// steps need, so steps allocate nothing; Run can be called many times and
// gives the same tokens each time (the streams are reseeded from Config.Seed).
// A Sampler is not safe for concurrent use.
type Sampler struct {
	cfg  Config
	g    graphSpec
	grid []float64 // Steps+1 times, from 1 to EndTime
	dt   float64
	w    int     // the network's length: Window, or Length
	x    []int64 // Batch*w current tokens of the block
	out  []int64 // Batch*Length tokens of the sequence, with blocks (else nil)
	// starts holds the first position of every block (one block: {0});
	// total the steps of a whole run.
	starts []int
	total  int
	// a is the current block's first position, blk its index, base the
	// steps of the blocks before it.
	a, blk, base int
	sigma        []float32 // Batch
	cum          []float64 // N, inverse-CDF scratch
	srcs         []*rand.ChaCha8
	rngs         []*rand.Rand

	userTok  []int64 // Length: the token Config.Fixed pins at each position, or -1
	fixedPos []int   // the block's positions pinned by Config.Fixed, sorted
	fixedTok []int64 // token of each fixed position
	isFixed  []bool  // w: pinned, or generated by an earlier block

	// First hitting: the masked free positions of each row (Length per row,
	// the first `masked` of them still masked) and each row's masking
	// probability 1 - e^{-σ} at its current time.
	pending []int32
	p       []float64

	// Confidence and EntropyBounded: each row's count of masked free
	// positions (pending holds them, in position order), the free positions
	// of each block, the evaluations of the current block, and per-row
	// scratch: each pending position's confidence or entropy, an order of
	// them, and which are taken.
	left      []int
	blockFree []int
	calls     int
	vals      []float64
	order     []int32
	take      []bool
	near      []bool // w: taken in this call, by position

	unmask *unmaskFilter // nil: q_j ∝ exp(s_j) as it is

	// TimeIndependent: the output the next reuse reads (the ScoreFunc's own
	// slices, valid until its next call, or own), whether it is usable, and
	// per row the σ its output was computed at and whether a token of the
	// row moved since. own is the sampler's copy, made only when a batch
	// recomputes some of its rows (those that moved) and reuses the others;
	// subX, subSigma and subRows carry such a partial call.
	last     Scores
	own      Scores
	cached   bool
	rowSigma []float32
	rowMoved []bool
	subX     []int64
	subSigma []float32
	subRows  []int

	// want lists the flat positions b*w + i a call asks a RowScoreFunc for
	// (the masked free positions; with FirstHitting the one each row
	// unmasks), picks the index among its pending positions each row
	// unmasks (FirstHitting).
	want  []int32
	picks []int
}

// checkUnmask validates Temperature, TopK and TopP.
func checkUnmask(cfg Config) error {
	switch {
	case math.IsNaN(cfg.Temperature) || cfg.Temperature < 0 || math.IsInf(cfg.Temperature, 0):
		return invalidf("temperature = %v, must be > 0 (or 0 for the default, 1)", cfg.Temperature)
	case cfg.TopK < 0:
		return invalidf("top-k = %d, must be ≥ 1 (or 0 for no limit)", cfg.TopK)
	case math.IsNaN(cfg.TopP) || cfg.TopP < 0 || cfg.TopP > 1:
		return invalidf("top-p = %v, must be in (0, 1] (or 0 for no limit)", cfg.TopP)
	}
	neutral := (cfg.Temperature == 0 || cfg.Temperature == 1) && cfg.TopK == 0 && (cfg.TopP == 0 || cfg.TopP == 1)
	if !cfg.Graph.spec().absorb && !neutral {
		return invalidf("temperature, top-k and top-p act on the token a mask unmasks to; the %T graph has no mask", cfg.Graph)
	}
	return nil
}

// NewSampler validates cfg and allocates the buffers of its runs. The errors
// wrap ErrInvalidConfig.
func NewSampler(cfg Config) (*Sampler, error) {
	if cfg.Graph == nil {
		return nil, invalidf("no graph")
	}
	if err := cfg.Graph.Validate(); err != nil {
		return nil, err
	}
	if cfg.Noise == nil {
		return nil, invalidf("no noise schedule")
	}
	if err := cfg.Noise.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Predictor.valid() {
		return nil, invalidf("unknown predictor %v", cfg.Predictor)
	}
	if err := checkUnmask(cfg); err != nil {
		return nil, err
	}
	if cfg.TimeIndependent && !cfg.Graph.spec().absorb {
		return nil, invalidf("a time-independent network is defined for the absorbing graph only")
	}
	if err := checkAdaptive(cfg); err != nil {
		return nil, err
	}
	fh := cfg.Predictor == FirstHitting
	adaptive := cfg.Predictor.adaptive()
	if fh || adaptive {
		if !cfg.Graph.spec().absorb {
			return nil, invalidf("the %v sampler needs the absorbing graph, not %T", cfg.Predictor, cfg.Graph)
		}
		cfg.Steps, cfg.Denoise = 0, false
	} else if cfg.Steps <= 0 || cfg.Steps > MaxSteps {
		return nil, invalidf("steps = %d, must be in [1, %d]", cfg.Steps, MaxSteps)
	}
	if cfg.EndTime == 0 {
		cfg.EndTime = DefaultEndTime
	}
	if !(cfg.EndTime > 0 && cfg.EndTime < 1) {
		return nil, invalidf("eps = %v, must be in (0, 1)", cfg.EndTime)
	}
	if cfg.Batch <= 0 || cfg.Length <= 0 || cfg.Batch > math.MaxInt32/cfg.Length {
		return nil, invalidf("batch %d × length %d", cfg.Batch, cfg.Length)
	}
	g := cfg.Graph.spec()
	w := cfg.Length
	if cfg.Window < 0 {
		return nil, invalidf("window = %d, must be ≥ 0", cfg.Window)
	}
	if cfg.Window > 0 && cfg.Window < cfg.Length {
		if !g.absorb {
			return nil, invalidf("block-wise sampling needs the absorbing graph, not %T", cfg.Graph)
		}
		if cfg.Overlap < 1 || cfg.Overlap >= cfg.Window {
			return nil, invalidf("overlap = %d, must be in [1, window %d)", cfg.Overlap, cfg.Window)
		}
		w = cfg.Window
	}
	s := &Sampler{
		cfg:      cfg,
		g:        g,
		w:        w,
		x:        make([]int64, cfg.Batch*w),
		sigma:    make([]float32, cfg.Batch),
		cum:      make([]float64, g.n),
		srcs:     make([]*rand.ChaCha8, cfg.Batch),
		rngs:     make([]*rand.Rand, cfg.Batch),
		userTok:  make([]int64, cfg.Length),
		fixedPos: make([]int, 0, w),
		fixedTok: make([]int64, 0, w),
		isFixed:  make([]bool, w),
		starts:   []int{0},
	}
	if w < cfg.Length {
		s.out = make([]int64, cfg.Batch*cfg.Length)
		for a := w - cfg.Overlap; a+w < cfg.Length; a += w - cfg.Overlap {
			s.starts = append(s.starts, a)
		}
		s.starts = append(s.starts, cfg.Length-w)
	}
	if cfg.TimeIndependent {
		s.rowSigma, s.rowMoved = make([]float32, cfg.Batch), make([]bool, cfg.Batch)
		s.subX, s.subSigma, s.subRows = make([]int64, cfg.Batch*w), make([]float32, cfg.Batch), make([]int, 0, cfg.Batch)
	}
	if g.absorb {
		s.unmask = newUnmaskFilter(cfg.Temperature, cfg.TopK, cfg.TopP, int(g.mask))
	}
	if g.absorb {
		s.want = make([]int32, 0, cfg.Batch*w)
	}
	switch {
	case fh:
		s.pending = make([]int32, cfg.Batch*w)
		s.p = make([]float64, cfg.Batch)
		s.picks = make([]int, cfg.Batch)
	case adaptive:
		s.pending = make([]int32, cfg.Batch*w)
		s.left = make([]int, cfg.Batch)
		s.vals, s.order, s.take, s.near = make([]float64, w), make([]int32, w), make([]bool, w), make([]bool, w)
		if s.subX == nil {
			s.subX, s.subSigma, s.subRows = make([]int64, cfg.Batch*w), make([]float32, cfg.Batch), make([]int, 0, cfg.Batch)
		}
	default:
		s.grid = linspace(1, cfg.EndTime, cfg.Steps+1)
		s.dt = (1 - cfg.EndTime) / float64(cfg.Steps)
	}
	for b := range s.srcs {
		s.srcs[b] = rand.NewChaCha8(rowKey(cfg.Seed, b))
		s.rngs[b] = rand.New(s.srcs[b])
	}
	if err := s.compileFixed(cfg.Fixed); err != nil {
		return nil, err
	}
	for k := range s.starts {
		s.setBlock(k)
		if fh || adaptive {
			free := s.w - s.countFixed()
			s.total += free
			s.blockFree = append(s.blockFree, free)
		} else {
			s.total += cfg.Steps + btoi(cfg.Denoise)
		}
	}
	return s, nil
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// countFixed returns the number of the block's positions that do not move.
func (s *Sampler) countFixed() int {
	n := 0
	for _, f := range s.isFixed {
		n += btoi(f)
	}
	return n
}

// compileFixed checks the spans and records the token each pins.
func (s *Sampler) compileFixed(spans []Span) error {
	limit := int64(s.g.n)
	if s.g.absorb {
		limit = s.g.mask
	}
	for i := range s.userTok {
		s.userTok[i] = -1
	}
	for k, sp := range spans {
		if sp.Start < 0 || sp.Start > s.cfg.Length || len(sp.Tokens) > s.cfg.Length-sp.Start {
			return invalidf("fixed span %d (start %d, %d tokens) outside length %d", k, sp.Start, len(sp.Tokens), s.cfg.Length)
		}
		for i, tok := range sp.Tokens {
			pos := sp.Start + i
			if tok < 0 || tok >= limit {
				return invalidf("fixed token %d at position %d outside [0, %d)", tok, pos, limit)
			}
			if s.userTok[pos] >= 0 {
				return invalidf("fixed spans overlap at position %d", pos)
			}
			s.userTok[pos] = tok
		}
	}
	return nil
}

// setBlock makes block k current: its first position, the steps before it,
// and which of its positions are fixed (pinned by Config.Fixed, or generated
// by the blocks before it).
func (s *Sampler) setBlock(k int) {
	s.a, s.blk = s.starts[k], k
	frontier := 0 // positions below it were generated by earlier blocks
	if k > 0 {
		frontier = s.starts[k-1] + s.w
	}
	s.fixedPos, s.fixedTok = s.fixedPos[:0], s.fixedTok[:0]
	for i := range s.isFixed {
		tok := s.userTok[s.a+i]
		s.isFixed[i] = tok >= 0 || s.a+i < frontier
		if tok >= 0 {
			s.fixedPos = append(s.fixedPos, i)
			s.fixedTok = append(s.fixedTok, tok)
		}
	}
}

// Run samples Batch sequences and returns their Batch*Length tokens,
// row-major, in a new slice. It starts from the graph's limit (all masks, or
// uniformly random tokens), takes Steps predictor steps down the time grid,
// then the denoiser if Config.Denoise is set, imposing Config.Fixed before
// every step and on the output, exactly as the reference's pc_sampler with a
// projection. score is called once per step (not at all for the None
// predictor) with σ(t) as float32. With FirstHitting it is called once per
// free position, each row at the σ of its own next unmasking.
//
// Errors: ctx's error (wrapped) when ctx is done between steps; the
// ScoreFunc's error (wrapped); a *ScoreError (ErrNonFinite, ErrScoreShape) when
// a score is unusable; the Progress callback's error (wrapped).
func (s *Sampler) Run(ctx context.Context, score ScoreFunc) ([]int64, error) {
	if score == nil && (s.cfg.Predictor != None || s.cfg.Denoise) {
		return nil, invalidf("nil score function")
	}
	s.base = 0
	for i := range s.out {
		s.out[i] = s.g.mask
	}
	for k := range s.starts {
		s.setBlock(k)
		s.start(k == 0)
		s.cached, s.last = false, Scores{}
		clear(s.rowMoved)
		if err := s.runBlock(ctx, score); err != nil {
			return nil, err
		}
		s.store()
		switch {
		case s.cfg.Predictor == FirstHitting:
			s.base += s.w - s.countFixed()
		case s.cfg.Predictor.adaptive():
			s.base += s.calls
		default:
			s.base += s.cfg.Steps + btoi(s.cfg.Denoise)
		}
	}
	if s.out != nil {
		return slices.Clone(s.out), nil
	}
	return slices.Clone(s.x), nil
}

// runBlock runs the predictor over the current block.
func (s *Sampler) runBlock(ctx context.Context, score ScoreFunc) error {
	switch {
	case s.cfg.Predictor == FirstHitting:
		return s.runFirstHitting(ctx, score)
	case s.cfg.Predictor.adaptive():
		return s.runAdaptive(ctx, score)
	}
	for k := range s.cfg.Steps {
		if err := s.step(ctx, score, k); err != nil {
			return err
		}
		if err := s.report(k+1, s.grid[k+1]); err != nil {
			return err
		}
	}
	if s.cfg.Denoise {
		if err := s.denoise(ctx, score); err != nil {
			return err
		}
		if err := s.report(s.cfg.Steps+1, 0); err != nil {
			return err
		}
	}
	return nil
}

// store copies the block's tokens into the whole sequences (with blocks).
func (s *Sampler) store() {
	if s.out == nil {
		return
	}
	L, w := s.cfg.Length, s.w
	for b := range s.cfg.Batch {
		copy(s.out[b*L+s.a:b*L+s.a+w], s.x[b*w:(b+1)*w])
	}
}

// start sets x to the graph's limit, projected, keeping the positions that
// earlier blocks generated; first reseeds the row streams (each row's stream
// runs on through the blocks).
func (s *Sampler) start(first bool) {
	L, w := s.cfg.Length, s.w
	for b, src := range s.srcs {
		if first {
			src.Seed(rowKey(s.cfg.Seed, b))
		}
		row := s.x[b*w : (b+1)*w]
		if s.g.absorb {
			for i := range row {
				row[i] = s.g.mask
				if s.isFixed[i] && s.out != nil {
					row[i] = s.out[b*L+s.a+i]
				}
			}
			continue
		}
		r := s.rngs[b]
		for i := range row {
			row[i] = int64(r.Uint64N(uint64(s.g.n)))
		}
	}
	s.project()
}

// project imposes the fixed tokens on every row. (The positions an earlier
// block generated need nothing: on the absorbing graph a token never moves.)
func (s *Sampler) project() {
	L := s.w
	for b := range s.cfg.Batch {
		row := s.x[b*L : (b+1)*L]
		for k, pos := range s.fixedPos {
			row[pos] = s.fixedTok[k]
		}
	}
}

// step takes predictor step k (0-based) from t_k to t_k - Δt and projects.
func (s *Sampler) step(ctx context.Context, score ScoreFunc, k int) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("diffusion: before step %d: %w", s.base+k+1, err)
	}
	if s.cfg.Predictor == None {
		return nil
	}
	t := s.grid[k]
	sigma := s.cfg.Noise.Total(t)
	var m stepMath
	if s.cfg.Predictor == Euler {
		m = newEulerMath(s.g, s.dt*s.cfg.Noise.Rate(t))
	} else {
		m = newAnalyticMath(s.g, sigma-s.cfg.Noise.Total(t-s.dt), false)
	}
	m.unmask = s.unmask
	return s.apply(ctx, score, k+1, sigma, &m)
}

// denoise takes the denoising step at t = EndTime and projects.
func (s *Sampler) denoise(ctx context.Context, score ScoreFunc) error {
	idx := s.base + s.cfg.Steps + 1
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("diffusion: before step %d (denoiser): %w", idx, err)
	}
	sigma := s.cfg.Noise.Total(s.cfg.EndTime)
	m := newAnalyticMath(s.g, sigma, true)
	m.unmask = s.unmask
	return s.apply(ctx, score, idx-s.base, sigma, &m)
}

// apply evaluates the score at sigma, moves every free position with m and
// projects. idx is the 1-based step index within the block, for errors.
func (s *Sampler) apply(ctx context.Context, score ScoreFunc, idx int, sigma float64, m *stepMath) error {
	idx += s.base
	B, L := s.cfg.Batch, s.w
	for b := range s.sigma {
		s.sigma[b] = float32(sigma)
	}
	// A time-independent network's output for a row whose tokens have not
	// moved since it was computed is still that row's output, but for the
	// scale_by_sigma term: rows that moved are recomputed (all of them in
	// one call when every row moved), the others reused.
	moved := s.subRows[:0]
	if s.cfg.TimeIndependent && s.cached {
		for b, m := range s.rowMoved {
			if m {
				moved = append(moved, b)
			}
		}
	}
	sc := s.last
	switch {
	case !s.cfg.TimeIndependent || !s.cached || len(moved) == B:
		var err error
		sc, err = s.score(ctx, score, B, L, s.masked())
		if err != nil {
			return fmt.Errorf("diffusion: score at step %d: %w", idx, err)
		}
		if err := sc.checkRows(B, L, s.g.n, s.want); err != nil {
			return &ScoreError{Step: idx, Detail: err.Error(), Err: ErrScoreShape}
		}
		if s.cfg.TimeIndependent {
			s.last, s.cached = sc, true
			copy(s.rowSigma, s.sigma)
		}
	case len(moved) > 0:
		if err := s.recompute(ctx, score, moved, idx); err != nil {
			return err
		}
		sc = s.last
	}
	clear(s.rowMoved)
	for b := range B {
		r := s.rngs[b]
		x := s.x[b*L : (b+1)*L]
		// shift turns the row's log scores, computed at rowSigma, into those
		// at sigma (0 for a row computed now)
		shift := 0.0
		if s.cfg.TimeIndependent {
			shift = logExpm1(float64(s.rowSigma[b])) - logExpm1(float64(s.sigma[b]))
		}
		for i, xi := range x {
			moves := !s.isFixed[i] && (!s.g.absorb || xi == s.g.mask)
			k := b*L + i
			if sc.Rows != nil {
				if !moves {
					continue // not asked for
				}
				if k = sc.Slot(b, i); k < 0 {
					return &ScoreError{Step: idx, Row: b, Position: i, Detail: "the output of a masked position is missing", Err: ErrScoreShape}
				}
			}
			lse := float64(sc.LSE[k]) + shift
			if math.IsNaN(lse) || math.IsInf(lse, 0) {
				return &ScoreError{Step: idx, Row: b, Position: i, Value: lse, Detail: "log-sum-exp", Err: ErrNonFinite}
			}
			if !moves {
				continue
			}
			next, fault, ok := m.draw(r, xi, sc.LogScore[k*s.g.n:(k+1)*s.g.n:(k+1)*s.g.n], lse, s.cum)
			if !ok {
				detail := "sum of transition weights"
				if fault.index >= 0 {
					detail = fmt.Sprintf("log score of state %d", fault.index)
				}
				return &ScoreError{Step: idx, Row: b, Position: i, Value: fault.value, Detail: detail, Err: ErrNonFinite}
			}
			if next != xi {
				x[i] = next
				if s.cfg.TimeIndependent {
					s.rowMoved[b] = true
				}
			}
		}
	}
	s.project()
	return nil
}

// masked returns whether the next call may ask for some positions only, and
// lists them in s.want: the masked free positions of the absorbing graph.
// A time-independent batch of more than one row reuses the output of rows
// that did not move and merges the others (recompute), which needs every
// position; so does the uniform graph, where every position moves.
func (s *Sampler) masked() bool {
	s.want = s.want[:0]
	if !s.g.absorb || (s.cfg.TimeIndependent && s.cfg.Batch > 1) {
		return false
	}
	L := s.w
	for b := range s.cfg.Batch {
		for i, xi := range s.x[b*L : (b+1)*L] {
			if xi == s.g.mask && !s.isFixed[i] {
				s.want = append(s.want, int32(b*L+i))
			}
		}
	}
	return true
}

// score evaluates the network on s.x and s.sigma: at the positions s.want
// only when rows is set and score is a RowScoreFunc, else everywhere (and
// s.want is emptied, so that the answer is checked as a full one).
func (s *Sampler) score(ctx context.Context, score ScoreFunc, batch, length int, rows bool) (Scores, error) {
	if rs, ok := score.(RowScoreFunc); ok && rows {
		return rs.ScoreRows(ctx, s.x, s.sigma, batch, length, s.want)
	}
	s.want = s.want[:0]
	return score.Score(ctx, s.x, s.sigma, batch, length)
}

// recompute evaluates the network on the given rows only (those whose tokens
// moved) and merges their output into own, which then holds every row: the
// others keep the output they were computed with, and their σ in rowSigma.
func (s *Sampler) recompute(ctx context.Context, score ScoreFunc, rows []int, idx int) error {
	B, L, N := s.cfg.Batch, s.w, s.g.n
	if len(s.own.LogScore) == 0 || &s.last.LogScore[0] != &s.own.LogScore[0] {
		// last is the ScoreFunc's, about to be overwritten by its next call
		if cap(s.own.LogScore) < B*L*N {
			s.own.LogScore, s.own.LSE = make([]float32, B*L*N), make([]float32, B*L)
		}
		s.own = Scores{Batch: B, Length: L, N: N, LogScore: s.own.LogScore[:B*L*N], LSE: s.own.LSE[:B*L]}
		copy(s.own.LogScore, s.last.LogScore)
		copy(s.own.LSE, s.last.LSE)
		s.last = s.own
	}
	n := len(rows)
	x, sigma := s.subX[:n*L], s.subSigma[:n]
	for k, b := range rows {
		copy(x[k*L:(k+1)*L], s.x[b*L:(b+1)*L])
		sigma[k] = s.sigma[b]
	}
	sub, err := score.Score(ctx, x, sigma, n, L)
	if err != nil {
		return fmt.Errorf("diffusion: score at step %d: %w", idx, err)
	}
	if err := sub.check(n, L, N); err != nil {
		return &ScoreError{Step: idx, Detail: err.Error(), Err: ErrScoreShape}
	}
	for k, b := range rows {
		copy(s.own.LogScore[b*L*N:(b+1)*L*N], sub.LogScore[k*L*N:(k+1)*L*N])
		copy(s.own.LSE[b*L:(b+1)*L], sub.LSE[k*L:(k+1)*L])
		s.rowSigma[b] = s.sigma[b]
	}
	return nil
}

// logExpm1 returns log(e^σ - 1).
func logExpm1(sigma float64) float64 {
	if sigma > 30 {
		return sigma + math.Log1p(-math.Exp(-sigma))
	}
	return math.Log(math.Expm1(sigma))
}

// report calls the Progress callback, if any.
func (s *Sampler) report(idx int, t float64) error {
	if s.cfg.Progress == nil {
		return nil
	}
	idx += s.base
	tokens := s.x
	if s.out != nil {
		s.store()
		tokens = s.out
	}
	err := s.cfg.Progress(Step{Index: idx, Steps: s.total, T: t, Batch: s.cfg.Batch, Length: s.cfg.Length, Tokens: tokens})
	if err != nil {
		return fmt.Errorf("diffusion: stopped by progress callback after step %d: %w", idx, err)
	}
	return nil
}

// linspace returns n evenly spaced points from start to end, computed forward
// from start for the first half and backward from end for the second (like
// torch.linspace's scalar kernel), so that t_0 = start and t_{n-1} = end
// exactly. (The reference builds its grid in float32; ours is float64.)
func linspace(start, end float64, n int) []float64 {
	out := make([]float64, n)
	if n == 1 {
		out[0] = start
		return out
	}
	step := (end - start) / float64(n-1)
	half := n / 2
	for i := range out {
		if i < half {
			out[i] = start + step*float64(i)
		} else {
			out[i] = end - step*float64(n-1-i)
		}
	}
	return out
}

// rowKey is the ChaCha8 seed of row b of a run with the given seed.
func rowKey(seed uint64, row int) [32]byte {
	var k [32]byte
	binary.LittleEndian.PutUint64(k[0:], seed)
	binary.LittleEndian.PutUint64(k[8:], uint64(row))
	copy(k[16:], "sedd-go/diffusn1")
	return k
}

// rowRand returns the random stream of batch row row of a run seeded with
// seed: a math/rand/v2 ChaCha8 generator whose output is the same on every
// platform.
// The Sampler uses it (one uniform per free masked or uniform-graph position
// and step, in position order, plus one per moving position); the likelihood
// evaluation uses it for Corrupt.
func rowRand(seed uint64, row int) *rand.Rand {
	return rand.New(rand.NewChaCha8(rowKey(seed, row)))
}
