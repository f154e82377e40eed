package sdk

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"math"
	"math/rand/v2"
	"time"

	"github.com/sedd-go/sedd/sdk/diffusion"
)

// maxLengthFactor bounds SampleRequest.Length (and EvaluateRequest.Length) to
// this many times the model's trained length.
const maxLengthFactor = 16

// DefaultSteps is the number of sampling steps when a request leaves Steps 0:
// the reference's training-time sampling setting.
const DefaultSteps = 128

// Samplers, the step rules a SampleRequest may name.
const (
	// Analytic is the reference's "analytic" predictor (Tweedie τ-leaping),
	// the default.
	Analytic = "analytic"
	// Euler is the reference's "euler" predictor. For the absorbing graph
	// with log-linear noise it is the same rule as Analytic.
	Euler = "euler"
	// None changes nothing between steps (only the final denoiser samples).
	None = "none"
	// FirstHitting is the exact sampler of the absorbing graph (Zheng et
	// al., arXiv 2409.02908): it draws the time at which the next masked
	// position unmasks and unmasks it, one network evaluation per generated
	// token, with no discretization error. It takes no Steps (one step per
	// free position) and no denoiser (no mask is left).
	FirstHitting = "first-hitting"
	// Confidence is an adaptive sampler of absorbing models (not the
	// reverse process): each network evaluation unmasks every masked
	// position whose most likely token has probability at least Threshold,
	// and at least one, the most confident, so a sample takes fewer
	// evaluations than it has tokens where the network is sure. Its law
	// tends to the model's as Threshold goes to 1 (docs/DESIGN.md). No
	// Steps and no denoiser.
	Confidence = "confidence"
	// EntropyBounded is the other adaptive sampler: each evaluation unmasks
	// masked positions in order of increasing entropy of their token
	// distribution while the entropy of those already taken sums to at most
	// EntropyBudget nats (at least one position). No Steps and no denoiser.
	EntropyBounded = "entropy-bounded"
)

// DefaultThreshold and DefaultEntropyBudget are the knobs of the Confidence
// and EntropyBounded samplers when a request leaves them 0: Fast-dLLM's
// threshold, and the budget that on the shipped model takes about 22 network
// calls per 128-token sample at the generative perplexity of analytic at
// 1024 steps (benchmarks/README.md). A model that is surer of its tokens
// takes fewer calls at either.
const (
	DefaultThreshold     = 0.9
	DefaultEntropyBudget = 30.0
)

// RandomSeed draws a seed for a request that names none: below 2³², so that
// every client can carry it back (a JavaScript number, an int32). The
// command line and the HTTP server draw theirs here and report it.
func RandomSeed() uint64 { return uint64(rand.Uint32()) }

// SampleRequest describes one sampling call. Its zero value is valid: one
// unconditional sample of the model's trained length with the analytic
// sampler, DefaultSteps steps and the final denoiser, seed 0.
type SampleRequest struct {
	// Steps is the number of sampling steps (network evaluations, plus one
	// for the denoiser); 0 means DefaultSteps. It must be 0 with
	// FirstHitting, Confidence and EntropyBounded.
	Steps int
	// Sampler is the step rule: Analytic (also ""), Euler, None,
	// FirstHitting, Confidence or EntropyBounded.
	Sampler string
	// Threshold is the Confidence sampler's probability threshold, in
	// (0, 1]; 0 means DefaultThreshold. Higher is closer to the model's law
	// and takes more network evaluations (1: one position per evaluation).
	// It must be 0 with the other samplers.
	Threshold float64
	// EntropyBudget is the EntropyBounded sampler's budget in nats, > 0; 0
	// means DefaultEntropyBudget. Lower is closer to the model's law and
	// takes more network evaluations. It must be 0 with the other samplers.
	EntropyBudget float64
	// Temperature, TopK and TopP reshape the distribution of the token a
	// masked position unmasks to (absorbing models only), with every sampler
	// and the denoiser: its log-probabilities divided by Temperature, then
	// only the TopK most likely tokens, then only the smallest set of the
	// most likely holding at least TopP of the probability, renormalized
	// each time. When a position unmasks is not changed. They trade the
	// samples' diversity (unigram entropy) for a lower generative
	// perplexity; the samples no longer follow the model.
	//
	// Each value means the same here, on the command line and in both
	// HTTP protocols (ollama's and OpenAI's): Temperature nil is 1 and TopP
	// nil is 1 (the model's own law); Temperature 0 and TopP 0 are their
	// limits, greedy: the most likely token (as TopK 1); TopK 0 is no
	// limit. Temperature must be in [0, 100], TopK ≥ 0, TopP in [0, 1].
	// new(0.7) makes the pointer.
	Temperature *float64
	TopK        int
	TopP        *float64
	// NoDenoise turns off the final denoising step (on in the reference).
	NoDenoise bool
	// EndTime is the last diffusion time of the time grid, in (0, 1); 0
	// means 1e-5, the reference's sampling eps.
	EndTime float64
	// Batch is the number of samples; 0 means 1.
	Batch int
	// Length is the sequence length in tokens; 0 means the trained length.
	// Other lengths up to 16 times the trained one run, with a warning,
	// unless BlockOverlap is set.
	Length int
	// BlockOverlap, when > 0 and Length is above the trained length,
	// generates the sequence semi-autoregressively in blocks of the trained
	// length, each sharing its first BlockOverlap tokens with the previous
	// one, which it takes as they are (the last block ends at Length, so it
	// may share more). Every block is a whole sampling run (Steps steps and
	// the denoiser, or one first-hitting step per new token), so the network
	// only ever sees the length it was trained on. Prefix, Suffix, Spans and
	// a Template's text are pinned in whichever blocks hold them; a block
	// sees nothing of the blocks after it. It must be below the trained
	// length; absorbing models only. Ignored when Length is at most the
	// trained length.
	BlockOverlap int
	// NoCache turns off the reuse of network outputs on a time-independent
	// model (Info.TimeIndependent): every step then calls the network, as
	// with other models. The tokens are the same either way; it is there to
	// measure what the reuse saves.
	NoCache bool
	// Seed makes the run reproducible: the same seed and request give the
	// same tokens, bit for bit, on the CPU.
	Seed uint64
	// Prefix and Suffix are texts pinned at the start and at the end of every
	// sample; Spans pins further text or tokens anywhere.
	Prefix, Suffix string
	Spans          []Span
	// Template makes the call an infill: text with spans to generate,
	// "[MASK]" for one token and "[MASK:n]" for n, anywhere; every literal
	// piece keeps its tokens at its place. The template occupies the first
	// positions of a sequence of Length tokens (0: the trained length); when
	// it is shorter, the end-of-text token (if the tokenizer has one) is
	// pinned right after it and the remaining positions are generated and
	// discarded, so the samples hold exactly the template's positions.
	// Prefix, Suffix and Spans must be empty with a template.
	Template string
}

// Span pins tokens at positions Pos, Pos+1, … of every sample: Text,
// tokenized, or Tokens as they are. Exactly one of them must be set. Spans
// must not overlap each other, the prefix or the suffix.
type Span struct {
	Pos    int
	Text   string
	Tokens []int64
}

// SampleResult is the outcome of Model.Sample.
type SampleResult struct {
	Samples []Sequence
	// Steps is the number of sampling steps (of each block, with blocks;
	// with FirstHitting the tokens generated; with Confidence and
	// EntropyBounded the network calls); NetworkCalls the number of
	// network evaluations made (the steps, plus one for the denoiser, per
	// block, less the steps a time-independent model skipped); NetworkRows
	// the sequences those calls evaluated, summed: Batch × NetworkCalls,
	// less where a time-independent model recomputed only the rows that
	// moved, so NetworkRows / Batch is the network's cost per sample.
	Steps, NetworkCalls, NetworkRows int
	// BlockOverlap is the overlap of the blocks the run sampled in, and 0
	// when it sampled the whole length at once.
	BlockOverlap int
	// Sampler, Denoise, EndTime, Seed, Length, Temperature, TopK, TopP,
	// Threshold and EntropyBudget are the settings the run used, defaults
	// filled in (Temperature and TopP 1 when the request left them nil; 0
	// when it asked for greedy; Threshold and EntropyBudget only with their
	// sampler).
	Sampler       string
	Threshold     float64
	EntropyBudget float64
	Denoise       bool
	EndTime       float64
	Seed          uint64
	Length        int
	Temperature   float64
	TopK          int
	TopP          float64
	// Elapsed is the wall time of the whole call; Network is the part of it
	// spent in the score network's forward passes (ONNX Runtime), so that
	// Elapsed − Network is this SDK's own cost.
	Elapsed, Network time.Duration
}

// Sequence is one generated sample: its token ids and its text.
type Sequence struct {
	Tokens []int64
	Text   string
}

// Step is what Model.Stream yields after each sampling step.
type Step struct {
	// Index counts the steps done, from 1 to Steps (the denoiser, when on,
	// is the last step). With Confidence and EntropyBounded a step is a
	// network call and Steps is an upper bound (each call unmasks at least
	// one position per sample) that shrinks as the run goes and equals
	// Index at the last step.
	Index, Steps int
	// T is the diffusion time the tokens now belong to (0 after denoising).
	T float64
	// Tokens holds the current tokens of each sample (masks are Info's
	// MaskID; Model.Decode renders them). The slices are reused: they are
	// valid until the loop body returns and must not be modified.
	Tokens [][]int64
	// Masked counts the positions still masked (absorbing graph), over all
	// samples.
	Masked int
	// Result is set on the last step only: the outcome of the run, as
	// Sample returns it.
	Result *SampleResult
}

// Sample draws req.Batch sequences from the model with the reverse diffusion
// of SEDD.md, conditioned on the request's prefix, suffix, spans or infill
// template. It honours ctx inside a network evaluation: a cancelled context
// stops the run within one forward pass and leaves the Model usable.
// Errors: ErrBadRequest (checked before anything runs), ErrBadModel (the
// network returned NaN or infinite scores), ErrClosed, and ctx's.
func (m *Model) Sample(ctx context.Context, req SampleRequest) (_ *SampleResult, err error) {
	defer observe(&err)
	r, err := m.resolve(req)
	if err != nil {
		return nil, err
	}
	return m.run(ctx, r, nil)
}

// Stream is Sample step by step: it yields the state of the samples after
// every step, the last one carrying the result. Breaking out of the loop
// stops the run (and releases what it holds) before the next network
// evaluation. An error is yielded once, as the last value.
//
//	for step, err := range m.Stream(ctx, req) {
//		if err != nil {
//			return err
//		}
//		fmt.Println(step.Index, m.Decode(step.Tokens[0], "_"))
//	}
//
// The loop body runs on the calling goroutine, inside the run; it may call
// other methods of the Model, Close included.
func (m *Model) Stream(ctx context.Context, req SampleRequest) iter.Seq2[Step, error] {
	return func(yieldStep func(Step, error) bool) {
		yield := func(s Step, err error) bool {
			observe(&err)
			return yieldStep(s, err)
		}
		r, err := m.resolve(req)
		if err != nil {
			yield(Step{}, err)
			return
		}
		broke := false
		res, last, err := m.stream(ctx, r, func(s Step) bool {
			if !yield(s, nil) {
				broke = true
				return false
			}
			return true
		})
		switch {
		case broke:
		case err != nil:
			yield(Step{}, err)
		default:
			last.Result = res
			yield(last, nil)
		}
	}
}

// errStopped stops a run whose Stream loop was left.
var errStopped = errors.New("stream stopped")

// resolved is a validated request.
type resolved struct {
	cfg          diffusion.Config
	sampler      string
	blockOverlap int
	keep         [2]int // only tokens [keep[0], keep[1]) of each row are returned
	// temperature and topP are the request's, defaults filled in.
	temperature, topP float64
}

// resolve validates req and turns it into a sampler configuration: every
// check runs here, before anything is allocated for the run.
func (m *Model) resolve(req SampleRequest) (*resolved, error) {
	steps := req.Steps
	stepless := req.Sampler == FirstHitting || req.Sampler == Confidence || req.Sampler == EntropyBounded
	switch {
	case steps == 0 && !stepless:
		steps = DefaultSteps
	case steps != 0 && req.Sampler == FirstHitting:
		return nil, fieldError("Steps", "must be 0 with the first-hitting sampler, which takes one step per masked position; got %d", steps)
	case steps != 0 && stepless:
		return nil, fieldError("Steps", "must be 0 with the %s sampler, whose number of steps follows from its knob (Threshold, EntropyBudget); got %d", req.Sampler, steps)
	case steps < 0:
		return nil, fieldError("Steps", "must be ≥ 1, got %d", steps)
	case steps > diffusion.MaxSteps:
		return nil, fieldError("Steps", "must be ≤ %d, got %d", diffusion.MaxSteps, steps)
	}
	var pred diffusion.Predictor
	name := req.Sampler
	switch name {
	case "", Analytic:
		pred, name = diffusion.Analytic, Analytic
	case Euler:
		pred = diffusion.Euler
	case None:
		pred = diffusion.None
	case FirstHitting:
		if _, ok := m.graph.(diffusion.Absorbing); !ok {
			return nil, fieldError("Sampler", "the first-hitting sampler needs an absorbing model; this one's graph is uniform")
		}
		pred = diffusion.FirstHitting
	case Confidence, EntropyBounded:
		if _, ok := m.graph.(diffusion.Absorbing); !ok {
			return nil, fieldError("Sampler", "the %s sampler needs an absorbing model; this one's graph is uniform", name)
		}
		pred = diffusion.Confidence
		if name == EntropyBounded {
			pred = diffusion.EntropyBounded
		}
	default:
		return nil, fieldError("Sampler", "%q is not a sampler: use %s, %s, %s, %s, %s or %s", req.Sampler, Analytic, Euler, None, FirstHitting, Confidence, EntropyBounded)
	}
	threshold, budget, err := adaptiveKnobs(req, name)
	if err != nil {
		return nil, err
	}
	if err := m.checkUnmask(req); err != nil {
		return nil, err
	}
	end := req.EndTime
	if end == 0 {
		end = diffusion.DefaultEndTime
	}
	if !(end > 0 && end < 1) || math.IsNaN(end) {
		return nil, fieldError("EndTime", "must be in (0, 1), got %g", req.EndTime)
	}
	batch := req.Batch
	switch {
	case batch == 0:
		batch = 1
	case batch < 0:
		return nil, fieldError("Batch", "must be ≥ 1, got %d", batch)
	}
	length := req.Length
	switch {
	case length == 0:
		length = m.man.Length
	case length < 0:
		return nil, fieldError("Length", "must be ≥ 1, got %d", length)
	}
	window := length
	switch {
	case req.BlockOverlap < 0:
		return nil, fieldError("BlockOverlap", "must be ≥ 1 (0: no blocks), got %d", req.BlockOverlap)
	case req.BlockOverlap > 0 && length > m.man.Length:
		if _, ok := m.graph.(diffusion.Absorbing); !ok {
			return nil, fieldError("BlockOverlap", "needs an absorbing model; this one's graph is uniform")
		}
		if req.BlockOverlap >= m.man.Length {
			return nil, fieldError("BlockOverlap", "must be below the trained length %d, got %d", m.man.Length, req.BlockOverlap)
		}
		window = m.man.Length
	}
	if err := m.checkShape(batch, length, window, pred); err != nil {
		return nil, err
	}
	r := &resolved{sampler: name, keep: [2]int{0, length}}
	spans, keep, err := m.spans(req, length)
	if err != nil {
		return nil, err
	}
	if keep > 0 {
		r.keep[1] = keep
	}
	switch {
	case window < length:
		r.blockOverlap = req.BlockOverlap
	case length > m.man.Length:
		m.log.Warn("sequence length differs from the trained length; quality may suffer (BlockOverlap, --block-overlap, samples in blocks of the trained length)", "length", length, "trained", m.man.Length)
	case length != m.man.Length:
		m.log.Warn("sequence length differs from the trained length; quality may suffer", "length", length, "trained", m.man.Length)
	}
	r.cfg = diffusion.Config{
		Graph: m.graph, Noise: m.noise, Predictor: pred, Steps: steps, EndTime: end,
		Denoise: !req.NoDenoise && !stepless, Batch: batch, Length: length, Seed: req.Seed, Fixed: spans,
		Threshold: threshold, EntropyBudget: budget,
	}
	r.cfg.Temperature, r.cfg.TopK, r.cfg.TopP = unmaskConfig(req)
	r.temperature, r.topP = 1, 1
	if req.Temperature != nil {
		r.temperature = *req.Temperature
	}
	if req.TopP != nil {
		r.topP = *req.TopP
	}
	if stepless {
		r.cfg.Steps = 0
	}
	if window < length {
		r.cfg.Window, r.cfg.Overlap = window, req.BlockOverlap
	}
	r.cfg.TimeIndependent = m.man.Model.TimeIndependent && !req.NoCache
	return r, nil
}

// adaptiveKnobs validates the request's Threshold and EntropyBudget for the
// sampler name and returns them with defaults filled in.
func adaptiveKnobs(req SampleRequest, name string) (threshold, budget float64, err error) {
	switch {
	case math.IsNaN(req.Threshold) || req.Threshold < 0 || req.Threshold > 1:
		return 0, 0, fieldError("Threshold", "must be in (0, 1] (0: the default, %g), got %g", DefaultThreshold, req.Threshold)
	case req.Threshold != 0 && name != Confidence:
		return 0, 0, fieldError("Threshold", "is a setting of the %s sampler, not of %s; leave it 0", Confidence, name)
	case math.IsNaN(req.EntropyBudget) || req.EntropyBudget < 0 || math.IsInf(req.EntropyBudget, 1):
		return 0, 0, fieldError("EntropyBudget", "must be a finite number of nats > 0 (0: the default, %g), got %g", DefaultEntropyBudget, req.EntropyBudget)
	case req.EntropyBudget != 0 && name != EntropyBounded:
		return 0, 0, fieldError("EntropyBudget", "is a setting of the %s sampler, not of %s; leave it 0", EntropyBounded, name)
	}
	switch name {
	case Confidence:
		threshold = req.Threshold
		if threshold == 0 {
			threshold = DefaultThreshold
		}
	case EntropyBounded:
		budget = req.EntropyBudget
		if budget == 0 {
			budget = DefaultEntropyBudget
		}
	}
	return threshold, budget, nil
}

// maxTemperature bounds SampleRequest.Temperature: far above it every token
// is equally likely, which a caller asks for by mistake.
const maxTemperature = 100

// unmaskConfig turns the request's Temperature, TopK and TopP into the
// sampler's, where 0 leaves a setting off: greedy (a Temperature or TopP of
// 0) is TopK 1.
func unmaskConfig(req SampleRequest) (temperature float64, topK int, topP float64) {
	topK = req.TopK
	if req.Temperature != nil {
		temperature = *req.Temperature
	}
	if req.TopP != nil {
		topP = *req.TopP
	}
	if greedy(req) {
		return 0, 1, 0
	}
	return temperature, topK, topP
}

// greedy reports whether req asks for the most likely token.
func greedy(req SampleRequest) bool {
	return (req.Temperature != nil && *req.Temperature == 0) || (req.TopP != nil && *req.TopP == 0)
}

// checkUnmask validates the request's Temperature, TopK and TopP.
func (m *Model) checkUnmask(req SampleRequest) error {
	if t := req.Temperature; t != nil && (math.IsNaN(*t) || *t < 0 || *t > maxTemperature) {
		return fieldError("Temperature", "must be in [0, %d] (0: greedy; leave it out for 1, the model's law), got %g", maxTemperature, *t)
	}
	if req.TopK < 0 {
		return fieldError("TopK", "must be ≥ 1 (0: no limit), got %d", req.TopK)
	}
	if p := req.TopP; p != nil && (math.IsNaN(*p) || *p < 0 || *p > 1) {
		return fieldError("TopP", "must be in [0, 1] (0: greedy; leave it out for 1, no limit), got %g", *p)
	}
	if _, ok := m.graph.(diffusion.Absorbing); ok {
		return nil
	}
	field := ""
	switch {
	case req.Temperature != nil && *req.Temperature != 1:
		field = "Temperature"
	case req.TopK != 0:
		field = "TopK"
	case req.TopP != nil && *req.TopP != 1:
		field = "TopP"
	}
	if field != "" {
		return fieldError(field, "acts on the token a mask unmasks to; this model's graph is uniform and has no mask")
	}
	return nil
}

// checkShape bounds batch × length before anything is allocated: the length
// to maxLengthFactor times the trained one, and the memory the request will
// need (requestBytes, for the window the network sees and the predictor) to
// the Model's limit.
func (m *Model) checkShape(batch, length, window int, pred diffusion.Predictor) error {
	if maxLen := maxLengthFactor * m.man.Length; length > maxLen {
		why := "the network's attention grows with its square"
		if window < length {
			why = "that many blocks would take too long"
		}
		return fmt.Errorf("%w: length %d is more than %d times the trained length %d; %s",
			ErrBadRequest, length, maxLengthFactor, m.man.Length, why)
	}
	if batch > math.MaxInt32/length {
		return fmt.Errorf("%w: batch %d × length %d is more than 2^31 tokens", ErrBadRequest, batch, length)
	}
	if need := m.requestBytes(batch, window, pred); need > m.opts.MemoryLimit {
		return &MemoryError{Need: need, Limit: m.opts.MemoryLimit, Batch: batch, Length: window}
	}
	return nil
}

// requestBytes estimates the memory one network evaluation of batch rows of
// length tokens needs, on top of the loaded model: ONNX Runtime's output and
// intermediate tensors and the SDK's buffers. Measured with ONNX Runtime 1.30
// on the CPU (peak resident memory of `sedd sample --steps 1`, shipped model,
// batch 1–256 × length 128–2048), a forward pass peaks at about 6 to 6.3 times
// its log_score output (the graph holds several vocabulary-sized tensors: the
// head's logits, the shifted scores, the exponentials of the log-sum-exp),
// plus about 2.3 times the attention scores (heads × length² per row) and a
// few hidden-state tensors; the estimate takes 6.5, 3 and 8 of these, so it
// lies 1.2–1.4 times above what was measured. A time-independent model's
// batch adds one output's worth (see diffusion.Config.TimeIndependent) for
// the step-grid samplers, which keep a copy to reuse; the first-hitting and
// adaptive samplers keep none (a token moves at every call), and the
// adaptive ones hold 8 + 4 + 1 bytes of scratch per position of a row, plus
// a copy of the tokens (a call evaluates only the rows with masks left). It
// saturates instead of overflowing.
func (m *Model) requestBytes(batch, length int, pred diffusion.Predictor) int64 {
	const f32 = 4
	heads, hidden := int64(m.man.Model.NHeads), int64(m.man.Model.HiddenSize)
	if heads <= 0 {
		heads = 16 // not recorded: as large as published SEDD models
	}
	if hidden <= 0 {
		hidden = 1024
	}
	b, l, n := float64(batch), float64(length), float64(m.man.N())
	out := b * l * n * f32
	attention := b * float64(heads) * l * l * f32
	states := b * l * float64(hidden) * f32
	need := 6.5*out + 3*attention + 8*states + b*l*(8+8+4) // inputs, tokens, LSE
	stepless := pred == diffusion.FirstHitting || pred == diffusion.Confidence || pred == diffusion.EntropyBounded
	if m.man.Model.TimeIndependent && batch > 1 && !stepless {
		need += out // the sampler's copy when it recomputes only the rows that moved
	}
	if pred == diffusion.Confidence || pred == diffusion.EntropyBounded {
		need += l*(8+4+1) + b*l*(4+8) // per-row scratch; pending positions and the tokens' copy
	}
	if need >= math.MaxInt64/2 {
		return math.MaxInt64 / 2
	}
	return int64(need)
}

// MemoryError is the ErrBadRequest of a request that would need more memory
// than the Model's limit (WithMemoryLimit): Need is the estimate in bytes for
// Batch rows of Length tokens.
type MemoryError struct {
	Need, Limit   int64
	Batch, Length int
}

func (e *MemoryError) Error() string {
	return fmt.Sprintf("%v: batch %d × length %d needs about %s of memory, more than the limit of %s; lower the batch or the length, or raise the limit (WithMemoryLimit)",
		ErrBadRequest, e.Batch, e.Length, formatBytes(e.Need), formatBytes(e.Limit))
}

// Is makes errors.Is(err, ErrBadRequest) true.
func (e *MemoryError) Is(target error) bool { return target == ErrBadRequest }

// formatBytes renders n in MiB or GiB with one decimal.
func formatBytes(n int64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}

// spans returns the fixed spans of req in a sequence of length tokens, and
// for an infill template the number of leading positions the samples keep.
func (m *Model) spans(req SampleRequest, length int) ([]diffusion.Span, int, error) {
	if req.Template != "" {
		if req.Prefix != "" || req.Suffix != "" || len(req.Spans) > 0 {
			return nil, 0, fmt.Errorf("%w: an infill request takes its fixed text from the template; leave Prefix, Suffix and Spans empty", ErrBadRequest)
		}
		return m.templateSpans(req.Template, req.Length, length)
	}
	var spans []diffusion.Span
	var used int
	if req.Prefix != "" {
		ids, err := m.encode("prefix", req.Prefix)
		if err != nil {
			return nil, 0, err
		}
		spans = append(spans, diffusion.Span{Start: 0, Tokens: ids})
		used += len(ids)
	}
	if used > length {
		return nil, 0, fmt.Errorf("%w: the prefix takes %d tokens but the length is %d; shorten it or raise the length", ErrBadRequest, used, length)
	}
	if req.Suffix != "" {
		ids, err := m.encode("suffix", req.Suffix)
		if err != nil {
			return nil, 0, err
		}
		used += len(ids)
		if used > length {
			return nil, 0, fmt.Errorf("%w: prefix and suffix take %d tokens but the length is %d; shorten them or raise the length", ErrBadRequest, used, length)
		}
		spans = append(spans, diffusion.Span{Start: length - len(ids), Tokens: ids})
	}
	for k, f := range req.Spans {
		var ids []int64
		switch {
		case f.Text == "" && len(f.Tokens) == 0:
			return nil, 0, fmt.Errorf("%w: span %d has neither Text nor Tokens", ErrBadRequest, k)
		case f.Text != "" && len(f.Tokens) > 0:
			return nil, 0, fmt.Errorf("%w: span %d has both Text and Tokens; set one of them", ErrBadRequest, k)
		case f.Text != "":
			var err error
			if ids, err = m.encode(fmt.Sprintf("span %d", k), f.Text); err != nil {
				return nil, 0, err
			}
		default:
			for _, t := range f.Tokens {
				if t < 0 || t >= int64(m.man.Tokens) {
					return nil, 0, fmt.Errorf("%w: span %d: token %d is outside [0, %d)", ErrBadRequest, k, t, m.man.Tokens)
				}
			}
			ids = f.Tokens
		}
		if f.Pos < 0 || f.Pos > length-len(ids) {
			return nil, 0, fmt.Errorf("%w: span %d of %d tokens at position %d does not fit in the length %d", ErrBadRequest, k, len(ids), f.Pos, length)
		}
		spans = append(spans, diffusion.Span{Start: f.Pos, Tokens: ids})
	}
	return spans, 0, nil
}

// templateSpans turns an infill template into fixed spans: literal text
// pinned where it stands, mask spans left free, and the end-of-text token
// right after the template when it is shorter than the sequence.
// requested is the request's Length (0: none).
func (m *Model) templateSpans(template string, requested, length int) ([]diffusion.Span, int, error) {
	parts, err := parseTemplate(template)
	if err != nil {
		return nil, 0, err
	}
	var spans []diffusion.Span
	pos, masks := 0, 0
	for _, p := range parts {
		if p.Masks > 0 {
			pos += p.Masks
			masks += p.Masks
			continue
		}
		ids, err := m.encode("template text", p.Text)
		if err != nil {
			return nil, 0, err
		}
		if len(ids) > 0 { // text a normalizer removes entirely pins nothing
			spans = append(spans, diffusion.Span{Start: pos, Tokens: ids})
			pos += len(ids)
		}
		if pos > length {
			break
		}
	}
	if pos > length {
		if requested == 0 {
			return nil, 0, fmt.Errorf("%w: the template is at least %d tokens but the model's length is %d; shorten it (or pass a longer length, which the model was not trained on)", ErrBadRequest, pos, length)
		}
		return nil, 0, fmt.Errorf("%w: the template is at least %d tokens but the length is %d", ErrBadRequest, pos, length)
	}
	if masks == 0 {
		m.log.Warn("the infill template has no [MASK] span; nothing to generate")
	}
	if eos := m.man.Tokenizer.EOSID; pos < length && eos >= 0 && eos < m.man.Tokens {
		spans = append(spans, diffusion.Span{Start: pos, Tokens: []int64{int64(eos)}})
	}
	return spans, pos, nil
}

// scoreCounter is a call's score function with the forward passes' time and
// a counter added up, and the Model's closed flag checked before each.
type scoreCounter struct {
	m       *Model
	sc      callScorer
	elapsed time.Duration
	calls   int
	rows    int
}

func (t *scoreCounter) Score(ctx context.Context, x []int64, sigma []float32, batch, length int) (diffusion.Scores, error) {
	if t.m.closed.Load() {
		return diffusion.Scores{}, ErrClosed
	}
	s, d, err := t.sc.score(ctx, x, sigma, batch, length)
	t.elapsed += d
	t.calls++
	t.rows += batch
	return s, err
}

// ScoreRows is Score with the output head asked for the given positions only
// (diffusion.RowScoreFunc); the Model's network computes them alone when its
// graph takes the rows input.
func (t *scoreCounter) ScoreRows(ctx context.Context, x []int64, sigma []float32, batch, length int, rows []int32) (diffusion.Scores, error) {
	if t.m.closed.Load() {
		return diffusion.Scores{}, ErrClosed
	}
	s, d, err := t.sc.scoreRows(ctx, x, sigma, batch, length, rows)
	t.elapsed += d
	t.calls++
	t.rows += batch
	return s, err
}

// run samples r; onStep, when not nil, sees every step.
func (m *Model) run(ctx context.Context, r *resolved, onStep func(Step) bool) (*SampleResult, error) {
	res, _, err := m.stream(ctx, r, onStep)
	return res, err
}

// stream samples r, calling onStep after every step but the last (whose
// state it returns), and stopping when onStep returns false.
func (m *Model) stream(ctx context.Context, r *resolved, onStep func(Step) bool) (*SampleResult, Step, error) {
	if err := m.enter(); err != nil {
		return nil, Step{}, err
	}
	defer m.leave()
	start := time.Now()
	cfg := r.cfg
	var last Step
	if onStep != nil {
		mask, _ := m.man.MaskID()
		var views [][]int64
		cfg.Progress = func(s diffusion.Step) error {
			if views == nil {
				views = make([][]int64, s.Batch)
				for b := range views {
					row := s.Tokens[b*s.Length : (b+1)*s.Length]
					views[b] = row[r.keep[0]:r.keep[1]:r.keep[1]]
				}
			}
			masked := 0
			for _, v := range views {
				for _, t := range v {
					if t == int64(mask) {
						masked++
					}
				}
			}
			st := Step{Index: s.Index, Steps: s.Steps, T: s.T, Tokens: views, Masked: masked}
			if s.Index == s.Steps {
				last = st
				return nil
			}
			if !onStep(st) {
				return errStopped
			}
			return nil
		}
	}
	sampler, err := diffusion.NewSampler(cfg)
	if err != nil {
		return nil, Step{}, err
	}
	sc, err := m.scorer()
	if err != nil {
		return nil, Step{}, err
	}
	defer sc.release()
	counted := &scoreCounter{m: m, sc: sc}
	tokens, err := sampler.Run(ctx, counted)
	if err != nil {
		if se := (*diffusion.ScoreError)(nil); errors.As(err, &se) {
			err = fmt.Errorf("%w (the network's output cannot be sampled from; check the export with Verify, or sedd verify)", err)
		}
		return nil, Step{}, err
	}
	res := &SampleResult{
		Steps: cfg.Steps, NetworkCalls: counted.calls, NetworkRows: counted.rows, Sampler: r.sampler, Denoise: cfg.Denoise,
		EndTime: cfg.EndTime, Seed: cfg.Seed, Length: r.keep[1] - r.keep[0], Network: counted.elapsed,
		Temperature: r.temperature, TopK: cfg.TopK, TopP: r.topP, BlockOverlap: r.blockOverlap,
	}
	if cfg.Predictor == diffusion.FirstHitting || cfg.Predictor == diffusion.Confidence || cfg.Predictor == diffusion.EntropyBounded {
		res.Steps = counted.calls
	}
	res.Threshold, res.EntropyBudget = cfg.Threshold, cfg.EntropyBudget
	L := cfg.Length
	for b := 0; b < cfg.Batch; b++ {
		row := tokens[b*L+r.keep[0] : b*L+r.keep[1] : b*L+r.keep[1]]
		res.Samples = append(res.Samples, Sequence{Tokens: row, Text: m.Decode(row, "")})
	}
	if onStep != nil {
		last.Tokens = make([][]int64, len(res.Samples))
		for b, s := range res.Samples {
			last.Tokens[b] = s.Tokens
		}
	}
	res.Elapsed = time.Since(start)
	return res, last, nil
}

// RequestMemory returns the SDK's estimate of the memory, in bytes, that one
// network evaluation of rows sequences of length tokens needs on top of the
// loaded model: what a request is compared with against the Model's limit
// (WithMemoryLimit). A request of length past the trained length runs in
// windows of the trained length (block sampling), so length is the window.
// A server adds it up over the requests it runs at once.
func (m *Model) RequestMemory(rows, length int) int64 {
	if rows < 1 {
		rows = 1
	}
	if length < 1 || length > m.man.Length {
		length = m.man.Length
	}
	// The analytic sampler's estimate, the largest (its copy of the output
	// on a time-independent model outweighs the adaptive samplers' scratch).
	return m.requestBytes(rows, length, diffusion.Analytic)
}

// MemoryLimit returns the most memory one request may need (WithMemoryLimit,
// by default half of the machine's memory).
func (m *Model) MemoryLimit() int64 { return m.opts.MemoryLimit }
