package runtime

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync/atomic"

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
	sess *Session
	env  *Env // keeps the library loaded until the tensors are released
	n    int

	batch, length int
	idxBuf        []int64
	sigBuf        []float32
	lsBuf, lseBuf []float32
	idx           *ort.Tensor[int64]
	sig, ls, lse  *ort.Tensor[float32]
	inputs        []ort.Value
	outputs       []ort.Value

	binding    *ort.IoBinding // guarded by sess.mu; nil until first used
	bound      bool           // binding holds the current tensors
	run        *ort.RunOptions
	watch      chan context.Context // a run in flight under this context
	finished   chan struct{}        // the run has returned
	ack        chan struct{}        // the watcher is idle again
	terminated atomic.Bool          // the watcher set run's terminate flag
	closed     bool
}

// NewScorer returns a Scorer running on s. Close it when done.
func (s *Session) NewScorer() (*Scorer, error) {
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return nil, fmt.Errorf("runtime: session: %w", ErrClosed)
	}
	env, err := Acquire("")
	if err != nil {
		return nil, err
	}
	run, err := ort.NewRunOptions()
	if err != nil {
		env.Release()
		return nil, fmt.Errorf("runtime: run options: %w", err)
	}
	sc := &Scorer{sess: s, env: env, n: s.n, run: run,
		inputs: make([]ort.Value, 2), outputs: make([]ort.Value, 2)}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		run.Destroy()
		env.Release()
		return nil, fmt.Errorf("runtime: session: %w", ErrClosed)
	}
	s.scorers[sc] = struct{}{}
	return sc, nil
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
	if sc.closed {
		return Scores{}, fmt.Errorf("runtime: scorer: %w", ErrClosed)
	}
	if err := ctx.Err(); err != nil {
		return Scores{}, err
	}
	if err := sc.validate(x, sigma, batch, length); err != nil {
		return Scores{}, err
	}
	if batch != sc.batch || length != sc.length {
		if err := sc.reshape(batch, length); err != nil {
			return Scores{}, err
		}
	}
	copy(sc.idx.GetData(), x)
	copy(sc.sig.GetData(), sigma)

	done := ctx.Done()
	if done != nil {
		sc.startWatcher()
		sc.watch <- ctx
	}
	sc.sess.mu.RLock()
	var err error
	if sc.sess.closed {
		err = fmt.Errorf("runtime: session: %w", ErrClosed)
	} else if done == nil {
		err = sc.runBound()
	} else {
		err = sc.sess.ort.RunWithOptions(sc.inputs, sc.outputs, sc.run)
	}
	sc.sess.mu.RUnlock()
	if done != nil {
		sc.finished <- struct{}{}
		<-sc.ack
		if sc.terminated.Swap(false) {
			if uerr := sc.run.UnsetTerminate(); uerr != nil && err == nil {
				err = uerr
			}
		}
	}
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return Scores{}, cerr
		}
		return Scores{}, fmt.Errorf("runtime: forward pass: %w", err)
	}
	return Scores{Batch: batch, Length: length, N: sc.n,
		LogScore: sc.ls.GetData(), LSE: sc.lse.GetData()}, nil
}

// runBound runs through an IoBinding, which costs no Go allocation; the
// caller holds sess.mu for reading.
func (sc *Scorer) runBound() error {
	if sc.binding == nil {
		b, err := sc.sess.ort.CreateIoBinding()
		if err != nil {
			return err
		}
		sc.binding, sc.bound = b, false
	}
	if !sc.bound {
		sc.binding.ClearBoundInputs()
		sc.binding.ClearBoundOutputs()
		for _, bind := range []struct {
			f     func(string, ort.Value) error
			name  string
			value ort.Value
		}{
			{sc.binding.BindInput, InputIndices, sc.idx},
			{sc.binding.BindInput, InputSigma, sc.sig},
			{sc.binding.BindOutput, OutputLogScore, sc.ls},
			{sc.binding.BindOutput, OutputLSE, sc.lse},
		} {
			if err := bind.f(bind.name, bind.value); err != nil {
				return err
			}
		}
		sc.bound = true
	}
	return sc.sess.ort.RunWithBinding(sc.binding)
}

// validate refuses arguments that would make ONNX Runtime fail or read out
// of bounds: the embedding lookup has no bounds check of its own.
func (sc *Scorer) validate(x []int64, sigma []float32, batch, length int) error {
	if batch <= 0 || length <= 0 {
		return fmt.Errorf("runtime: %w: batch %d, length %d: both must be > 0", ErrInput, batch, length)
	}
	if int64(batch)*int64(length)*int64(sc.n) > math.MaxInt32*int64(64) {
		return fmt.Errorf("runtime: %w: batch %d × length %d × N %d is too large", ErrInput, batch, length, sc.n)
	}
	if len(x) != batch*length {
		return fmt.Errorf("runtime: %w: %d token ids for batch %d × length %d", ErrInput, len(x), batch, length)
	}
	if len(sigma) != batch {
		return fmt.Errorf("runtime: %w: %d sigma values for batch %d", ErrInput, len(sigma), batch)
	}
	n := int64(sc.n)
	for i, v := range x {
		if v < 0 || v >= n {
			return fmt.Errorf("runtime: %w: token id %d at position %d is outside [0, %d)", ErrInput, v, i, n)
		}
	}
	for i, s := range sigma {
		if !(s > 0) || math.IsInf(float64(s), 0) {
			return fmt.Errorf("runtime: %w: sigma[%d] = %v; must be finite and > 0", ErrInput, i, s)
		}
	}
	return nil
}

// reshape recreates the tensors for a new (batch, length), reusing their
// memory when it is large enough.
func (sc *Scorer) reshape(batch, length int) error {
	sc.destroyTensors()
	rows := batch * length
	grow := func(buf []float32, n int) []float32 {
		if cap(buf) < n {
			return make([]float32, n)
		}
		return buf[:n]
	}
	if cap(sc.idxBuf) < rows {
		sc.idxBuf = make([]int64, rows)
	}
	sc.idxBuf = sc.idxBuf[:rows]
	sc.sigBuf = grow(sc.sigBuf, batch)
	sc.lsBuf = grow(sc.lsBuf, rows*sc.n)
	sc.lseBuf = grow(sc.lseBuf, rows)
	b, l := int64(batch), int64(length)
	var err error
	if sc.idx, err = ort.NewTensor(ort.NewShape(b, l), sc.idxBuf); err == nil {
		if sc.sig, err = ort.NewTensor(ort.NewShape(b), sc.sigBuf); err == nil {
			if sc.ls, err = ort.NewTensor(ort.NewShape(b, l, int64(sc.n)), sc.lsBuf); err == nil {
				sc.lse, err = ort.NewTensor(ort.NewShape(b, l), sc.lseBuf)
			}
		}
	}
	if err != nil {
		sc.destroyTensors()
		return fmt.Errorf("runtime: tensors for batch %d, length %d: %w", batch, length, err)
	}
	sc.inputs[0], sc.inputs[1] = sc.idx, sc.sig
	sc.outputs[0], sc.outputs[1] = sc.ls, sc.lse
	sc.batch, sc.length = batch, length
	return nil
}

func (sc *Scorer) destroyTensors() {
	if sc.idx != nil {
		sc.idx.Destroy()
	}
	for _, t := range []*ort.Tensor[float32]{sc.sig, sc.ls, sc.lse} {
		if t != nil {
			t.Destroy()
		}
	}
	sc.idx, sc.sig, sc.ls, sc.lse = nil, nil, nil, nil
	sc.inputs[0], sc.inputs[1], sc.outputs[0], sc.outputs[1] = nil, nil, nil, nil
	sc.batch, sc.length = 0, 0
	sc.bound = false
}

// startWatcher starts the goroutine that turns a cancelled context into
// ONNX Runtime's terminate flag. It is long-lived so that a call with a
// cancellable context allocates nothing.
func (sc *Scorer) startWatcher() {
	if sc.watch != nil {
		return
	}
	sc.watch = make(chan context.Context)
	sc.finished = make(chan struct{})
	sc.ack = make(chan struct{})
	go func(run *ort.RunOptions, watch <-chan context.Context, finished <-chan struct{}, ack chan<- struct{}) {
		for ctx := range watch {
			select {
			case <-ctx.Done():
				if run.Terminate() == nil {
					sc.terminated.Store(true)
				}
				<-finished
			case <-finished:
			}
			ack <- struct{}{}
		}
	}(sc.run, sc.watch, sc.finished, sc.ack)
}

// Close releases the tensors, the run options and the Scorer's reference to
// the environment. Calls after the first return nil.
func (sc *Scorer) Close() error {
	if sc.closed {
		return nil
	}
	sc.closed = true
	if sc.watch != nil {
		close(sc.watch)
	}
	sc.sess.mu.Lock()
	sc.dropBinding()
	delete(sc.sess.scorers, sc)
	sc.sess.mu.Unlock()
	sc.destroyTensors()
	var err error
	if sc.run != nil {
		err = sc.run.Destroy()
	}
	return errors.Join(err, sc.env.Release())
}

// dropBinding releases the IoBinding; the caller holds sess.mu for writing.
func (sc *Scorer) dropBinding() {
	if sc.binding != nil {
		sc.binding.Destroy()
		sc.binding, sc.bound = nil, false
	}
}
