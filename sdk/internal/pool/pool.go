// Package pool keeps idle per-call runners (a Model's Scorers, an Evaluator's
// LogitsRunners) for reuse, so that a call does not allocate tensors anew.
package pool

import (
	"errors"
	"sync"
)

// maxPooled is how many idle runners a pool keeps; more are closed on release.
const maxPooled = 4

// Pool is a set of idle runners; its zero value is empty and ready. It is
// safe for concurrent use.
type Pool[T interface{ Close() error }] struct {
	mu   sync.Mutex
	idle []T
}

// Get returns an idle runner, or a new one from create.
func (p *Pool[T]) Get(create func() (T, error)) (T, error) {
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

// Put returns x to the pool, closing it when the pool is full.
func (p *Pool[T]) Put(x T) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.idle) >= maxPooled {
		_ = x.Close()
		return
	}
	p.idle = append(p.idle, x)
}

// Close closes every idle runner and empties the pool.
func (p *Pool[T]) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	for _, x := range p.idle {
		errs = append(errs, x.Close())
	}
	p.idle = nil
	return errors.Join(errs...)
}
