package likelihood

import (
	"context"
	"errors"
	"github.com/sedd-go/sedd/internal/testlib"
	"math"
	"math/rand/v2"
	"reflect"
	"runtime"
	"slices"
	"testing"

	"github.com/sedd-go/sedd/sdk/diffusion"
)

// TestMain points the tests at the project's own ONNX Runtime install when
// ONNXRUNTIME_SHARED_LIBRARY_PATH is unset.
func TestMain(m *testing.M) { testlib.Main(m) }

var (
	absorb5  = diffusion.Absorbing{Tokens: 5}
	loglin   = diffusion.LogLinear{Eps: 1e-3}
	uniform5 = diffusion.Uniform{Tokens: 5}
	geom     = diffusion.Geometric{SigmaMin: 1e-4, SigmaMax: 20}
)

// corpus returns sequences of the given lengths with tokens in [0, tokens).
func corpus(tokens int, lengths ...int) [][]int64 {
	r := rand.New(rand.NewPCG(11, 12))
	out := make([][]int64, len(lengths))
	for s, n := range lengths {
		out[s] = make([]int64, n)
		for i := range out[s] {
			out[s][i] = r.Int64N(int64(tokens))
		}
	}
	return out
}

// recorder wraps a ScoreFunc and records the shape of every call.
type recorder struct {
	inner  diffusion.ScoreFunc
	shapes [][2]int
}

func (r *recorder) Score(ctx context.Context, x []int64, sigma []float32, batch, length int) (diffusion.Scores, error) {
	r.shapes = append(r.shapes, [2]int{batch, length})
	if len(x) != batch*length || len(sigma) != batch {
		return diffusion.Scores{}, errors.New("bad request shape")
	}
	return r.inner.Score(ctx, x, sigma, batch, length)
}

func TestReproducible(t *testing.T) {
	tests := []struct {
		name  string
		graph diffusion.Graph
		noise diffusion.Noise
		smp   Sampling
	}{
		{"absorb stratified", absorb5, loglin, Stratified},
		{"absorb antithetic", absorb5, loglin, Antithetic},
		{"uniform stratified", uniform5, geom, Stratified},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seqs := corpus(5, 16, 16, 9, 16)
			m := newIndependent(tc.graph, 16, 5, 1)
			eval := func(batch, procs int, seqs [][]int64) *Result {
				t.Helper()
				defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
				res, err := Evaluate(context.Background(), m, seqs, Config{Graph: tc.graph, Noise: tc.noise, Timesteps: 10, Sampling: tc.smp, Seed: 42, BatchSize: batch})
				if err != nil {
					t.Fatal(err)
				}
				return res
			}
			base := eval(1, 1, seqs)
			for _, v := range []struct{ batch, procs int }{{3, 1}, {7, 4}, {64, 2}, {0, 8}} {
				if got := eval(v.batch, v.procs, seqs); !reflect.DeepEqual(got, base) {
					t.Errorf("batch %d, GOMAXPROCS %d: result differs from batch 1", v.batch, v.procs)
				}
			}
			// A sequence's result depends only on its index, not on the others.
			alone := eval(4, 2, seqs[:1])
			if !reflect.DeepEqual(alone.Sequences[0], base.Sequences[0]) {
				t.Errorf("sequence 0 alone: %+v, with others: %+v", alone.Sequences[0], base.Sequences[0])
			}
			// Another seed gives other draws.
			other, err := Evaluate(context.Background(), m, seqs, Config{Graph: tc.graph, Noise: tc.noise, Timesteps: 10, Sampling: tc.smp, Seed: 43})
			if err != nil {
				t.Fatal(err)
			}
			if other.Nats == base.Nats {
				t.Errorf("seeds 42 and 43 gave the same estimate %v", base.Nats)
			}
		})
	}
}

func TestBatchingPacksEqualLengths(t *testing.T) {
	seqs := corpus(5, 8, 5, 8, 8, 5)
	rec := &recorder{inner: newIndependent(absorb5, 8, 5, 1)}
	// independent scores any prefix length, so the 5-token windows work too.
	res, err := Evaluate(context.Background(), rec, seqs, Config{Graph: absorb5, Noise: loglin, Timesteps: 3, BatchSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	// Length 5: 2 sequences × 3 rows = 6 → 4 + 2; length 8: 9 rows → 4 + 4 + 1.
	want := [][2]int{{4, 5}, {2, 5}, {4, 8}, {4, 8}, {1, 8}}
	if !reflect.DeepEqual(rec.shapes, want) {
		t.Errorf("calls %v, want %v", rec.shapes, want)
	}
	if res.Tokens != 8*3+5*2 || res.Timesteps != 15 {
		t.Errorf("tokens %d, timesteps %d; want 34 and 15", res.Tokens, res.Timesteps)
	}
	for s, b := range res.Sequences {
		if b.Tokens != len(seqs[s]) || b.Timesteps != 3 {
			t.Errorf("sequence %d: tokens %d, timesteps %d", s, b.Tokens, b.Timesteps)
		}
	}
}

func TestResultFields(t *testing.T) {
	seqs := corpus(5, 16, 16)
	m := newIndependent(absorb5, 16, 5, 1)
	res, err := Evaluate(context.Background(), m, seqs, Config{Graph: absorb5, Noise: loglin, Timesteps: 8})
	if err != nil {
		t.Fatal(err)
	}
	var nats, v float64
	for _, b := range res.Sequences {
		nats += b.Nats
		v += b.NatsStdErr * b.NatsStdErr
		if b.Perplexity != math.Exp(b.NatsPerToken) || !(b.PerplexityLow < b.Perplexity && b.Perplexity < b.PerplexityHigh) {
			t.Errorf("sequence perplexity %v not exp(%v) inside (%v, %v)", b.Perplexity, b.NatsPerToken, b.PerplexityLow, b.PerplexityHigh)
		}
	}
	if res.Nats != nats || math.Abs(res.NatsStdErr-math.Sqrt(v)) > 1e-12 {
		t.Errorf("corpus nats %v ± %v, want %v ± %v", res.Nats, res.NatsStdErr, nats, math.Sqrt(v))
	}
	if res.NatsPerToken != nats/32 || res.StdErr != res.NatsStdErr/32 {
		t.Errorf("nats/token %v ± %v", res.NatsPerToken, res.StdErr)
	}
	lo, hi := math.Exp(res.NatsPerToken-z95*res.StdErr), math.Exp(res.NatsPerToken+z95*res.StdErr)
	if res.PerplexityLow != lo || res.PerplexityHigh != hi {
		t.Errorf("interval (%v, %v), want (%v, %v)", res.PerplexityLow, res.PerplexityHigh, lo, hi)
	}
}

func TestTimesteps(t *testing.T) {
	// The draws of each sampling rule land where they should.
	const K = 8
	tests := []struct {
		name string
		smp  Sampling
		eps  float64
	}{
		{"stratified", Stratified, DefaultMinTime},
		{"antithetic", Antithetic, DefaultMinTime},
		{"stratified eps 0.2", Stratified, 0.2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := Config{Graph: absorb5, Noise: loglin, Timesteps: K, Sampling: tc.smp, MinTime: tc.eps, Seed: 5}.resolved()
			if err != nil {
				t.Fatal(err)
			}
			e := newEvaluator(cfg, corpus(5, 4))
			st := newStream()
			for k := range K {
				tk := e.time(st, 0, k)
				if !(tk >= tc.eps && tk <= 1) {
					t.Errorf("t_%d = %v outside [%v, 1]", k, tk, tc.eps)
				}
				switch tc.smp {
				case Stratified:
					lo := tc.eps + (1-tc.eps)*float64(k)/K
					hi := tc.eps + (1-tc.eps)*float64(k+1)/K
					if tk < lo || tk >= hi {
						t.Errorf("t_%d = %v outside stratum [%v, %v)", k, tk, lo, hi)
					}
				case Antithetic:
					if k%2 == 1 {
						if pair := e.time(st, 0, k-1); math.Abs((pair-tc.eps)+(tk-tc.eps)-(1-tc.eps)) > 1e-15 {
							t.Errorf("t_%d = %v and t_%d = %v are not antithetic", k-1, pair, k, tk)
						}
					}
				}
			}
		})
	}
}

func TestMeanStdErr(t *testing.T) {
	tests := []struct {
		name     string
		y        []float64
		smp      Sampling
		mean, se float64
	}{
		{"stratified pairs", []float64{1, 2, 3, 4}, Stratified, 2.5, math.Sqrt(2) / 4},
		{"stratified odd K groups the last three", []float64{1, 3, 2, 2, 5}, Stratified, 2.6, math.Sqrt(4+9) / 5},
		{"stratified K=3 one triple", []float64{1, 2, 3}, Stratified, 2, math.Sqrt(3) / 3},
		{"stratified constant", []float64{7, 7, 7, 7}, Stratified, 7, 0},
		{"stratified K=1 has no estimate", []float64{3}, Stratified, 3, math.Inf(1)},
		{"antithetic pairs", []float64{1, 3, 4, 6, 0, 2}, Antithetic, 8.0 / 3, math.Sqrt((4.0/9 + 49.0/9 + 25.0/9) / 2 / 3)},
		{"antithetic one pair has no estimate", []float64{1, 3}, Antithetic, 2, math.Inf(1)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			mean, se := meanStdErr(tc.y, tc.smp)
			if math.Abs(mean-tc.mean) > 1e-12 || !(math.Abs(se-tc.se) <= 1e-12 || se == tc.se) {
				t.Errorf("got %v ± %v, want %v ± %v", mean, se, tc.mean, tc.se)
			}
		})
	}
}

func TestInvalid(t *testing.T) {
	m := newIndependent(absorb5, 4, 5, 1)
	good := corpus(5, 4)
	tests := []struct {
		name string
		cfg  Config
		seqs [][]int64
		want error
	}{
		{"K = 0", Config{Graph: absorb5, Noise: loglin}, good, ErrInvalidConfig},
		{"K < 0", Config{Graph: absorb5, Noise: loglin, Timesteps: -3}, good, ErrInvalidConfig},
		{"antithetic odd K", Config{Graph: absorb5, Noise: loglin, Timesteps: 3, Sampling: Antithetic}, good, ErrInvalidConfig},
		{"unknown sampling", Config{Graph: absorb5, Noise: loglin, Timesteps: 3, Sampling: 7}, good, ErrInvalidConfig},
		{"nil graph", Config{Noise: loglin, Timesteps: 3}, good, ErrInvalidConfig},
		{"nil noise", Config{Graph: absorb5, Timesteps: 3}, good, ErrInvalidConfig},
		{"bad noise", Config{Graph: absorb5, Noise: diffusion.LogLinear{Eps: 2}, Timesteps: 3}, good, ErrInvalidConfig},
		{"eps 1", Config{Graph: absorb5, Noise: loglin, Timesteps: 3, MinTime: 1}, good, ErrInvalidConfig},
		{"negative batch", Config{Graph: absorb5, Noise: loglin, Timesteps: 3, BatchSize: -1}, good, ErrInvalidConfig},
		{"K past MaxTimesteps", Config{Graph: absorb5, Noise: loglin, Timesteps: MaxTimesteps + 1}, good, ErrInvalidConfig},
		{"K at the int limit", Config{Graph: absorb5, Noise: loglin, Timesteps: math.MaxInt}, good, ErrInvalidConfig},
		{"sequences × K past MaxDraws", Config{Graph: absorb5, Noise: loglin, Timesteps: MaxTimesteps}, slices.Repeat([][]int64{{1}}, MaxDraws/MaxTimesteps+1), ErrInvalidConfig},
		{"no sequences", Config{Graph: absorb5, Noise: loglin, Timesteps: 3}, nil, ErrInvalidConfig},
		{"empty sequence", Config{Graph: absorb5, Noise: loglin, Timesteps: 3}, [][]int64{{1}, {}}, ErrInvalidConfig},
		{"mask as clean token", Config{Graph: absorb5, Noise: loglin, Timesteps: 3}, [][]int64{{1, 5}}, ErrBadToken},
		{"negative token", Config{Graph: absorb5, Noise: loglin, Timesteps: 3}, [][]int64{{-1}}, ErrBadToken},
		{"uniform token ≥ N", Config{Graph: uniform5, Noise: geom, Timesteps: 3}, [][]int64{{0, 1, 2, 3, 5}}, ErrBadToken},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res, err := Evaluate(context.Background(), m, tc.seqs, tc.cfg)
			if !errors.Is(err, tc.want) || res != nil {
				t.Fatalf("got %v, %v; want error %v", res, err, tc.want)
			}
		})
	}
	// A batch size far beyond the rows must not size the buffers.
	if _, err := Evaluate(context.Background(), m, good, Config{Graph: absorb5, Noise: loglin, Timesteps: 2, BatchSize: math.MaxInt}); err != nil {
		t.Errorf("BatchSize math.MaxInt: %v", err)
	}
	var te *TokenError
	_, err := Evaluate(context.Background(), m, [][]int64{{0, 1}, {2, 3, 9}}, Config{Graph: absorb5, Noise: loglin, Timesteps: 2})
	if !errors.As(err, &te) || te.Sequence != 1 || te.Position != 2 || te.Token != 9 || te.Limit != 5 {
		t.Errorf("got %v (%+v), want a TokenError at sequence 1, position 2", err, te)
	}
}

// faulty returns exact scores, then spoils one row of one call: the LSE of
// every position of the row (lse), or every log score of one position, or
// the length of the LSE slice (badLen).
type faulty struct {
	inner       *independent
	call, row   int
	pos         int
	value       float32
	lse, badLen bool
	calls       int
}

func (f *faulty) Score(ctx context.Context, x []int64, sigma []float32, batch, length int) (diffusion.Scores, error) {
	sc, err := f.inner.Score(ctx, x, sigma, batch, length)
	f.calls++
	if f.calls-1 != f.call {
		return sc, err
	}
	switch {
	case f.badLen:
		sc.LSE = sc.LSE[:len(sc.LSE)-1]
	case f.lse:
		// Every position, so that the absorbing graph meets one at a masked
		// position whatever the draw.
		for i := range length {
			sc.LSE[f.row*length+i] = f.value
		}
	default:
		for j := range sc.Row(f.row, f.pos) {
			sc.Row(f.row, f.pos)[j] = f.value
		}
	}
	return sc, err
}

func TestScoreErrors(t *testing.T) {
	nan := float32(math.NaN())
	inf := float32(math.Inf(1))
	tests := []struct {
		name  string
		graph diffusion.Graph
		noise diffusion.Noise
		f     faulty
		want  error
	}{
		{"absorb NaN lse", absorb5, loglin, faulty{call: 1, row: 3, lse: true, value: nan}, diffusion.ErrNonFinite},
		{"absorb +Inf lse", absorb5, loglin, faulty{call: 0, row: 2, lse: true, value: inf}, diffusion.ErrNonFinite},
		{"uniform NaN score", uniform5, geom, faulty{call: 2, row: 0, pos: 3, value: nan}, diffusion.ErrNonFinite},
		{"uniform +Inf score", uniform5, geom, faulty{call: 1, row: 3, pos: 0, value: inf}, diffusion.ErrNonFinite},
		{"short LSE", absorb5, loglin, faulty{call: 1, badLen: true}, diffusion.ErrScoreShape},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			seqs := corpus(5, 6, 6, 6)
			f := tc.f
			f.inner = newIndependent(tc.graph, 6, 5, 1)
			_, err := Evaluate(context.Background(), &f, seqs, Config{Graph: tc.graph, Noise: tc.noise, Timesteps: 4, BatchSize: 4})
			checkScoreError(t, err, tc.want, f.call, f.row)
		})
	}
}

// checkScoreError checks err against the row of batch call (BatchSize 4,
// Timesteps 4: call c, row b is sequence c, timestep b).
func checkScoreError(t *testing.T, err, want error, call, row int) {
	t.Helper()
	var se *ScoreError
	if !errors.Is(err, want) || !errors.As(err, &se) {
		t.Fatalf("got %v, want a ScoreError wrapping %v", err, want)
	}
	if errors.Is(want, diffusion.ErrScoreShape) {
		return
	}
	if se.Sequence != call || se.Timestep != row || !(se.T > 0 && se.Sigma > 0) {
		t.Errorf("error at sequence %d, timestep %d (t %v, sigma %v); want %d, %d", se.Sequence, se.Timestep, se.T, se.Sigma, call, row)
	}
}

func TestProgressAndCancel(t *testing.T) {
	seqs := corpus(5, 4, 4, 4)
	m := newIndependent(absorb5, 4, 5, 1)
	var calls [][2]int
	_, err := Evaluate(context.Background(), m, seqs, Config{Graph: absorb5, Noise: loglin, Timesteps: 5, BatchSize: 4,
		Progress: func(done, total int) error { calls = append(calls, [2]int{done, total}); return nil }})
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]int{{4, 15}, {8, 15}, {12, 15}, {15, 15}}
	if !reflect.DeepEqual(calls, want) {
		t.Errorf("progress %v, want %v", calls, want)
	}

	stop := errors.New("enough")
	rec := &recorder{inner: m}
	_, err = Evaluate(context.Background(), rec, seqs, Config{Graph: absorb5, Noise: loglin, Timesteps: 5, BatchSize: 4,
		Progress: func(done, total int) error {
			if done >= 8 {
				return stop
			}
			return nil
		}})
	if !errors.Is(err, stop) || len(rec.shapes) != 2 {
		t.Errorf("got %v after %d calls, want %v after 2", err, len(rec.shapes), stop)
	}

	ctx, cancel := context.WithCancel(context.Background())
	rec = &recorder{inner: m}
	_, err = Evaluate(ctx, rec, seqs, Config{Graph: absorb5, Noise: loglin, Timesteps: 5, BatchSize: 4,
		Progress: func(done, total int) error { cancel(); return nil }})
	if !errors.Is(err, context.Canceled) || len(rec.shapes) != 1 {
		t.Errorf("got %v after %d calls, want context.Canceled after 1", err, len(rec.shapes))
	}

	scoreErr := errors.New("network down")
	_, err = Evaluate(context.Background(), scoreFunc(func(context.Context, []int64, []float32, int, int) (diffusion.Scores, error) {
		return diffusion.Scores{}, scoreErr
	}), seqs, Config{Graph: absorb5, Noise: loglin, Timesteps: 5})
	if !errors.Is(err, scoreErr) {
		t.Errorf("got %v, want %v", err, scoreErr)
	}
}

func evaluateForTest(f diffusion.ScoreFunc, seqs [][]int64) (*Result, error) {
	return Evaluate(context.Background(), f, seqs, Config{Graph: absorb5, Noise: loglin, Timesteps: 2, BatchSize: 8})
}

func TestPointerGraph(t *testing.T) {
	// A *Absorbing is a Graph too; its mask is still no clean token.
	g := &diffusion.Absorbing{Tokens: 5}
	m := newIndependent(absorb5, 3, 5, 1)
	_, err := Evaluate(context.Background(), m, [][]int64{{0, 5, 1}}, Config{Graph: g, Noise: loglin, Timesteps: 2})
	if !errors.Is(err, ErrBadToken) {
		t.Errorf("got %v, want ErrBadToken", err)
	}
	if _, err := Evaluate(context.Background(), m, [][]int64{{0, 4, 1}}, Config{Graph: g, Noise: loglin, Timesteps: 2}); err != nil {
		t.Error(err)
	}
}

// scoreFunc adapts an ordinary function to diffusion.ScoreFunc.
type scoreFunc func(ctx context.Context, x []int64, sigma []float32, batch, length int) (diffusion.Scores, error)

func (f scoreFunc) Score(ctx context.Context, x []int64, sigma []float32, batch, length int) (diffusion.Scores, error) {
	return f(ctx, x, sigma, batch, length)
}
