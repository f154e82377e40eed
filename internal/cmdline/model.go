package cmdline

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

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
		&cli.IntFlag{Name: "threads", Usage: "ONNX Runtime threads per forward pass", DefaultText: "number of CPUs"},
		&cli.StringFlag{Name: "ort-lib", Usage: "ONNX Runtime shared library `PATH`", DefaultText: "found automatically"},
	}
}

// ModelOptions turns the model flags into sdk options. The SDK checks their
// values (a bad one is a usage error, ErrBadRequest).
func ModelOptions(c *cli.Context) []sdk.Option {
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
	return opts
}

// OpenModel opens the model the flags name: the positional argument dir
// (verify, info), --model, $SEDD_MODEL, or the model built into this program.
func OpenModel(c *cli.Context, dir string, opts []sdk.Option) (*sdk.Model, error) {
	switch {
	case dir != "":
	case c.String("model") != "":
		dir = c.String("model")
	case os.Getenv(EnvModel) != "":
		dir = os.Getenv(EnvModel)
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
