package sdk

import (
	"fmt"
	"log/slog"
	goruntime "runtime"

	"github.com/sedd-go/sedd/sdk/internal/config"
)

// Option configures Open and OpenFS. Options are applied in order; one that
// returns an error makes Open fail with it (matching ErrBadRequest).
type Option func(*config.Open) error

// maxThreads bounds WithThreads: ONNX Runtime creates that many threads per
// session, so a typo such as 100000 would exhaust the machine.
func maxThreads() int { return max(64, 4*goruntime.NumCPU()) }

// WithLibraryPath sets the path of the ONNX Runtime shared library. Without
// it the SDK uses ONNXRUNTIME_SHARED_LIBRARY_PATH, then looks next to the
// executable (and in ../third_party/onnxruntime/ from it), in the per-user
// install (${XDG_DATA_HOME:-~/.local/share}/sedd/onnxruntime/) and in the
// system library directories, in that order; Info reports which one was used
// and why.
func WithLibraryPath(path string) Option {
	return func(o *config.Open) error {
		if path == "" {
			return fmt.Errorf("%w: empty ONNX Runtime library path", ErrBadRequest)
		}
		o.LibraryPath = path
		return nil
	}
}

// WithThreads sets the number of threads ONNX Runtime uses inside one forward
// pass (intra-op threads), between 1 and four per logical CPU (at least 64).
// The default is the number of logical CPUs.
func WithThreads(n int) Option {
	return func(o *config.Open) error {
		if n < 1 || n > maxThreads() {
			return fmt.Errorf("%w: threads must be between 1 and %d (4 per CPU of this machine, at least 64), got %d",
				ErrBadRequest, maxThreads(), n)
		}
		o.Threads = n
		return nil
	}
}

// WithDevice selects where the network runs: "cpu" (the default), "cuda"
// (device 0) or "cuda:N". When CUDA cannot be used, Open fails with an error
// matching ErrCUDAUnavailable, unless WithCPUFallback is also given.
//
// ONNX Runtime's CUDA provider replaces Go's signal handlers (onnxruntime_go
// issue 140): a Go program using it may not see SIGINT or SIGSEGV the way Go
// normally does.
func WithDevice(device string) Option {
	return func(o *config.Open) error {
		cuda, id, err := config.ParseDevice(device)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrBadRequest, err)
		}
		o.CUDA, o.DeviceID = cuda, id
		return nil
	}
}

// WithCPUFallback makes Open fall back to the CPU when the requested CUDA
// device cannot be used. Info reports that it fell back, and the logger is
// told why.
func WithCPUFallback() Option {
	return func(o *config.Open) error { o.CPUFallback = true; return nil }
}

// WithLogger sets where warnings go (a sequence length other than the trained
// one, a CPU fallback, an infill template without masks). The default
// discards them.
func WithLogger(l *slog.Logger) Option {
	return func(o *config.Open) error {
		if l == nil {
			return fmt.Errorf("%w: nil logger", ErrBadRequest)
		}
		o.Logger = l
		return nil
	}
}

// WithMemoryLimit bounds the memory one request (a Sample, Stream or
// Evaluate call) may need, in bytes; a request whose estimate (see
// MemoryError) is larger is refused before anything is allocated for it. The
// default is half of the memory this process may use (the machine's, or its
// cgroup's limit when lower), which keeps one absurd request from taking the
// machine down; a server that runs many requests at once should set it to its
// budget divided by its concurrency.
func WithMemoryLimit(bytes int64) Option {
	return func(o *config.Open) error {
		if bytes <= 0 {
			return fmt.Errorf("%w: memory limit must be > 0 bytes, got %d", ErrBadRequest, bytes)
		}
		o.MemoryLimit = bytes
		return nil
	}
}

// resolve applies opts to the defaults.
func resolve(opts []Option) (config.Open, error) {
	o := config.Defaults()
	for _, opt := range opts {
		if opt == nil {
			return config.Open{}, fmt.Errorf("%w: nil Option", ErrBadRequest)
		}
		if err := opt(&o); err != nil {
			return config.Open{}, err
		}
	}
	return o, nil
}
