package onnxrt

import (
	"context"
	"errors"
	"fmt"
	goruntime "runtime"
	"sync"
	"sync/atomic"

	ort "github.com/yalue/onnxruntime_go"
)

// runner is what each single-goroutine user of a Session (Scorer,
// LogitsRunner) owns besides its tensors: the value slices handed to ONNX
// Runtime, an IoBinding for allocation-free runs, run options, and a
// long-lived goroutine that turns a cancelled context into ONNX Runtime's
// terminate flag. It is not safe for concurrent use.
type runner struct {
	sess *Session
	env  *Env // keeps the library loaded until the tensors are released

	inputs, outputs []ort.Value // in the order of sess.inputNames/outputNames

	binding *ort.IoBinding // guarded by sess.mu; nil until first used
	bound   bool           // binding holds the current inputs and outputs

	run        *ort.RunOptions
	watch      chan context.Context // a run in flight under this context
	finished   chan struct{}        // the run has returned
	ack        chan struct{}        // the watcher is idle again
	terminated atomic.Bool          // the watcher set run's terminate flag
	closed     bool
}

func (s *Session) newRunner() (*runner, error) {
	env, err := Acquire("")
	if err != nil {
		return nil, err
	}
	run, err := ort.NewRunOptions()
	if err != nil {
		env.Release()
		return nil, fmt.Errorf("runtime: run options: %w", err)
	}
	r := &runner{sess: s, env: env, run: run,
		inputs: make([]ort.Value, len(s.inputNames)), outputs: make([]ort.Value, len(s.outputNames))}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		run.Destroy()
		env.Release()
		return nil, fmt.Errorf("runtime: session: %w", ErrClosed)
	}
	s.runners[r] = struct{}{}
	return r, nil
}

// setValues installs new input and output tensors (after a shape change).
func (r *runner) setValues(inputs, outputs []ort.Value) {
	copy(r.inputs, inputs)
	copy(r.outputs, outputs)
	r.bound = false
}

// forward runs the session once on r's values. With a context that can be
// cancelled, it runs with RunOptions so that cancellation terminates the pass;
// otherwise through the IoBinding, which allocates nothing.
func (r *runner) forward(ctx context.Context) error {
	done := ctx.Done()
	if err := acquirePass(ctx); err != nil {
		return err
	}
	defer releasePass()
	if done != nil {
		r.startWatcher()
		r.watch <- ctx
	}
	r.sess.mu.RLock()
	var err error
	switch {
	case r.sess.closed:
		err = fmt.Errorf("runtime: session: %w", ErrClosed)
	case done == nil:
		err = r.runBound()
	default:
		err = r.sess.ort.RunWithOptions(r.inputs, r.outputs, r.run)
	}
	r.sess.mu.RUnlock()
	r.sess.repairSignals()
	if done != nil {
		r.finished <- struct{}{}
		<-r.ack
		if r.terminated.Swap(false) {
			if uerr := r.run.UnsetTerminate(); uerr != nil && err == nil {
				err = uerr
			}
		}
	}
	if err != nil {
		if errors.Is(err, ErrClosed) {
			return err
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
		return fmt.Errorf("runtime: %w: %w", ErrForward, err)
	}
	return nil
}

// passes bounds the forward passes in flight in the process. A forward pass
// is a blocking cgo call, for which the Go runtime hands the calling
// goroutine's thread over and starts another one to run the rest; the
// runtime keeps every thread it started, so 64 goroutines sampling at once
// used to leave the process with 70 threads for good. Waiting here parks the
// goroutine instead, so the process holds at most this many threads in ONNX
// Runtime calls (plus ONNX Runtime's own intra-op threads), and more passes
// at once would only make the CPUs' threads contend.
var passes struct {
	once sync.Once
	ch   chan struct{}
}

// maxPasses is the size of passes: the number of CPUs Go schedules on, at
// least 2.
func maxPasses() int { return max(2, goruntime.GOMAXPROCS(0)) }

// acquirePass waits for a place among the passes in flight, or for ctx.
func acquirePass(ctx context.Context) error {
	passes.once.Do(func() { passes.ch = make(chan struct{}, maxPasses()) })
	done := ctx.Done()
	if done == nil {
		passes.ch <- struct{}{}
		return nil
	}
	select {
	case passes.ch <- struct{}{}:
		return nil
	case <-done:
		return ctx.Err()
	}
}

func releasePass() { <-passes.ch }

// runBound runs through the IoBinding; the caller holds sess.mu for reading,
// which keeps Session.Close from releasing the binding meanwhile.
func (r *runner) runBound() error {
	if r.binding == nil {
		b, err := r.sess.ort.CreateIoBinding()
		if err != nil {
			return err
		}
		r.binding, r.bound = b, false
	}
	if !r.bound {
		r.binding.ClearBoundInputs()
		r.binding.ClearBoundOutputs()
		for i, name := range r.sess.inputNames {
			if err := r.binding.BindInput(name, r.inputs[i]); err != nil {
				return err
			}
		}
		for i, name := range r.sess.outputNames {
			if err := r.binding.BindOutput(name, r.outputs[i]); err != nil {
				return err
			}
		}
		r.bound = true
	}
	return r.sess.ort.RunWithBinding(r.binding)
}

// startWatcher starts the goroutine that turns a cancelled context into
// ONNX Runtime's terminate flag. It is long-lived so that a call with a
// cancellable context starts no goroutine.
func (r *runner) startWatcher() {
	if r.watch != nil {
		return
	}
	r.watch = make(chan context.Context)
	r.finished = make(chan struct{})
	r.ack = make(chan struct{})
	go func(run *ort.RunOptions, watch <-chan context.Context, finished <-chan struct{}, ack chan<- struct{}, terminated *atomic.Bool) {
		for ctx := range watch {
			select {
			case <-ctx.Done():
				if run.Terminate() == nil {
					terminated.Store(true)
				}
				<-finished
			case <-finished:
			}
			ack <- struct{}{}
		}
	}(r.run, r.watch, r.finished, r.ack, &r.terminated)
}

// dropBinding releases the IoBinding; the caller holds sess.mu for writing.
func (r *runner) dropBinding() {
	if r.binding != nil {
		r.binding.Destroy()
		r.binding, r.bound = nil, false
	}
}

// close stops the watcher, releases the binding, calls destroyTensors, then
// releases the run options and the environment reference. Calls after the
// first return nil.
func (r *runner) close(destroyTensors func()) error {
	if r.closed {
		return nil
	}
	r.closed = true
	if r.watch != nil {
		close(r.watch)
	}
	r.sess.mu.Lock()
	r.dropBinding()
	delete(r.sess.runners, r)
	r.sess.mu.Unlock()
	destroyTensors()
	clear(r.inputs)
	clear(r.outputs)
	return errors.Join(r.run.Destroy(), r.env.Release())
}

// growInt64 and growFloat32 return a slice of length n, reusing buf's memory
// when it is large enough.
func growInt64(buf []int64, n int) []int64 {
	if cap(buf) < n {
		return make([]int64, n)
	}
	return buf[:n]
}

func growFloat32(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}
