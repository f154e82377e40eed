package sdk

import (
	"fmt"
	"runtime"
	"strconv"
	"strings"
)

// Device names where the score network runs.
type Device struct {
	// CUDA selects ONNX Runtime's CUDA execution provider; false means CPU.
	CUDA bool
	// ID is the CUDA device ordinal; ignored on CPU.
	ID int
}

// CPU is the default device.
var CPU = Device{}

// CUDA returns the CUDA device with the given ordinal.
func CUDA(id int) Device { return Device{CUDA: true, ID: id} }

// String renders the device as ParseDevice accepts it: "cpu", "cuda:N".
func (d Device) String() string {
	if !d.CUDA {
		return "cpu"
	}
	return "cuda:" + strconv.Itoa(d.ID)
}

// ParseDevice reads "cpu", "cuda" (device 0) or "cuda:N".
func ParseDevice(s string) (Device, error) {
	switch v := strings.ToLower(strings.TrimSpace(s)); {
	case v == "cpu":
		return CPU, nil
	case v == "cuda" || v == "gpu":
		return CUDA(0), nil
	case strings.HasPrefix(v, "cuda:"):
		id, err := strconv.Atoi(v[len("cuda:"):])
		if err != nil || id < 0 {
			return Device{}, fmt.Errorf("%w: device %q: write cuda:N with N a device number ≥ 0", ErrBadRequest, s)
		}
		return CUDA(id), nil
	default:
		return Device{}, fmt.Errorf("%w: device %q: use cpu, cuda or cuda:N", ErrBadRequest, s)
	}
}

// Option configures Open. Options are applied in order; one that returns an
// error makes Open fail with it.
type Option func(*options) error

type options struct {
	libraryPath string
	threads     int
	device      Device
	cpuFallback bool
	verifySHA   bool
	warn        func(string)
}

func defaultOptions() options {
	return options{threads: runtime.NumCPU(), verifySHA: true, warn: func(string) {}}
}

// WithLibraryPath sets the path of the ONNX Runtime shared library. Without it
// the SDK looks at ONNXRUNTIME_SHARED_LIBRARY_PATH, the project's own install
// (third_party/onnxruntime), the per-user install and the system paths, in that
// order; Info reports which one was used.
func WithLibraryPath(path string) Option {
	return func(o *options) error {
		if path == "" {
			return fmt.Errorf("%w: empty ONNX Runtime library path", ErrBadRequest)
		}
		o.libraryPath = path
		return nil
	}
}

// WithThreads sets the number of threads ONNX Runtime uses inside one forward
// pass (intra-op threads). The default is the number of CPUs.
func WithThreads(n int) Option {
	return func(o *options) error {
		if n < 1 {
			return fmt.Errorf("%w: threads must be ≥ 1, got %d", ErrBadRequest, n)
		}
		o.threads = n
		return nil
	}
}

// WithDevice selects the execution provider: CPU (the default) or CUDA(id).
// When CUDA cannot be loaded, Open fails with an error matching
// runtime.ErrCUDAUnavailable unless WithCPUFallback is also given.
//
// ONNX Runtime's CUDA provider replaces Go's signal handlers (onnxruntime_go
// issue 140): a Go program using it may not see SIGINT or SIGSEGV the way Go
// normally does.
func WithDevice(d Device) Option {
	return func(o *options) error {
		if d.CUDA && d.ID < 0 {
			return fmt.Errorf("%w: CUDA device id must be ≥ 0, got %d", ErrBadRequest, d.ID)
		}
		o.device = d
		return nil
	}
}

// WithCPUFallback makes Open fall back to the CPU when the requested CUDA
// device cannot be used. Info reports that it fell back, and the warning
// function (WithWarnings) is told why.
func WithCPUFallback() Option {
	return func(o *options) error { o.cpuFallback = true; return nil }
}

// WithoutChecksum skips the sha256 check of model.onnx against sedd.json at
// Open, which costs about one second per gigabyte.
func WithoutChecksum() Option {
	return func(o *options) error { o.verifySHA = false; return nil }
}

// WithWarnings sets a function that receives warnings (for example a sequence
// length other than the trained one, or a CPU fallback). The default discards
// them. The function may be called from several goroutines at once.
func WithWarnings(f func(msg string)) Option {
	return func(o *options) error {
		if f == nil {
			f = func(string) {}
		}
		o.warn = f
		return nil
	}
}
