package sdk

import (
	"cmp"
	"fmt"
	"log/slog"
	goruntime "runtime"
	"slices"
	"strings"

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
// The default is the number of physical cores this process may run on (its
// CPU affinity, and at most its container's CPU limit): a core's second
// hardware thread shares its vector units, so the matrix kernels gain little
// from it.
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
// ONNX Runtime's CUDA provider, or the CUDA libraries below it, may replace
// Go's signal handlers (onnxruntime_go issue 140: Ctrl-C then crashed a Go
// program running batches over 1). On CUDA the SDK gives the Go runtime's
// handlers back after setting up the session and after every forward pass,
// where C code replaced them; Info.RestoredSignals names them. A C handler
// that runs between its installation and the next repair is not prevented.
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

// WithPrecision chooses which of the model's graphs runs:
//
//   - "auto" (the default): the fastest graph whose cost is within the
//     documented limits: the int8 variant when sedd.json records that its
//     measured quality cost is within them (benchmarks/README.md, "int8"),
//     else the optimized float32 variant when there is one, else model.onnx;
//   - "fp32": the optimized float32 variant (fused operators, same
//     arithmetic), else model.onnx;
//   - "int8": the int8 variant (int8 weights, activations quantized at run
//     time: faster, and a measured change of the model's law);
//   - "reference": model.onnx as exported, the graph every variant was
//     checked against;
//   - the name of one of sedd.json's variants (Info.Variants), such as
//     "fp32-opt".
//
// Open fails with ErrBadRequest when the model has no graph of the precision
// asked for (export/variants.py adds the variants to an exported directory).
// Info reports the graph chosen and why.
func WithPrecision(precision string) Option {
	return func(o *config.Open) error {
		p := strings.TrimSpace(precision)
		if l := strings.ToLower(p); l == "" || slices.Contains(config.Precisions, l) {
			p = cmp.Or(l, config.PrecisionAuto)
		} else if strings.ContainsFunc(p, func(r rune) bool { return r < ' ' || r == 0x7f }) || len(p) > 128 {
			return fmt.Errorf("%w: precision %q: use one of %s, or a variant's name", ErrBadRequest, precision, strings.Join(config.Precisions, ", "))
		}
		o.Precision = p // a variant's name: Open checks the model has it
		return nil
	}
}

// WithCacheDir sets where Open keeps ONNX Runtime's optimized copies of the
// graphs it loads from model directories on disk, which make every Open after
// the first of a model faster (see docs/DESIGN.md, "Optimized-graph cache");
// "" turns the cache off. The default is $SEDD_CACHE_DIR when set, else
// sedd/onnxruntime under the user's cache directory (${XDG_CACHE_HOME:-~/.cache}
// on Linux). Entries are checked before use and rebuilt when corrupt or
// stale; deleting the directory is always safe. Models opened with OpenFS
// and sessions on CUDA are not cached.
func WithCacheDir(dir string) Option {
	return func(o *config.Open) error {
		o.CacheDir = dir
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
