package onnxrt

import (
	"fmt"
	"strings"

	"github.com/sedd-go/sedd/sdk/internal/kind"
)

// Sentinel errors, matched with errors.Is. Errors of this package wrap them,
// adding what went wrong and what to do about it.
var (
	// ErrLibraryNotFound means no ONNX Runtime shared library was found. The
	// wrapping *LibraryError lists the places searched and how to install one.
	ErrLibraryNotFound = kind.New(kind.ErrRuntimeUnavailable, "ONNX Runtime shared library not found")
	// ErrLibraryLoad means a file was found but could not be loaded as the
	// ONNX Runtime shared library.
	ErrLibraryLoad = kind.New(kind.ErrRuntimeUnavailable, "cannot load the ONNX Runtime shared library")
	// ErrLibraryConflict means an explicit library path was requested while
	// the process-wide environment already runs another library.
	ErrLibraryConflict = kind.New(kind.ErrRuntimeUnavailable, "another ONNX Runtime library is already loaded")
	// ErrCUDAUnavailable means the CUDA execution provider could not be set up,
	// usually because the library is a CPU-only build.
	ErrCUDAUnavailable = kind.New(kind.ErrCUDAUnavailable, "CUDA execution provider unavailable")
	// ErrNotONNX means a model file is not a readable ONNX model (truncated,
	// empty, or another kind of file).
	ErrNotONNX = kind.New(kind.ErrBadModel, "not a valid ONNX model file")
	// ErrEmptyNodeInput means the model has an empty-string node input that
	// crashes ONNX Runtime during session creation.
	ErrEmptyNodeInput = kind.New(kind.ErrBadModel, "ONNX graph has an empty node input")
	// ErrGraphMismatch means the model's inputs or outputs do not match the
	// score-network contract or the manifest.
	ErrGraphMismatch = kind.New(kind.ErrBadModel, "ONNX graph does not match the contract")
	// ErrModelLoad means ONNX Runtime refused a model file that passed the
	// checks of ScanONNX (an unknown operator, an opset newer than the
	// library, an inconsistent graph).
	ErrModelLoad = kind.New(kind.ErrBadModel, "ONNX Runtime cannot load the model")
	// ErrForward means ONNX Runtime failed a forward pass on inputs the
	// contract allows: a graph whose shapes or operators do not compute what
	// its contract says (out of memory, the other cause, the SDK's memory
	// estimate refuses before it runs). Its message is ONNX Runtime's.
	ErrForward = kind.New(kind.ErrBadModel, "ONNX Runtime failed a forward pass")
	// ErrInput marks invalid arguments to Score: sizes, token ids outside
	// [0, N), σ not finite and positive.
	ErrInput = kind.New(kind.ErrBadRequest, "invalid score input")
	// ErrClosed is returned after Close.
	ErrClosed = kind.New(kind.ErrClosed, "closed")
)

// installHelp tells a user how to get the library.
const installHelp = "install it with scripts/install-onnxruntime.sh from the sedd-go repository " +
	"(it puts libonnxruntime.so into third_party/onnxruntime/), " +
	"or download an ONNX Runtime release tarball from https://github.com/microsoft/onnxruntime/releases, " +
	"unpack it and set ONNXRUNTIME_SHARED_LIBRARY_PATH to its lib/libonnxruntime.so " +
	"(or pass the path as an option)"

// LibraryError reports a failed search for, or load of, the ONNX Runtime
// shared library.
type LibraryError struct {
	// Err is ErrLibraryNotFound or ErrLibraryLoad.
	Err error
	// Path is the library that failed to load (ErrLibraryLoad).
	Path string
	// Searched lists the candidates tried, each with the reason it was
	// rejected (ErrLibraryNotFound).
	Searched []string
	// Cause is the underlying error, if any.
	Cause error
}

// Error explains what failed and how to install the library.
func (e *LibraryError) Error() string {
	var b strings.Builder
	b.WriteString(e.Err.Error())
	if e.Path != "" {
		fmt.Fprintf(&b, " %s", e.Path)
	}
	if e.Cause != nil {
		fmt.Fprintf(&b, ": %v", e.Cause)
	}
	if len(e.Searched) > 0 {
		fmt.Fprintf(&b, " (searched: %s)", strings.Join(e.Searched, "; "))
	}
	b.WriteString("; ")
	b.WriteString(installHelp)
	return b.String()
}

// Unwrap returns the sentinel and the cause.
func (e *LibraryError) Unwrap() []error {
	if e.Cause != nil {
		return []error{e.Err, e.Cause}
	}
	return []error{e.Err}
}

// GraphError reports a model file that does not fit the contract.
type GraphError struct {
	// Err is ErrNotONNX, ErrEmptyNodeInput or ErrGraphMismatch.
	Err error
	// Path is the model file, when known.
	Path string
	// Detail says what is wrong.
	Detail string
}

// Error renders the problem.
func (e *GraphError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("%v: %s", e.Err, e.Detail)
	}
	return fmt.Sprintf("%s: %v: %s", e.Path, e.Err, e.Detail)
}

// Unwrap returns the sentinel.
func (e *GraphError) Unwrap() error { return e.Err }
