// Command sedd samples text from SEDD (Score Entropy Discrete Diffusion)
// models, fills infill templates, checks exported models against their golden
// outputs, describes them and measures sample quality and cost against the
// number of steps. It is a thin layer over package sdk: flags, SDK
// calls, output.
//
// Usage:
//
//	sedd sample [--steps 128] [--prefix TEXT] [--json] [--show-steps] ...
//	sedd infill [flags] "The [MASK:12] and that's why I was late."
//	sedd eval --data FILE
//	sedd verify [DIR]
//	sedd info [DIR]
//	sedd bench sweep [--steps 8,16,...] [--out DIR] ...
//
// Text goes to stdout; progress, warnings and errors go to stderr. The exit
// status is 0 on success, 1 for runtime errors, 2 for usage errors and 130
// when interrupted.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/sedd-go/sedd/sdk"
)

// Exit statuses.
const (
	exitOK          = 0
	exitRuntime     = 1
	exitUsage       = 2
	exitInterrupted = 130
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	go func() {
		// After the first Ctrl-C the run winds down; a second one kills the
		// process the usual way.
		<-ctx.Done()
		stop()
	}()
	code := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line args and returns the exit status.
func run(ctx context.Context, args []string, stdout, stderr *os.File) int {
	app := newApp(stdout, stderr)
	err := app.RunContext(ctx, args)
	if err == nil {
		return exitOK
	}
	code := exitCode(ctx, err)
	if code == exitInterrupted {
		fmt.Fprintln(stderr, "sedd: interrupted")
		return code
	}
	fmt.Fprintf(stderr, "sedd: %s\n", oneLine(err.Error()))
	if code == exitUsage {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", commandPath(args))
	}
	return code
}

// usageError marks a problem with the command line itself.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, a ...any) error { return usageError{fmt.Errorf(format, a...)} }

// exitCode maps an error to the exit status.
func exitCode(ctx context.Context, err error) int {
	var ue usageError
	switch {
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		return exitInterrupted
	case errors.As(err, &ue), errors.Is(err, sdk.ErrBadRequest), errors.Is(err, sdk.ErrBadTemplate):
		return exitUsage
	default:
		return exitRuntime
	}
}

// oneLine folds a multi-line message (ONNX Runtime's errors have newlines)
// into one line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// commandPath returns "sedd", "sedd sample" or "sedd bench sweep" from the
// arguments, for the "--help" hint.
func commandPath(args []string) string {
	for i, a := range args[1:] {
		subs, ok := commandNames[a]
		if !ok {
			continue
		}
		if rest := args[i+2:]; len(rest) > 0 {
			if _, ok := subs[rest[0]]; ok {
				return "sedd " + a + " " + rest[0]
			}
		}
		return "sedd " + a
	}
	return "sedd"
}

// commandNames holds the commands and their subcommands.
var commandNames = map[string]map[string]struct{}{
	"sample": nil, "infill": nil, "eval": nil, "verify": nil, "info": nil,
	"bench": {"sweep": {}, "speed": {}, "plot": {}},
}

// setOnUsage makes every command and subcommand report flag errors through
// onUsage, so that they exit with the usage status.
func setOnUsage(cmds []*cli.Command, onUsage cli.OnUsageErrorFunc) {
	for _, c := range cmds {
		c.OnUsageError = onUsage
		setOnUsage(c.Subcommands, onUsage)
	}
}

func newApp(stdout, stderr *os.File) *cli.App {
	onUsage := func(_ *cli.Context, err error, _ bool) error { return usageError{err} }
	cmds := []*cli.Command{sampleCommand(), infillCommand(), evalCommand(), verifyCommand(), infoCommand(), benchCommand()}
	setOnUsage(cmds, onUsage)
	return &cli.App{
		Name:  "sedd",
		Usage: "sample, infill and check SEDD discrete diffusion language models",
		Description: "The model is --model DIR, else the directory named by $" + envModel +
			", else the model built into this program.\n" +
			"Text goes to stdout; progress and messages go to stderr.\n" +
			"Exit status: 0 ok, 1 runtime error, 2 usage error, 130 interrupted.",
		Commands:        cmds,
		Writer:          stdout,
		ErrWriter:       stderr,
		HideVersion:     true,
		Suggest:         true,
		OnUsageError:    onUsage,
		ExitErrHandler:  func(*cli.Context, error) {}, // run maps errors to statuses
		CommandNotFound: func(*cli.Context, string) {},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return usagef("unknown command %q: use sample, infill, eval, verify, info or bench", c.Args().First())
			}
			return cli.ShowAppHelp(c)
		},
		Metadata: map[string]any{"stdout": stdout, "stderr": stderr},
	}
}

// streams returns the standard streams the app was made with.
func streams(c *cli.Context) (stdout, stderr *os.File) {
	return c.App.Metadata["stdout"].(*os.File), c.App.Metadata["stderr"].(*os.File)
}

// warner returns a warning function for sdk.WithWarnings that writes to w.
func warner(w io.Writer) func(string) {
	return func(msg string) { fmt.Fprintf(w, "sedd: warning: %s\n", oneLine(msg)) }
}

// flagsAfterArgs explains the most common cause of extra arguments: flags
// written after a positional argument, which urfave/cli v2 does not parse.
func flagsAfterArgs(c *cli.Context) string {
	for _, a := range c.Args().Slice() {
		if strings.HasPrefix(a, "-") {
			return fmt.Sprintf(" (%q looks like a flag: put flags before the directory)", a)
		}
	}
	return ""
}
