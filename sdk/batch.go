package sdk

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/sedd-go/sedd/sdk/diffusion"
	"github.com/sedd-go/sedd/sdk/internal/config"
	"github.com/sedd-go/sedd/sdk/internal/onnxrt"
)

// Bounds of WithBatching.
const (
	maxBatchRows = 1 << 16
	maxBatchWait = 10 * time.Second
)

// WithBatching makes the Model pack the rows of its concurrent calls (Sample,
// Stream, Evaluate and Verify, from any number of goroutines) into shared
// forward passes of the network: every row carries its own σ, so rows of
// different calls at different steps go through one pass. A pass holds the
// pending rows of calls with the same sequence length (rows of different
// lengths cannot share a pass), oldest call first, up to maxRows rows and
// the memory limit of one request (WithMemoryLimit); it
// starts as soon as the rows of every call of that length are waiting, when
// maxRows rows are, or when the oldest has waited maxWait. A call's rows are
// never split: a call with more than maxRows rows gets a pass of its own.
// Calls that must wait are served in arrival order, so none starves.
//
// Batching pays where a pass of one row leaves the device idle: a GPU, or a
// small network whose fixed cost per pass outweighs its arithmetic. On a few
// CPU cores, a network that is compute-bound for one row costs the same per
// row in a pass of 64, and concurrent calls with passes of their own use the
// cores better (benchmarks/README.md has both measured).
//
// Each call's random streams are its own, so a seed gives the same tokens as
// without batching as long as the network's output for a row does not depend
// on the other rows of its pass. With ONNX Runtime's CPU kernels it did not,
// to the last bit, at the trained lengths of our models in every batch
// measured (docs/DESIGN.md); at other lengths a row's outputs can differ in
// their last bit (up to 1e-6) with the batch, which moves an Evaluate bound
// by about 1e-9 of itself and could, very rarely, flip one sampling draw.
// Other execution providers may round differently again.
//
// Each call gets a copy of its rows of the shared output (so that a slow
// caller never holds the others' memory), and cancelling a call's context
// takes its rows out of the next pass; a pass in progress runs to its end
// for the other calls, or stops when every call in it is cancelled.
// maxRows must be in [1, 65536] and maxWait in [0, 10s]. perplexity.Open
// ignores this option.
func WithBatching(maxRows int, maxWait time.Duration) Option {
	return func(o *config.Open) error {
		if maxRows < 1 || maxRows > maxBatchRows {
			return fmt.Errorf("%w: batching: max rows must be in [1, %d], got %d", ErrBadRequest, maxBatchRows, maxRows)
		}
		if maxWait < 0 || maxWait > maxBatchWait {
			return fmt.Errorf("%w: batching: max wait must be in [0, %v], got %v", ErrBadRequest, maxBatchWait, maxWait)
		}
		o.BatchRows, o.BatchWait = maxRows, maxWait
		return nil
	}
}

// BatchStats counts the network's forward passes since Open, for monitoring
// (sedd serve exports it as metrics). It is plain data.
type BatchStats struct {
	// MaxRows and MaxWait are the settings of WithBatching; 0 without it.
	MaxRows int           `json:"max_rows"`
	MaxWait time.Duration `json:"max_wait"`
	// Passes counts the forward passes run for calls, Rows the rows they
	// held, and Calls the score requests they served (one per sampling
	// step or evaluation batch of a call): without batching every pass
	// serves one, with batching Calls/Passes is the mean number of calls
	// that shared a pass and Rows/Passes/MaxRows the mean fill.
	Passes uint64 `json:"passes"`
	Rows   uint64 `json:"rows"`
	Calls  uint64 `json:"calls"`
	// Network is the time spent in those forward passes.
	Network time.Duration `json:"network"`
	// QueuedRows and QueuedCalls are waiting for a pass now (batching only).
	QueuedRows  int `json:"queued_rows"`
	QueuedCalls int `json:"queued_calls"`
	// RowsPerPass[k] counts the passes that held k rows, for k from 1 to
	// MaxRows (a pass of one call with more rows counts at MaxRows); nil
	// without batching.
	RowsPerPass []uint64 `json:"rows_per_pass,omitempty"`
}

// BatchStats reports the Model's forward passes so far. It works after Close
// too.
func (m *Model) BatchStats() BatchStats {
	m.passes.mu.Lock()
	s := m.passes.BatchStats
	s.RowsPerPass = slices.Clone(s.RowsPerPass)
	m.passes.mu.Unlock()
	if b := m.batcher; b != nil {
		b.mu.Lock()
		s.QueuedCalls = len(b.queue)
		for _, c := range b.queue {
			s.QueuedRows += c.batch
		}
		b.mu.Unlock()
	}
	return s
}

// passStats is the Model's BatchStats, guarded by mu.
type passStats struct {
	mu sync.Mutex
	BatchStats
}

// count adds one forward pass of rows rows serving calls calls.
func (p *passStats) count(rows, calls int, d time.Duration) {
	p.mu.Lock()
	p.Passes++
	p.Rows += uint64(rows)
	p.Calls += uint64(calls)
	p.Network += d
	if n := len(p.RowsPerPass); n > 1 {
		p.RowsPerPass[min(rows, n-1)]++
	}
	p.mu.Unlock()
}

// callScorer is the score function one call (Sample, Stream, Evaluate,
// Verify) borrows for its duration: a Scorer of its own, or a client of the
// Model's batcher.
type callScorer interface {
	// score is diffusion.ScoreFunc's Score; it also returns the time of the
	// forward pass that computed the rows.
	score(ctx context.Context, x []int64, sigma []float32, batch, length int) (diffusion.Scores, time.Duration, error)
	// scoreRows is diffusion.RowScoreFunc's ScoreRows, with the time.
	scoreRows(ctx context.Context, x []int64, sigma []float32, batch, length int, rows []int32) (diffusion.Scores, time.Duration, error)
	// release gives the scorer back; it is not used afterwards.
	release()
}

// scorer returns the score function of one call.
func (m *Model) scorer() (callScorer, error) {
	if m.batcher != nil {
		return m.batcher.client(), nil
	}
	sc, err := m.scorers.Get(m.sess.NewScorer)
	if err != nil {
		return nil, err
	}
	return &ownScorer{m: m, sc: sc}, nil
}

// ownScorer is a call's own Scorer, from the Model's pool.
type ownScorer struct {
	m  *Model
	sc *onnxrt.Scorer
}

func (o *ownScorer) score(ctx context.Context, x []int64, sigma []float32, batch, length int) (diffusion.Scores, time.Duration, error) {
	start := time.Now()
	s, err := o.sc.Score(ctx, x, sigma, batch, length)
	d := time.Since(start)
	if err == nil {
		o.m.passes.count(batch, 1, d)
	}
	return s, d, err
}

func (o *ownScorer) scoreRows(ctx context.Context, x []int64, sigma []float32, batch, length int, rows []int32) (diffusion.Scores, time.Duration, error) {
	start := time.Now()
	s, err := o.sc.ScoreRows(ctx, x, sigma, batch, length, rows)
	d := time.Since(start)
	if err == nil {
		o.m.passes.count(batch, 1, d)
	}
	return s, d, err
}

func (o *ownScorer) release() { o.m.scorers.Put(o.sc) }

// batcher packs the rows of its clients' Score calls into shared forward
// passes, run one at a time by its dispatcher goroutine on a Scorer of its
// own.
type batcher struct {
	maxRows int
	maxWait time.Duration
	n       int // states per position
	sess    *onnxrt.Session
	stats   *passStats
	closed  func() bool // the Model was closed: fail what is queued
	// fits reports whether a pass of rows rows of length tokens stays
	// within the Model's memory limit (WithMemoryLimit).
	fits func(rows, length int) bool

	mu      sync.Mutex
	queue   []*batchClient            // waiting calls, oldest first
	clients map[*batchClient]struct{} // every live client
	stopped bool
	// spare holds the copy buffers of clients that have left, for the next
	// ones: a server's requests come and go, and fresh buffers for each
	// would leave the garbage collector megabytes per request to find.
	spare []copyBuffers

	wake chan struct{} // cap 1: the queue or the clients changed
	stop chan struct{} // closed by close
	done chan struct{} // closed when the dispatcher has returned

	// Owned by the dispatcher goroutine.
	sc     *onnxrt.Scorer
	picked []*batchClient
	x      []int64
	sigma  []float32
	copies sync.WaitGroup // clients still copying their rows of the last pass
}

// Client states, guarded by batcher.mu.
const (
	clientIdle      = iota // between calls
	clientQueued           // waiting for a pass
	clientRunning          // its rows are in the pass in progress
	clientDelivered        // its result is in res
)

// batchClient is the batcher's side of one call.
type batchClient struct {
	b *batcher

	// Guarded by b.mu.
	state    int
	length   int       // the length of its last request (0: none yet)
	x        []int64   // the request, valid while queued
	sigma    []float32 // the request, valid while queued
	batch    int
	queuedAt time.Time
	cancel   func() // stops the pass in progress when its last client leaves it
	live     *int   // clients of that pass not yet cancelled

	res chan batchResult // cap 1

	// Owned by the client's goroutine: its copy of its rows.
	copyBuffers
}

// copyBuffers hold a client's copy of its rows of a pass's output.
type copyBuffers struct {
	logScore, lse []float32
}

// maxSpare bounds batcher.spare.
const maxSpare = 64

// batchResult is a finished pass's answer to one client: views of its rows in
// the pass's output, valid until it calls copies.Done, or an error (then
// copies is nil).
type batchResult struct {
	logScore, lse []float32
	forward       time.Duration
	err           error
	copies        *sync.WaitGroup
}

func newBatcher(m *Model) *batcher {
	b := &batcher{
		maxRows: m.opts.BatchRows, maxWait: m.opts.BatchWait, n: m.man.N(), sess: m.sess, stats: &m.passes,
		closed: m.closed.Load,
		fits: func(rows, length int) bool {
			return m.requestBytes(rows, length, diffusion.Analytic) <= m.opts.MemoryLimit
		},
		clients: make(map[*batchClient]struct{}),
		wake:    make(chan struct{}, 1),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	m.passes.MaxRows, m.passes.MaxWait = b.maxRows, b.maxWait
	m.passes.RowsPerPass = make([]uint64, b.maxRows+1)
	go b.dispatch()
	return b
}

// client registers a new client.
func (b *batcher) client() *batchClient {
	c := &batchClient{b: b, res: make(chan batchResult, 1)}
	b.mu.Lock()
	b.clients[c] = struct{}{}
	if n := len(b.spare); n > 0 {
		c.copyBuffers = b.spare[n-1]
		b.spare[n-1] = copyBuffers{}
		b.spare = b.spare[:n-1]
	}
	b.mu.Unlock()
	return c
}

// signal wakes the dispatcher.
func (b *batcher) signal() {
	select {
	case b.wake <- struct{}{}:
	default:
	}
}

// close stops the dispatcher, fails what is queued with ErrClosed, and
// releases the batcher's Scorer.
func (b *batcher) close() error {
	b.mu.Lock()
	if !b.stopped {
		b.stopped = true
		close(b.stop)
	}
	b.mu.Unlock()
	<-b.done
	if b.sc != nil {
		return b.sc.Close()
	}
	return nil
}

func (c *batchClient) release() {
	b := c.b
	b.mu.Lock()
	delete(b.clients, c)
	if c.logScore != nil && len(b.spare) < maxSpare {
		b.spare = append(b.spare, c.copyBuffers)
	}
	c.copyBuffers = copyBuffers{}
	b.mu.Unlock()
	b.signal()
}

// scoreRows computes every position: a shared pass serves calls that ask
// for different rows, and each call copies its rows of the output anyway.
func (c *batchClient) scoreRows(ctx context.Context, x []int64, sigma []float32, batch, length int, _ []int32) (diffusion.Scores, time.Duration, error) {
	return c.score(ctx, x, sigma, batch, length)
}

func (c *batchClient) score(ctx context.Context, x []int64, sigma []float32, batch, length int) (diffusion.Scores, time.Duration, error) {
	b := c.b
	if err := onnxrt.CheckInput(x, sigma, batch, length, b.n); err != nil {
		return diffusion.Scores{}, 0, err
	}
	if err := ctx.Err(); err != nil {
		return diffusion.Scores{}, 0, err
	}
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return diffusion.Scores{}, 0, ErrClosed
	}
	c.state = clientQueued
	c.x, c.sigma, c.batch, c.length = x, sigma, batch, length
	c.queuedAt = time.Now()
	b.queue = append(b.queue, c)
	b.mu.Unlock()
	b.signal()

	var r batchResult
	select {
	case r = <-c.res:
	case <-ctx.Done():
		b.mu.Lock()
		switch c.state {
		case clientQueued:
			b.queue = slices.DeleteFunc(b.queue, func(q *batchClient) bool { return q == c })
			c.state, c.x, c.sigma = clientIdle, nil, nil
			b.mu.Unlock()
			b.signal()
			return diffusion.Scores{}, 0, ctx.Err()
		case clientRunning:
			// The pass goes on for the others; its result is not delivered
			// here (run skips a client that is no longer running). The pass
			// stops when every client of it has left.
			c.state = clientIdle
			if *c.live--; *c.live == 0 {
				c.cancel()
			}
			b.mu.Unlock()
			return diffusion.Scores{}, 0, ctx.Err()
		}
		c.state = clientIdle
		b.mu.Unlock()
		r = <-c.res // delivered meanwhile: take it so that the pass can end
		if r.copies != nil {
			r.copies.Done()
		}
		return diffusion.Scores{}, 0, ctx.Err()
	}
	b.mu.Lock()
	c.state = clientIdle
	b.mu.Unlock()
	if r.err != nil {
		return diffusion.Scores{}, r.forward, r.err
	}
	c.logScore = growFloat32(c.logScore, len(r.logScore))
	c.lse = growFloat32(c.lse, len(r.lse))
	copy(c.logScore, r.logScore)
	copy(c.lse, r.lse)
	r.copies.Done()
	return diffusion.Scores{Batch: batch, Length: length, N: b.n, LogScore: c.logScore, LSE: c.lse}, r.forward, nil
}

// growFloat32 returns a slice of length n, reusing buf when it is large
// enough.
func growFloat32(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}

// dispatch runs passes until close.
func (b *batcher) dispatch() {
	defer close(b.done)
	var timer *time.Timer
	for {
		b.mu.Lock()
		for {
			if b.stopped || b.closed() {
				b.failQueued()
				stopped := b.stopped
				b.mu.Unlock()
				if stopped {
					return
				}
				select { // closed, not yet released: wait for the release
				case <-b.wake:
				case <-b.stop:
				}
				b.mu.Lock()
				continue
			}
			wait, ready := b.ready(time.Now())
			if ready {
				break
			}
			b.mu.Unlock()
			var tick <-chan time.Time
			if wait > 0 {
				if timer == nil {
					timer = time.NewTimer(wait)
				} else {
					timer.Reset(wait)
				}
				tick = timer.C
			}
			select {
			case <-b.wake:
			case <-tick:
			case <-b.stop:
			}
			if timer != nil {
				timer.Stop()
			}
			b.mu.Lock()
		}
		ctx, cancel, rows, length := b.pick()
		b.mu.Unlock()
		b.run(ctx, cancel, rows, length)
	}
}

// failQueued answers every queued client with ErrClosed; b.mu is held.
func (b *batcher) failQueued() {
	for _, c := range b.queue {
		c.state, c.x, c.sigma = clientDelivered, nil, nil
		c.res <- batchResult{err: ErrClosed}
	}
	b.queue = b.queue[:0]
}

// ready reports whether a pass should start now, or else how long to wait
// before the oldest queued call has waited maxWait (0: until woken). b.mu is
// held.
func (b *batcher) ready(now time.Time) (time.Duration, bool) {
	if len(b.queue) == 0 {
		return 0, false
	}
	head := b.queue[0]
	rows := 0
	for _, c := range b.queue {
		if c.length == head.length {
			rows += c.batch
		}
	}
	if rows >= b.maxRows {
		return 0, true
	}
	// Every client that last asked for this length is waiting: nobody
	// else is coming.
	waiting := true
	for c := range b.clients {
		if c.length == head.length && c.state != clientQueued {
			waiting = false
			break
		}
	}
	if waiting {
		return 0, true
	}
	left := b.maxWait - now.Sub(head.queuedAt)
	if left <= 0 {
		return 0, true
	}
	return left, false
}

// pick takes the calls of the next pass off the queue: the oldest, then
// every later one of the same length that still fits, in arrival order, and
// copies their inputs into the pass's. b.mu is held.
func (b *batcher) pick() (context.Context, func(), int, int) {
	length := b.queue[0].length
	rows := 0
	b.picked = b.picked[:0]
	keep := b.queue[:0]
	for i, c := range b.queue {
		fits := c.length == length && rows+c.batch <= b.maxRows && b.fits(rows+c.batch, length)
		if i == 0 || fits {
			b.picked = append(b.picked, c)
			rows += c.batch
			continue
		}
		keep = append(keep, c)
	}
	clear(b.queue[len(keep):])
	b.queue = keep
	ctx, cancel := context.WithCancel(context.Background())
	live := len(b.picked)
	b.x = slices.Grow(b.x[:0], rows*length)
	b.sigma = slices.Grow(b.sigma[:0], rows)
	for _, c := range b.picked {
		b.x = append(b.x, c.x...)
		b.sigma = append(b.sigma, c.sigma...)
		c.state, c.x, c.sigma = clientRunning, nil, nil
		c.cancel, c.live = cancel, &live
	}
	return ctx, cancel, rows, length
}

// run runs one pass over the picked calls and hands each its rows.
func (b *batcher) run(ctx context.Context, cancel func(), rows, length int) {
	defer cancel()
	var out diffusion.Scores
	var err error
	if b.sc == nil {
		b.sc, err = b.sess.NewScorer()
	}
	start := time.Now()
	if err == nil {
		out, err = b.sc.Score(ctx, b.x, b.sigma, rows, length)
	}
	forward := time.Since(start)
	b.mu.Lock()
	off := 0
	for _, c := range b.picked {
		r := batchResult{forward: forward, err: err}
		if err == nil {
			r.logScore = out.LogScore[off*length*b.n : (off+c.batch)*length*b.n]
			r.lse = out.LSE[off*length : (off+c.batch)*length]
			r.copies = &b.copies
		}
		off += c.batch
		if c.state != clientRunning {
			continue // cancelled meanwhile (and maybe queued again)
		}
		c.cancel, c.live = nil, nil
		c.state = clientDelivered
		if r.copies != nil {
			b.copies.Add(1)
		}
		c.res <- r
	}
	b.mu.Unlock()
	if err == nil {
		b.stats.count(rows, len(b.picked), forward)
	}
	// The next pass reuses the output: wait until every client has copied
	// its rows (our own code, on the clients' goroutines; no callback runs
	// in between).
	b.copies.Wait()
	clear(b.picked)
}
