// Command sedd samples text from SEDD (Score Entropy Discrete Diffusion)
// models, fills infill templates, bounds the likelihood of text, checks
// exported models against their golden outputs and describes them. It is a
// thin layer over package sdk: flags, SDK calls, output. (The benchmark
// tools are the separate command sedd-bench, in benchmarks/.)
//
// Usage:
//
//	sedd sample [--steps 128] [--prefix TEXT | --prefix-file FILE] [--json] [--show-steps] ...
//	sedd infill [flags] "The [MASK:12] and that's why I was late."
//	sedd eval --data FILE
//	sedd verify [DIR]
//	sedd info [DIR]
//	sedd serve [--addr 127.0.0.1:8080] [--model DIR]...
//
// Text goes to stdout; progress, warnings and errors go to stderr. The exit
// status is 0 on success, 1 for runtime errors, 2 for usage errors and 130
// when interrupted.
package main

import (
	"os"

	"github.com/urfave/cli/v2"

	"github.com/sedd-go/sedd/internal/cmdline"
	"github.com/sedd-go/sedd/sdk"
)

func main() { cmdline.Main(newApp) }

func newApp(stdout, stderr *os.File) *cli.App {
	cmds := []*cli.Command{sampleCommand(), infillCommand(), evalCommand(), verifyCommand(), infoCommand(), serveCommand()}
	return cmdline.NewApp("sedd", "sample, infill and check SEDD discrete diffusion language models",
		"The model is --model DIR, else the directory named by $"+cmdline.EnvModel+
			", else the model built into this program.\n"+
			"Text goes to stdout; progress and messages go to stderr.\n"+
			"Exit status: 0 ok, 1 runtime error, 2 usage error, 130 interrupted.",
		cmds, stdout, stderr)
}

// Shorthands for what every command uses.
var (
	usagef    = cmdline.Usagef
	streams   = cmdline.Streams
	oneLine   = cmdline.OneLine
	clipArg   = cmdline.ClipArg
	openModel = cmdline.OpenModel
)

// modelFlags are the flags of every command that opens a model.
func modelFlags() []cli.Flag { return cmdline.ModelFlags() }

// modelOptions turns the model flags into sdk options.
func modelOptions(c *cli.Context) ([]sdk.Option, error) { return cmdline.ModelOptions(c) }
