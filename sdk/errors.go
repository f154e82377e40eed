package sdk

import "errors"

// Sentinel errors that callers can match with errors.Is. Errors returned by the
// SDK wrap these (and the typed errors of sdk/runtime, sdk/manifest and
// sdk/diffusion), adding what went wrong and what to do about it.
var (
	// ErrBadTemplate marks a malformed infill template ("[MASK:" syntax).
	ErrBadTemplate = errors.New("bad infill template")
	// ErrBadRequest marks a sampling or evaluation request with invalid fields
	// (negative steps, eps outside (0, 1), negative batch, unknown predictor,
	// a length or batch beyond MaxLengthFactor or MaxScoreElements, ...).
	ErrBadRequest = errors.New("bad request")
	// ErrTooLong marks a prompt, template or constraint that does not fit in the
	// requested sequence length.
	ErrTooLong = errors.New("does not fit in the sequence length")
	// ErrClosed is returned by methods of a Model after Close.
	ErrClosed = errors.New("model is closed")
)
