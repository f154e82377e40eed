package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sedd-go/sedd/internal/cmdline"
	"github.com/sedd-go/sedd/internal/server"
	"github.com/sedd-go/sedd/sdk"
)

func serveCommand() *cli.Command {
	d := server.Defaults()
	flags := []cli.Flag{
		&cli.StringFlag{Name: "addr", Value: "127.0.0.1:8080", Usage: "listen on `HOST:PORT` (port 0: any free port, logged)"},
		&cli.StringSliceFlag{Name: "model", Aliases: []string{"m"}, Usage: "serve the model `DIR` (repeat for more; the first is the default)",
			DefaultText: "$" + cmdline.EnvModel + ", else the built-in model"},
		&cli.BoolFlag{Name: "batching", Usage: "pack the rows of concurrent requests into shared forward passes (--batching=false: one pass per request and step)",
			DefaultText: "on with --device cuda; off on the CPU, where the network costs the same per row in a pass of 1 or 64 and concurrent requests use the cores better (benchmarks/README.md)"},
		&cli.IntFlag{Name: "max-batch", Value: 16, Usage: "with batching: the most rows of one shared forward pass"},
		&cli.DurationFlag{Name: "max-wait", Value: 5 * time.Millisecond, Usage: "with batching: the longest the rows of a step wait for others to share a pass"},
		&cli.IntFlag{Name: "max-active", Value: d.MaxActive, Usage: "requests running at once"},
		&cli.IntFlag{Name: "max-queue", Value: d.MaxQueue, Usage: "requests waiting for a slot; past it, 429 with Retry-After"},
		&cli.IntFlag{Name: "max-steps", Value: d.MaxSteps, Usage: "most sampling steps per request"},
		&cli.IntFlag{Name: "max-samples", Value: d.MaxSamples, Usage: "most samples (options.batch) per request"},
		&cli.IntFlag{Name: "max-length", Usage: "longest sequence a request may ask for", DefaultText: "each model's trained length"},
		&cli.IntFlag{Name: "max-timesteps", Value: d.MaxTimesteps, Usage: "most Monte-Carlo timesteps per evaluate request"},
		&cli.Int64Flag{Name: "max-body", Value: d.MaxBodyBytes, Usage: "largest request body in bytes"},
		&cli.DurationFlag{Name: "timeout", Value: d.Timeout, Usage: "longest a request may take, queueing included (504 past it)"},
		&cli.DurationFlag{Name: "drain", Value: 30 * time.Second, Usage: "after SIGTERM, how long requests in flight may finish before they are cancelled"},
		&cli.StringFlag{Name: "log-format", Value: "json", Usage: "request logs on stderr: json or text"},
		&cli.StringFlag{Name: "memory-budget", Usage: "most memory all requests running at once may need (the SDK's estimate), `SIZE` such as 8GiB; past it requests queue, and one needing more alone is refused with 503",
			DefaultText: "--memory-limit"},
		&cli.IntFlag{Name: "max-conns-per-client", Usage: "most connections one client address may hold; past it, 429 and the connection closed", DefaultText: "--max-active + --max-queue + 64"},
		&cli.DurationFlag{Name: "body-timeout", Value: d.BodyTimeout, Usage: "longest a request body may take to arrive (408 and the connection closed past it)"},
		&cli.StringSliceFlag{Name: "origins", EnvVars: []string{"SEDD_ORIGINS"}, Usage: "web `ORIGIN`s allowed to call the server besides local pages (comma-separated, * wildcards, * for any); others get 403"},
		&cli.StringSliceFlag{Name: "allowed-hosts", EnvVars: []string{"SEDD_ALLOWED_HOSTS"}, Usage: "on a loopback address, Host `NAME`s allowed besides localhost, IP addresses and this machine's name (* for any); others get 403"},
		&cli.BoolFlag{Name: "show-paths", Usage: "let /api/show answer the model directory's and the ONNX Runtime library's full paths (by default their base names)"},
	}
	for _, f := range cmdline.ModelFlags() {
		if f.Names()[0] != "model" {
			flags = append(flags, f)
		}
	}
	return &cli.Command{
		Name:      "serve",
		Usage:     "serve models over HTTP (ollama's and OpenAI's APIs, NDJSON streaming, cross-request batching)",
		ArgsUsage: " ",
		Description: `Endpoints: POST /api/generate, POST /api/evaluate, GET /api/tags, POST /api/show,
GET /api/health, GET /metrics (Prometheus), GET /api/openapi.yaml (the API's document).
SIGTERM or Ctrl-C stops accepting connections, lets requests in flight finish for --drain,
cancels the rest and exits 0.

   sedd serve --addr 127.0.0.1:8080
   curl -s localhost:8080/api/generate -d '{"prompt":"The jury","options":{"steps":16,"seed":7}}'`,
		Flags:  flags,
		Action: serve,
	}
}

func serve(c *cli.Context) error {
	if c.Args().Present() {
		return usagef("serve takes no arguments, got %q (models are --model DIR)%s", oneLine(clipArg(c.Args().First())), cmdline.FlagsAfterArgs(c))
	}
	_, stderr := streams(c)
	var handler slog.Handler
	switch f := c.String("log-format"); f {
	case "json":
		handler = slog.NewJSONHandler(stderr, nil)
	case "text":
		handler = slog.NewTextHandler(stderr, nil)
	default:
		return usagef("--log-format must be json or text, got %q", f)
	}
	log := slog.New(handler)
	for _, name := range []string{"max-batch", "max-active", "max-steps", "max-samples", "max-timesteps"} {
		if c.Int(name) < 1 {
			return usagef("--%s must be ≥ 1, got %d", name, c.Int(name))
		}
	}
	for _, name := range []string{"max-queue", "max-length"} {
		if c.Int(name) < 0 {
			return usagef("--%s must be ≥ 0, got %d", name, c.Int(name))
		}
	}
	if c.Int64("max-body") < 1 || c.Duration("timeout") <= 0 || c.Duration("drain") < 0 {
		return usagef("--max-body and --timeout must be > 0, --drain ≥ 0")
	}
	opts, err := modelOptions(c)
	if err != nil {
		return err
	}
	opts = append(opts, sdk.WithLogger(log))
	batching := c.Bool("batching")
	if !c.IsSet("batching") {
		batching = strings.HasPrefix(strings.ToLower(strings.TrimSpace(c.String("device"))), "cuda") ||
			strings.EqualFold(strings.TrimSpace(c.String("device")), "gpu")
	}
	if batching {
		opts = append(opts, sdk.WithBatching(c.Int("max-batch"), c.Duration("max-wait")))
	}
	dirs := c.StringSlice("model")
	if len(dirs) == 0 {
		dirs = []string{""} // $SEDD_MODEL, else the built-in model
	}
	var models []server.Model
	defer func() {
		for _, m := range models {
			m.Model.Close()
		}
	}()
	for _, dir := range dirs {
		m, err := cmdline.OpenDir(dir, opts)
		if err != nil {
			return err
		}
		models = append(models, server.Model{Name: m.Info().Name, Model: m})
		for _, other := range models[:len(models)-1] {
			if other.Name == m.Info().Name {
				return usagef("two models are named %q (sedd.json's name): serve each once", other.Name)
			}
		}
	}
	var budget int64
	if v := c.String("memory-budget"); v != "" {
		if budget, err = cmdline.ParseSize(v); err != nil {
			return usagef("--memory-budget: %v", err)
		}
	}
	srv, err := server.New(models, server.Config{
		MaxBodyBytes: c.Int64("max-body"), MaxSteps: c.Int("max-steps"), MaxSamples: c.Int("max-samples"),
		MaxLength: c.Int("max-length"), MaxTimesteps: c.Int("max-timesteps"),
		MaxActive: c.Int("max-active"), MaxQueue: c.Int("max-queue"), Timeout: c.Duration("timeout"),
		MemoryBudget: budget, MaxConnsPerClient: c.Int("max-conns-per-client"), BodyTimeout: c.Duration("body-timeout"),
		AllowedOrigins: splitList(c.StringSlice("origins")), AllowedHosts: splitList(c.StringSlice("allowed-hosts")),
		DisclosePaths: c.Bool("show-paths"),
		Logger:        log,
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.String("addr"))
	if err != nil {
		return fmt.Errorf("listen on %s: %w", c.String("addr"), err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	names := make([]string, len(models))
	for i, m := range models {
		names[i] = m.Name
	}
	log.Info("listening", "addr", ln.Addr().String(), "models", names, "batching", batching,
		"max_batch", c.Int("max-batch"), "max_wait", c.Duration("max-wait").String(), "threads", models[0].Model.Info().Threads)
	return srv.Serve(ctx, ln, c.Duration("drain"))
}

// splitList splits the comma-separated values of a repeatable flag.
func splitList(vals []string) []string {
	var out []string
	for _, v := range vals {
		for _, p := range strings.Split(v, ",") {
			if p = strings.TrimSpace(p); p != "" {
				out = append(out, p)
			}
		}
	}
	return out
}
