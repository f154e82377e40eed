package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/sedd-go/sedd/models"
	"github.com/sedd-go/sedd/sdk"
	"github.com/sedd-go/sedd/sdk/runtime"
)

// envModel names the model directory used when --model is not given.
const envModel = "SEDD_MODEL"

// modelFlags are the flags of every command that opens a model.
func modelFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "model", Aliases: []string{"m"}, Usage: "model `DIR`", DefaultText: "$" + envModel + ", else the built-in model"},
		&cli.StringFlag{Name: "device", Value: "cpu", Usage: "where the network runs: cpu, cuda or cuda:N"},
		&cli.BoolFlag{Name: "cpu-fallback", Usage: "run on the CPU when the CUDA device cannot be used"},
		&cli.IntFlag{Name: "threads", Usage: "ONNX Runtime threads per forward pass", DefaultText: "number of CPUs"},
		&cli.StringFlag{Name: "ort-lib", Usage: "ONNX Runtime shared library `PATH`", DefaultText: "found automatically"},
	}
}

// modelOptions turns the model flags into sdk options; bad values are usage
// errors.
func modelOptions(c *cli.Context) ([]sdk.Option, error) {
	_, stderr := streams(c)
	dev, err := sdk.ParseDevice(c.String("device"))
	if err != nil {
		return nil, usageError{fmt.Errorf("--device: %w", err)}
	}
	opts := []sdk.Option{sdk.WithDevice(dev), sdk.WithWarnings(warner(stderr))}
	if c.IsSet("threads") {
		n := c.Int("threads")
		if n < 1 {
			return nil, usagef("--threads must be ≥ 1, got %d", n)
		}
		opts = append(opts, sdk.WithThreads(n))
	}
	if p := c.String("ort-lib"); p != "" {
		opts = append(opts, sdk.WithLibraryPath(p))
	}
	if c.Bool("cpu-fallback") {
		opts = append(opts, sdk.WithCPUFallback())
	}
	return opts, nil
}

// modelDir picks the model directory: the positional argument dir (verify,
// info), --model, $SEDD_MODEL, or the built-in model.
func modelDir(c *cli.Context, dir string) (string, error) {
	switch {
	case dir != "":
		return dir, nil
	case c.String("model") != "":
		return c.String("model"), nil
	case os.Getenv(envModel) != "":
		return os.Getenv(envModel), nil
	}
	d, err := models.Default()
	if errors.Is(err, models.ErrNoDefault) {
		return "", errNoModel
	}
	return d, err
}

var errNoModel = errors.New("no model given and this sedd has no built-in model: pass --model DIR " +
	"(a directory with sedd.json and model.onnx, for example sdk/testdata/tiny-absorb, or one made by export/export.py) " +
	"or set " + envModel + "=DIR")

// openModel opens the model the flags name, with dir as in modelDir.
func openModel(c *cli.Context, dir string, opts []sdk.Option) (*sdk.Model, error) {
	dir, err := modelDir(c, dir)
	if err != nil {
		return nil, err
	}
	m, err := sdk.Open(dir, opts...)
	if err != nil {
		return nil, openError{dir: dir, err: err}
	}
	return m, nil
}

// openError adds what to do to the SDK's error when a model cannot be opened.
type openError struct {
	dir string
	err error
}

func (e openError) Unwrap() error { return e.err }

func (e openError) Error() string {
	msg := e.err.Error()
	switch {
	case errors.Is(e.err, fs.ErrNotExist) && !isDir(e.dir):
		return fmt.Sprintf("model directory %s does not exist: pass --model DIR with a directory holding sedd.json and model.onnx", e.dir)
	case errors.Is(e.err, runtime.ErrLibraryNotFound), errors.Is(e.err, runtime.ErrLibraryLoad):
		return msg + "; or pass --ort-lib PATH"
	case errors.Is(e.err, runtime.ErrCUDAUnavailable):
		return msg + "; run with --device cpu, or add --cpu-fallback"
	case errors.Is(e.err, fs.ErrNotExist):
		return msg + " (is " + e.dir + " a complete model directory? export it again)"
	}
	return msg
}

func isDir(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.IsDir()
}
