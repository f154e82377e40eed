// Package kind holds the five kinds of error the SDK returns (package sdk
// re-exports them as ErrBadRequest, ErrBadModel, ErrRuntimeUnavailable,
// ErrCUDAUnavailable and ErrClosed) and gives every error its kind where it
// is born: a package's sentinel is made with New, an ad-hoc error is wrapped
// with Wrap. No table translates errors into kinds afterwards, so an error
// cannot reach a caller without one.
package kind

import "errors"

// The kinds: who is to blame, and so what a caller can do.
var (
	ErrBadRequest         = errors.New("bad request")
	ErrBadModel           = errors.New("bad model")
	ErrRuntimeUnavailable = errors.New("ONNX Runtime unavailable")
	ErrCUDAUnavailable    = errors.New("CUDA unavailable")
	ErrClosed             = errors.New("model is closed")
)

// All lists the kinds.
var All = []error{ErrBadRequest, ErrBadModel, ErrRuntimeUnavailable, ErrCUDAUnavailable, ErrClosed}

// sentinel is a package's own error that is also of a kind: errors.Is finds
// both the sentinel itself and its kind.
type sentinel struct {
	kind error
	msg  string
}

func (e *sentinel) Error() string        { return e.msg }
func (e *sentinel) Is(target error) bool { return target == e.kind }

// New returns a sentinel error with message msg that matches kind k.
func New(k error, msg string) error { return &sentinel{kind: k, msg: msg} }

// wrapped gives an error a kind without changing its message.
type wrapped struct{ kind, err error }

func (e *wrapped) Error() string   { return e.err.Error() }
func (e *wrapped) Unwrap() []error { return []error{e.kind, e.err} }

// Wrap returns err marked with kind k, unless it already has a kind (or is
// nil).
func Wrap(k, err error) error {
	if err == nil || Of(err) != nil {
		return err
	}
	return &wrapped{kind: k, err: err}
}

// Of returns the kind of err, nil if it has none.
func Of(err error) error {
	for _, k := range All {
		if errors.Is(err, k) {
			return k
		}
	}
	return nil
}
