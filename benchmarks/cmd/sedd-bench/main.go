// Command sedd-bench measures what the SDK does: generative perplexity,
// unigram entropy and time of samples against the number of steps and the
// sampler (sweep, plot), whole-sample speed next to the PyTorch reference
// (speed; benchmarks/speed.py runs both), and the golden outputs of an
// autoregressive evaluator (verify). It lives in its own module, so that its
// plotting library stays out of the SDK's dependencies.
//
// Usage:
//
//	sedd-bench sweep [--steps 8,16,...] [--out DIR] ...
//	sedd-bench plot DIR/sweep.json
//	sedd-bench speed --steps 64,1024
//	sedd-bench open --model DIR [--precision fp32] [--repeat 5]
//	sedd-bench quality --model DIR --data FILE [--steps 64,1024] [--record]
//	sedd-bench verify [DIR]
//	sedd-bench load --sedd bin/sedd [--clients 64] [--steps 16] [--modes on,off]
package main

import (
	"os"

	"github.com/urfave/cli/v2"

	"github.com/sedd-go/sedd/internal/cmdline"
)

func main() { cmdline.Main(newApp) }

func newApp(stdout, stderr *os.File) *cli.App {
	cmds := []*cli.Command{benchSweepCommand(), benchPlotCommand(), benchSpeedCommand(), benchOpenCommand(), benchQualityCommand(), verifyEvaluatorCommand(), benchLoadCommand()}
	return cmdline.NewApp("sedd-bench", "measure SEDD sampling: quality and cost against steps and samplers",
		"The model is --model DIR, else the directory named by $"+cmdline.EnvModel+", else the model built into\n"+
			"this program; the evaluator of generative perplexity is --evaluator DIR, else the built-in twin.\n"+
			"Exit status: 0 ok, 1 runtime error, 2 usage error, 130 interrupted.",
		cmds, stdout, stderr)
}

var usagef = cmdline.Usagef
