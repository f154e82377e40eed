package cmdline

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/sedd-go/sedd/models"
	"github.com/sedd-go/sedd/sdk"
)

// EnvModel names the model directory used when --model is not given.
const EnvModel = "SEDD_MODEL"

// ModelFlags are the flags of every command that opens a model.
func ModelFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "model `DIR`", DefaultText: "$" + EnvModel + ", else the built-in model"},
		&cli.StringFlag{Name: "device", Value: "cpu", Usage: "where the network runs: cpu, cuda or cuda:N"},
		&cli.BoolFlag{Name: "cpu-fallback", Usage: "run on the CPU when the CUDA device cannot be used"},
		&cli.IntFlag{Name: "threads", Usage: "ONNX Runtime threads per forward pass", DefaultText: "number of physical cores"},
		&cli.StringFlag{Name: "precision", Value: "auto", Usage: "graph to run: auto (the fastest within the quality limits, see sedd info), fp32, int8, reference (model.onnx as exported) or a variant's name"},
		&cli.StringFlag{Name: "cache-dir", EnvVars: []string{"SEDD_CACHE_DIR"}, Usage: "where ONNX Runtime's optimized graphs are kept to open models faster (`DIR`, or off)", DefaultText: "~/.cache/sedd/onnxruntime"},
		&cli.StringFlag{Name: "ort-lib", Usage: "ONNX Runtime shared library `PATH`", DefaultText: "found automatically"},
		&cli.StringFlag{Name: "memory-limit", Usage: "largest memory one request may need, `SIZE` such as 4GiB or 500MB (requests over it are refused)", DefaultText: "half of this machine's memory"},
	}
}

// ModelOptions turns the model flags into sdk options. The SDK checks their
// values (a bad one is a usage error, ErrBadRequest); so does ParseSize for
// --memory-limit.
func ModelOptions(c *cli.Context) ([]sdk.Option, error) {
	_, stderr := Streams(c)
	opts := []sdk.Option{sdk.WithDevice(c.String("device")), sdk.WithLogger(NewLogger(stderr, c.App.Name))}
	if c.IsSet("threads") {
		opts = append(opts, sdk.WithThreads(c.Int("threads")))
	}
	if p := c.String("ort-lib"); p != "" {
		opts = append(opts, sdk.WithLibraryPath(p))
	}
	if c.Bool("cpu-fallback") {
		opts = append(opts, sdk.WithCPUFallback())
	}
	if c.IsSet("precision") {
		opts = append(opts, sdk.WithPrecision(c.String("precision")))
	}
	if c.IsSet("cache-dir") {
		dir := c.String("cache-dir")
		if dir == "" || strings.EqualFold(dir, "off") {
			dir = ""
		}
		opts = append(opts, sdk.WithCacheDir(dir))
	}
	if v := c.String("memory-limit"); v != "" {
		n, err := ParseSize(v)
		if err != nil {
			return nil, Usagef("--memory-limit: %v", err)
		}
		opts = append(opts, sdk.WithMemoryLimit(n))
	}
	return opts, nil
}

// ParseSize reads a size in bytes: a number with an optional unit, B, KB, MB,
// GB, TB (powers of 1000) or KiB, MiB, GiB, TiB and K, M, G, T (powers of
// 1024), in any case: "4GiB", "500MB", "1.5G", "1048576".
func ParseSize(s string) (int64, error) {
	v := strings.TrimSpace(s)
	i := strings.IndexFunc(v, func(r rune) bool { return (r < '0' || r > '9') && r != '.' })
	num, unit := v, ""
	if i >= 0 {
		num, unit = v[:i], strings.TrimSpace(v[i:])
	}
	x, err := strconv.ParseFloat(num, 64)
	if err != nil || num == "" {
		return 0, fmt.Errorf("%q is not a size (write 4GiB, 500MB or a number of bytes)", s)
	}
	scale := map[string]float64{"": 1, "b": 1,
		"kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12,
		"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40,
		"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}[strings.ToLower(unit)]
	if scale == 0 {
		return 0, fmt.Errorf("%q: unknown unit %q (use B, KB, MB, GB, TB, KiB, MiB, GiB, TiB, or K, M, G, T for KiB to TiB)", s, unit)
	}
	if n := x * scale; n >= 1 && n < math.MaxInt64 {
		return int64(n), nil
	}
	return 0, fmt.Errorf("%q is not a size between 1 byte and 8 EiB", s)
}

// OpenModel opens the model the flags name: the positional argument dir
// (verify, info), --model, $SEDD_MODEL, or the model built into this program.
func OpenModel(c *cli.Context, dir string, opts []sdk.Option) (*sdk.Model, error) {
	if dir == "" {
		dir = c.String("model")
	}
	return OpenDir(dir, opts)
}

// OpenDir opens the model directory dir, else $SEDD_MODEL, else the model
// built into this program.
func OpenDir(dir string, opts []sdk.Option) (*sdk.Model, error) {
	switch {
	case dir != "":
	case os.Getenv(EnvModel) != "":
		dir = os.Getenv(EnvModel)
	case !models.Embedded:
		return nil, Usagef("this program was built without the shipped model (build tag sedd_nomodels): pass --model DIR or set $%s", EnvModel)
	default:
		fsys, name := models.Default()
		m, err := sdk.OpenFS(fsys, name, opts...)
		if err != nil {
			return nil, OpenError{Dir: name, Err: err}
		}
		return m, nil
	}
	m, err := sdk.Open(dir, opts...)
	if err != nil {
		return nil, OpenError{Dir: dir, Err: err}
	}
	return m, nil
}

// OpenError adds what to do to the SDK's error when a model cannot be opened.
type OpenError struct {
	Dir string
	Err error
}

func (e OpenError) Unwrap() error { return e.Err }

func (e OpenError) Error() string {
	msg := e.Err.Error()
	switch {
	case errors.Is(e.Err, sdk.ErrBadRequest):
		return msg
	case errors.Is(e.Err, fs.ErrNotExist) && !isDir(e.Dir):
		return fmt.Sprintf("model directory %s does not exist: pass --model DIR with a directory holding sedd.json and model.onnx", e.Dir)
	case errors.Is(e.Err, sdk.ErrRuntimeUnavailable):
		return msg + "; or pass --ort-lib PATH"
	case errors.Is(e.Err, sdk.ErrCUDAUnavailable):
		return msg + "; run with --device cpu, or add --cpu-fallback"
	case errors.Is(e.Err, fs.ErrNotExist):
		return msg + " (is " + e.Dir + " a complete model directory? export it again)"
	}
	return msg
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
