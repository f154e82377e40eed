package onnxrt

import (
	"context"
	"fmt"
	"math"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/sedd-go/sedd/sdk/diffusion"
)

// Scores is the score network's output, diffusion.Scores.
type Scores = diffusion.Scores

// Scorer implements diffusion.ScoreFunc.
var _ diffusion.ScoreFunc = (*Scorer)(nil)

// Scorer runs forward passes of a Session with input and output tensors it
// owns. Tensors are recreated only when (batch, length) changes, and their
// memory is reused whenever it is large enough, so steady-state calls
// allocate nothing on the Go heap and never copy the outputs.
//
// A Scorer is not safe for concurrent use: give each goroutine its own. Many
// Scorers of one Session run concurrently on the one ONNX Runtime session.
type Scorer struct {
	r *runner
	n int
	// withRows: the graph takes the rows input. Its tensors are then shaped
	// for nrows rows; fullRows says rowsBuf holds every position in order.
	withRows bool

	batch, length, nrows int
	fullRows             bool
	idxBuf, rowsBuf      []int64
	sigBuf               []float32
	lsBuf, lseBuf        []float32
	outRows              []int32 // the rows of the last ScoreRows, returned in its Scores
	idx, rows            *ort.Tensor[int64]
	sig, ls, lse         *ort.Tensor[float32]
}

// Scorer implements diffusion.RowScoreFunc.
var _ diffusion.RowScoreFunc = (*Scorer)(nil)

// NewScorer returns a Scorer running on s. Close it when done.
func (s *Session) NewScorer() (*Scorer, error) {
	r, err := s.newRunner()
	if err != nil {
		return nil, err
	}
	return &Scorer{r: r, n: s.n, withRows: s.Rows()}, nil
}

// N returns the vocabulary dimension of the outputs.
func (sc *Scorer) N() int { return sc.n }

// Score runs the score network on x (batch*length token ids in [0, N),
// row-major) and sigma (one finite σ > 0 per row). The returned slices belong
// to the Scorer and stay valid until its next call of Score or Close.
//
// With a context that can be cancelled (ctx.Done() != nil), cancelling it
// stops a forward pass in progress through ONNX Runtime's RunOptions terminate
// flag, and Score returns ctx's error; onnxruntime_go's Run then makes six
// small allocations per call. With a context that cannot be cancelled, such
// as context.Background(), the pass runs through an IoBinding, which has no
// run options, and the call allocates nothing.
func (sc *Scorer) Score(ctx context.Context, x []int64, sigma []float32, batch, length int) (Scores, error) {
	if sc.r.closed {
		return Scores{}, fmt.Errorf("runtime: scorer: %w", ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return Scores{}, err
	}
	if err := sc.validate(x, sigma, batch, length); err != nil {
		return Scores{}, err
	}
	if batch != sc.batch || length != sc.length || sc.withRows && sc.nrows != batch*length {
		if err := sc.reshape(batch, length, batch*length); err != nil {
			return Scores{}, err
		}
	}
	if sc.withRows && !sc.fullRows {
		for i := range sc.rowsBuf {
			sc.rowsBuf[i] = int64(i)
		}
		sc.fullRows = true
	}
	copy(sc.idx.GetData(), x)
	copy(sc.sig.GetData(), sigma)
	if err := sc.r.forward(ctx); err != nil {
		return Scores{}, err
	}
	return Scores{Batch: batch, Length: length, N: sc.n,
		LogScore: sc.ls.GetData(), LSE: sc.lse.GetData()}, nil
}

// ScoreRows is Score with the output needed only at the flat positions rows
// (b*length + i, strictly increasing): on a network with the rows input the
// output head runs on those positions only, and the returned Scores hold
// them (Scores.Rows, a copy of rows owned by the Scorer); on one without it,
// ScoreRows is Score. No rows: no forward pass, and empty Scores. The tensors
// are recreated whenever the number of rows changes (a few small allocations;
// their memory is reused).
func (sc *Scorer) ScoreRows(ctx context.Context, x []int64, sigma []float32, batch, length int, rows []int32) (Scores, error) {
	if !sc.withRows {
		return sc.Score(ctx, x, sigma, batch, length)
	}
	if sc.r.closed {
		return Scores{}, fmt.Errorf("runtime: scorer: %w", ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return Scores{}, err
	}
	if err := sc.validate(x, sigma, batch, length); err != nil {
		return Scores{}, err
	}
	if err := CheckRows(rows, batch*length); err != nil {
		return Scores{}, err
	}
	if sc.outRows == nil {
		sc.outRows = make([]int32, 0, len(rows)) // never nil: nil means every position
	}
	sc.outRows = append(sc.outRows[:0], rows...)
	if len(rows) == 0 {
		return Scores{Batch: batch, Length: length, N: sc.n, LogScore: []float32{}, LSE: []float32{}, Rows: sc.outRows}, nil
	}
	if batch != sc.batch || length != sc.length || len(rows) != sc.nrows {
		if err := sc.reshape(batch, length, len(rows)); err != nil {
			return Scores{}, err
		}
	}
	for k, r := range rows {
		sc.rowsBuf[k] = int64(r)
	}
	sc.fullRows = false
	copy(sc.idx.GetData(), x)
	copy(sc.sig.GetData(), sigma)
	if err := sc.r.forward(ctx); err != nil {
		return Scores{}, err
	}
	return Scores{Batch: batch, Length: length, N: sc.n,
		LogScore: sc.ls.GetData(), LSE: sc.lse.GetData(), Rows: sc.outRows}, nil
}

// CheckRows reports what ScoreRows would refuse in rows for a batch of
// positions flat positions: one outside [0, positions), or not strictly
// increasing. The error wraps ErrInput.
func CheckRows(rows []int32, positions int) error {
	prev := int64(-1)
	for k, r := range rows {
		if int64(r) <= prev || int64(r) >= int64(positions) {
			return fmt.Errorf("runtime: %w: rows[%d] = %d: rows must be strictly increasing positions in [0, %d)", ErrInput, k, r, positions)
		}
		prev = int64(r)
	}
	return nil
}

// validate refuses arguments that would make ONNX Runtime fail or read out
// of bounds: the embedding lookup has no bounds check of its own.
func (sc *Scorer) validate(x []int64, sigma []float32, batch, length int) error {
	return CheckInput(x, sigma, batch, length, sc.n)
}

// CheckInput reports what Score would refuse in its arguments for a network
// of n states: sizes, token ids outside [0, n), σ not finite and positive.
// The error wraps ErrInput.
func CheckInput(x []int64, sigma []float32, batch, length, n int) error {
	if err := checkShape(batch, length, n); err != nil {
		return err
	}
	if len(x) != batch*length {
		return fmt.Errorf("runtime: %w: %d token ids for batch %d × length %d", ErrInput, len(x), batch, length)
	}
	if len(sigma) != batch {
		return fmt.Errorf("runtime: %w: %d sigma values for batch %d", ErrInput, len(sigma), batch)
	}
	if err := checkIDs(x, n); err != nil {
		return err
	}
	for i, s := range sigma {
		if !(s > 0) || math.IsInf(float64(s), 0) {
			return fmt.Errorf("runtime: %w: sigma[%d] = %v; must be finite and > 0", ErrInput, i, s)
		}
	}
	return nil
}

func checkShape(batch, length, n int) error {
	if batch <= 0 || length <= 0 {
		return fmt.Errorf("runtime: %w: batch %d, length %d: both must be > 0", ErrInput, batch, length)
	}
	// Keep batch·length·n (the output's size) far from overflowing int.
	if int64(batch) > math.MaxInt32 || int64(length) > math.MaxInt32 ||
		int64(batch)*int64(length) > math.MaxInt64/4/int64(n) {
		return fmt.Errorf("runtime: %w: batch %d × length %d × %d outputs is too large", ErrInput, batch, length, n)
	}
	return nil
}

func checkIDs(x []int64, n int) error {
	for i, v := range x {
		if v < 0 || v >= int64(n) {
			return fmt.Errorf("runtime: %w: token id %d at position %d is outside [0, %d)", ErrInput, v, i, n)
		}
	}
	return nil
}

// reshape recreates the tensors for a new (batch, length) and, on a
// network with the rows input, nrows output rows, reusing their memory when
// it is large enough.
func (sc *Scorer) reshape(batch, length, nrows int) error {
	sc.destroyTensors()
	positions := batch * length
	if !sc.withRows {
		nrows = positions
	}
	sc.idxBuf = growInt64(sc.idxBuf, positions)
	sc.sigBuf = growFloat32(sc.sigBuf, batch)
	sc.lsBuf = growFloat32(sc.lsBuf, nrows*sc.n)
	sc.lseBuf = growFloat32(sc.lseBuf, nrows)
	b, l, r := int64(batch), int64(length), int64(nrows)
	lsShape, lseShape := ort.NewShape(b, l, int64(sc.n)), ort.NewShape(b, l)
	if sc.withRows {
		sc.rowsBuf = growInt64(sc.rowsBuf, nrows)
		lsShape, lseShape = ort.NewShape(r, int64(sc.n)), ort.NewShape(r)
	}
	var err error
	if sc.idx, err = ort.NewTensor(ort.NewShape(b, l), sc.idxBuf); err == nil {
		if sc.sig, err = ort.NewTensor(ort.NewShape(b), sc.sigBuf); err == nil {
			if sc.ls, err = ort.NewTensor(lsShape, sc.lsBuf); err == nil {
				if sc.lse, err = ort.NewTensor(lseShape, sc.lseBuf); err == nil && sc.withRows {
					sc.rows, err = ort.NewTensor(ort.NewShape(r), sc.rowsBuf)
				}
			}
		}
	}
	if err != nil {
		sc.destroyTensors()
		return fmt.Errorf("runtime: tensors for batch %d, length %d, %d rows: %w", batch, length, nrows, err)
	}
	inputs := []ort.Value{sc.idx, sc.sig}
	if sc.withRows {
		inputs = append(inputs, sc.rows)
	}
	sc.r.setValues(inputs, []ort.Value{sc.ls, sc.lse})
	sc.batch, sc.length, sc.nrows, sc.fullRows = batch, length, nrows, false
	return nil
}

func (sc *Scorer) destroyTensors() {
	for _, t := range []*ort.Tensor[int64]{sc.idx, sc.rows} {
		if t != nil {
			t.Destroy()
		}
	}
	for _, t := range []*ort.Tensor[float32]{sc.sig, sc.ls, sc.lse} {
		if t != nil {
			t.Destroy()
		}
	}
	sc.idx, sc.rows, sc.sig, sc.ls, sc.lse = nil, nil, nil, nil, nil
	sc.batch, sc.length, sc.nrows = 0, 0, 0
}

// Close releases the tensors, the run options and the Scorer's reference to
// the environment. Calls after the first return nil.
func (sc *Scorer) Close() error {
	return sc.r.close(sc.destroyTensors)
}
