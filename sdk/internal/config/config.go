// Package config holds the settings of an opened model, shared by package sdk
// (whose Option functions fill them in) and package perplexity (which takes
// the same options), and turns them into ONNX Runtime session options.
package config

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/sedd-go/sedd/sdk/internal/onnxrt"
	"github.com/sedd-go/sedd/sdk/internal/ortcache"
)

// Open is what the Option functions of package sdk set.
type Open struct {
	// LibraryPath is the ONNX Runtime shared library, or "" to search.
	LibraryPath string
	// Threads is the number of intra-op threads of a forward pass.
	Threads int
	// CUDA selects the CUDA execution provider on device DeviceID.
	CUDA     bool
	DeviceID int
	// CPUFallback runs on the CPU when CUDA is asked for but unavailable.
	CPUFallback bool
	// Logger receives warnings; never nil after Defaults.
	Logger *slog.Logger
	// MemoryLimit bounds the memory one request may need, in bytes.
	MemoryLimit int64
	// Precision chooses the graph: PrecisionAuto, "fp32", "int8" or
	// "reference".
	Precision string
	// CacheDir is the root of the optimized-graph cache, "" for none.
	CacheDir string
	// BatchRows, when > 0, packs the rows of concurrent calls into shared
	// forward passes of at most BatchRows rows, waiting at most BatchWait
	// for more rows to arrive.
	BatchRows int
	BatchWait time.Duration
}

// Precision choices (WithPrecision).
const (
	PrecisionAuto      = "auto"
	PrecisionFP32      = "fp32"
	PrecisionInt8      = "int8"
	PrecisionReference = "reference"
)

// Precisions lists the choices in the order messages give them.
var Precisions = []string{PrecisionAuto, PrecisionFP32, PrecisionInt8, PrecisionReference}

// Defaults returns the settings before any option: the CPU with one thread
// per physical core, a logger that discards everything, the default memory
// limit, the automatic choice of graph and the default cache directory.
func Defaults() Open {
	return Open{Threads: DefaultThreads(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		MemoryLimit: DefaultMemoryLimit(), Precision: PrecisionAuto, CacheDir: ortcache.DefaultRoot()}
}

// ParseDevice reads "cpu", "cuda" or "gpu" (device 0), or "cuda:N".
func ParseDevice(s string) (cuda bool, id int, err error) {
	switch v := strings.ToLower(strings.TrimSpace(s)); {
	case v == "cpu":
		return false, 0, nil
	case v == "cuda" || v == "gpu":
		return true, 0, nil
	case strings.HasPrefix(v, "cuda:"):
		n, err := strconv.Atoi(v[len("cuda:"):])
		if err != nil || n < 0 {
			return false, 0, fmt.Errorf("device %q: write cuda:N with N a device number ≥ 0", s)
		}
		return true, n, nil
	}
	return false, 0, fmt.Errorf("device %q: use cpu, cuda or cuda:N", s)
}

// Device renders the device as ParseDevice reads it.
func (o Open) Device() string {
	if !o.CUDA {
		return "cpu"
	}
	return "cuda:" + strconv.Itoa(o.DeviceID)
}

// Runtime returns the ONNX Runtime session options of o.
func (o Open) Runtime() []onnxrt.Option {
	opts := []onnxrt.Option{onnxrt.WithIntraOpThreads(o.Threads)}
	if o.LibraryPath != "" {
		opts = append(opts, onnxrt.WithLibrary(o.LibraryPath))
	}
	if o.CUDA {
		opts = append(opts, onnxrt.WithCUDA(o.DeviceID))
		if o.CPUFallback {
			opts = append(opts, onnxrt.WithCPUFallback())
		}
	}
	return opts
}
