// Package cmdline is what the sedd and sedd-bench commands share: running a
// urfave/cli app with the project's exit statuses and error lines, the flags
// that open a model, warnings through slog, and a progress bar.
package cmdline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/sedd-go/sedd/sdk"
)

// Exit statuses.
const (
	ExitOK          = 0
	ExitRuntime     = 1
	ExitUsage       = 2
	ExitInterrupted = 130
)

// UsageError marks a problem with the command line itself.
type UsageError struct{ Err error }

func (e UsageError) Error() string { return e.Err.Error() }
func (e UsageError) Unwrap() error { return e.Err }

// Usagef returns a UsageError with a formatted message.
func Usagef(format string, a ...any) error { return UsageError{fmt.Errorf(format, a...)} }

// ExitCode maps an error to the exit status.
func ExitCode(ctx context.Context, err error) int {
	var ue UsageError
	switch {
	case err == nil:
		return ExitOK
	case ctx.Err() != nil && errors.Is(err, context.Canceled):
		return ExitInterrupted
	case errors.As(err, &ue), errors.Is(err, sdk.ErrBadRequest):
		return ExitUsage
	default:
		return ExitRuntime
	}
}

// Main runs the program the way both commands do: the app newApp makes on the
// standard streams, with a context that the first Ctrl-C cancels (the run
// winds down and exits with ExitInterrupted; a second Ctrl-C kills the
// process the usual way), and exits with the status of Run.
func Main(newApp func(stdout, stderr *os.File) *cli.App) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	go func() {
		<-ctx.Done()
		stop()
	}()
	code := Run(ctx, newApp(os.Stdout, os.Stderr), os.Args, os.Stderr)
	stop()
	os.Exit(code)
}

// Run executes app on the command line args and returns the exit status: it
// prints "PROG: interrupted" after Ctrl-C, and otherwise one line
// "PROG: error" (and for usage errors a hint at --help) on stderr.
func Run(ctx context.Context, app *cli.App, args []string, stderr io.Writer) int {
	err := app.RunContext(ctx, args)
	code := ExitCode(ctx, err)
	switch code {
	case ExitOK:
	case ExitInterrupted:
		fmt.Fprintf(stderr, "%s: interrupted\n", app.Name)
	default:
		fmt.Fprintf(stderr, "%s: %s\n", app.Name, OneLine(message(err)))
		if code == ExitUsage {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", commandPath(app, args))
		}
	}
	return code
}

// flagOf names the flag that sets each field of the SDK's requests.
var flagOf = map[string]string{
	"Steps": "--steps", "Sampler": "--predictor", "EndTime": "--eps", "Batch": "--batch", "Length": "--length",
	"Timesteps": "--timesteps", "Sampling": "--sampling", "MinTime": "--eps", "BatchSize": "--batch-size",
	"Temperature": "--temperature", "TopK": "--top-k", "TopP": "--top-p", "BlockOverlap": "--block-overlap",
	"Threshold": "--threshold", "EntropyBudget": "--entropy-budget",
}

// message is the text of err for the command line: a bad request field is
// named by its flag.
func message(err error) string {
	var me *sdk.MemoryError
	if errors.As(err, &me) {
		return fmt.Sprintf("batch %d × length %d needs about %.1f GiB of memory, more than --memory-limit %.1f GiB; lower --batch (or --batch-size) or --length, or raise --memory-limit",
			me.Batch, me.Length, float64(me.Need)/(1<<30), float64(me.Limit)/(1<<30))
	}
	var fe *sdk.FieldError
	if errors.As(err, &fe) {
		if flag, ok := flagOf[fe.Field]; ok {
			return flag + " " + fe.Problem
		}
	}
	return err.Error()
}

// commandPath returns "sedd", "sedd sample" or "sedd-bench sweep" from the
// arguments, for the "--help" hint.
func commandPath(app *cli.App, args []string) string {
	path, cmds := app.Name, app.Commands
	for _, a := range args[min(1, len(args)):] {
		var next *cli.Command
		for _, c := range cmds {
			if c.HasName(a) {
				next = c
			}
		}
		if next == nil {
			continue
		}
		path += " " + next.Name
		cmds = next.Subcommands
	}
	return path
}

// NewApp returns a cli.App named name with the project's conventions: usage
// errors (including flag errors of every command) exit with ExitUsage,
// errors are printed by Run, and the standard streams are kept for Streams.
func NewApp(name, usage, description string, cmds []*cli.Command, stdout, stderr *os.File) *cli.App {
	onUsage := func(_ *cli.Context, err error, _ bool) error { return UsageError{err} }
	setOnUsage(cmds, onUsage)
	var names []string
	for _, c := range cmds {
		names = append(names, c.Name)
	}
	return &cli.App{
		Name:            name,
		Usage:           usage,
		Description:     description,
		Commands:        cmds,
		Writer:          stdout,
		ErrWriter:       stderr,
		HideVersion:     true,
		Suggest:         true,
		OnUsageError:    onUsage,
		ExitErrHandler:  func(*cli.Context, error) {}, // Run maps errors to statuses
		CommandNotFound: func(*cli.Context, string) {},
		Action: func(c *cli.Context) error {
			if c.Args().Present() {
				return Usagef("unknown command %q: use %s", OneLine(ClipArg(c.Args().First())), strings.Join(names, ", "))
			}
			return cli.ShowAppHelp(c)
		},
		Metadata: map[string]any{"stdout": stdout, "stderr": stderr},
	}
}

// setOnUsage makes every command and subcommand report flag errors through
// onUsage, so that they exit with the usage status.
func setOnUsage(cmds []*cli.Command, onUsage cli.OnUsageErrorFunc) {
	for _, c := range cmds {
		c.OnUsageError = onUsage
		setOnUsage(c.Subcommands, onUsage)
	}
}

// Streams returns the standard streams the app was made with.
func Streams(c *cli.Context) (stdout, stderr *os.File) {
	return c.App.Metadata["stdout"].(*os.File), c.App.Metadata["stderr"].(*os.File)
}

// OneLine folds a multi-line message (ONNX Runtime's errors have newlines)
// into one line.
func OneLine(s string) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// ClipArg shortens a command-line argument quoted in a message.
func ClipArg(s string) string {
	if len(s) <= 80 {
		return s
	}
	return fmt.Sprintf("%s… (%d bytes)", strings.ToValidUTF8(s[:60], ""), len(s))
}

// FlagsAfterArgs explains the most common cause of extra arguments: flags
// written after a positional argument, which urfave/cli v2 does not parse.
func FlagsAfterArgs(c *cli.Context) string {
	for _, a := range c.Args().Slice() {
		if strings.HasPrefix(a, "-") {
			return fmt.Sprintf(" (%q looks like a flag: put flags before the directory)", ClipArg(a))
		}
	}
	return ""
}

// NewLogger returns the logger the SDK warns through: one line
// "PROG: warning: message (key=value ...)" per record on w.
func NewLogger(w io.Writer, prog string) *slog.Logger { return slog.New(warnHandler{w: w, prog: prog}) }

type warnHandler struct {
	w     io.Writer
	prog  string
	attrs []slog.Attr
}

func (h warnHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelWarn }

func (h warnHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return warnHandler{w: h.w, prog: h.prog, attrs: append(append([]slog.Attr{}, h.attrs...), as...)}
}

func (h warnHandler) WithGroup(string) slog.Handler { return h }

func (h warnHandler) Handle(_ context.Context, r slog.Record) error {
	var kv []string
	for _, a := range h.attrs {
		kv = append(kv, a.String())
	}
	r.Attrs(func(a slog.Attr) bool { kv = append(kv, a.String()); return true })
	line := h.prog + ": warning: " + OneLine(r.Message)
	if len(kv) > 0 {
		line += " (" + strings.Join(kv, " ") + ")"
	}
	_, err := fmt.Fprintln(h.w, line)
	return err
}
