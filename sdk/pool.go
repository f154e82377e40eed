package sdk

import (
	"errors"
	"sync"
)

// maxPooled is how many idle runners a pool keeps; more are closed on release.
const maxPooled = 4

// pool keeps idle per-call runners (a Model's Scorers, an Evaluator's
// LogitsRunners) for reuse, so that a call does not allocate tensors anew.
type pool[T interface{ Close() error }] struct {
	mu   sync.Mutex
	idle []T
}

// get returns an idle runner, or a new one from create.
func (p *pool[T]) get(create func() (T, error)) (T, error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		x := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return x, nil
	}
	p.mu.Unlock()
	return create()
}

// put returns x to the pool, closing it when the pool is full.
func (p *pool[T]) put(x T) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) >= maxPooled {
		_ = x.Close()
		return
	}
	p.idle = append(p.idle, x)
}

// close closes every idle runner and empties the pool.
func (p *pool[T]) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, x := range p.idle {
		errs = append(errs, x.Close())
	}
	p.idle = nil
	return errors.Join(errs...)
}
