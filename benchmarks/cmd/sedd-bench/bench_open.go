package main

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sedd-go/sedd/internal/cmdline"
	"github.com/sedd-go/sedd/sdk"
)

func benchOpenCommand() *cli.Command {
	return &cli.Command{
		Name:  "open",
		Usage: "time Open: without the optimized-graph cache, building an entry, and from a warm entry",
		Description: "Opens the model --repeat times in each way, the ways taking turns so that the machine's\n" +
			"state changes alike for all, and reports the median and the fastest of each:\n" +
			"  before    model.onnx (--baseline), no cache: what Open did before variants and the cache\n" +
			"  uncached  the --precision graph, no cache\n" +
			"  build     an empty cache each time: read and hash the file, optimize, write the entry\n" +
			"  warm      an entry built beforehand: the file's identity checked, the entry's files\n" +
			"            checked, the optimized graph loaded\n" +
			"Each Open is followed by Close. The model file stays in the page cache throughout, as it\n" +
			"is for a service that restarts; a machine that just booted reads it from disk first.",
		Flags: append([]cli.Flag{
			&cli.IntFlag{Name: "repeat", Value: 5, Usage: "opens per way"},
			&cli.StringFlag{Name: "ways", Value: "before,uncached,build,warm", Usage: "comma-separated ways to time"},
			&cli.StringFlag{Name: "baseline", Value: "reference", Usage: "the graph of the before way"},
			&cli.BoolFlag{Name: "json", Usage: "write one JSON object per way per line"},
		}, cmdline.ModelFlags()...),
		Action: benchOpen,
	}
}

type openRow struct {
	Way        string    `json:"way"`
	Model      string    `json:"model"`
	Variant    string    `json:"variant"`
	Precision  string    `json:"precision"`
	GraphCache string    `json:"graph_cache"`
	ORT        string    `json:"onnxruntime"`
	Threads    int       `json:"threads"`
	Repeat     int       `json:"repeat"`
	MedianS    float64   `json:"median_s"`
	MinS       float64   `json:"min_s"`
	TimesS     []float64 `json:"times_s"`
}

func benchOpen(c *cli.Context) error {
	if c.Args().Present() {
		return usagef("open takes no arguments, got %q (use --model DIR)", cmdline.ClipArg(c.Args().First()))
	}
	if c.Int("repeat") < 1 {
		return usagef("--repeat must be ≥ 1, got %d", c.Int("repeat"))
	}
	if c.String("model") == "" && os.Getenv(cmdline.EnvModel) == "" {
		return usagef("open needs --model DIR: the built-in model is opened from memory and never cached")
	}
	ways := strings.Split(c.String("ways"), ",")
	for _, w := range ways {
		if !slices.Contains([]string{"before", "uncached", "build", "warm"}, w) {
			return usagef("--ways: %q is not before, uncached, build or warm", w)
		}
	}
	base, err := cmdline.ModelOptions(c)
	if err != nil {
		return err
	}
	stdout, stderr := cmdline.Streams(c)
	scratch, err := os.MkdirTemp("", "sedd-bench-open-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	warm := scratch + "/warm"
	optsFor := func(way string, i int) []sdk.Option {
		switch way {
		case "before":
			return append(slices.Clip(base), sdk.WithCacheDir(""), sdk.WithPrecision(c.String("baseline")))
		case "uncached":
			return append(slices.Clip(base), sdk.WithCacheDir(""))
		case "build":
			return append(slices.Clip(base), sdk.WithCacheDir(fmt.Sprintf("%s/build-%d", scratch, i)))
		}
		return append(slices.Clip(base), sdk.WithCacheDir(warm))
	}
	// The warm entry, and one open of each way not timed.
	for _, w := range ways {
		m, err := cmdline.OpenModel(c, "", optsFor(w, -1))
		if err != nil {
			return err
		}
		m.Close()
	}
	rows := map[string]*openRow{}
	for i := 0; i < c.Int("repeat"); i++ {
		for _, w := range ways {
			start := time.Now()
			m, err := cmdline.OpenModel(c, "", optsFor(w, i))
			if err != nil {
				return err
			}
			d := time.Since(start)
			info := m.Info()
			m.Close()
			if w == "build" {
				os.RemoveAll(fmt.Sprintf("%s/build-%d", scratch, i))
			}
			r := rows[w]
			if r == nil {
				r = &openRow{Way: w, Model: info.Name, Variant: info.Variant, Precision: info.Precision,
					GraphCache: info.GraphCache, ORT: info.ORTVersion, Threads: info.Threads}
				rows[w] = r
			}
			r.TimesS = append(r.TimesS, d.Seconds())
			fmt.Fprintf(stderr, "sedd-bench open: %s %d: %s (%s)\n", w, i+1, d.Round(time.Millisecond), info.GraphCache)
		}
	}
	for _, r := range rows {
		sorted := slices.Sorted(slices.Values(r.TimesS))
		r.Repeat, r.MinS, r.MedianS = len(sorted), sorted[0], sorted[len(sorted)/2]
		if len(sorted)%2 == 0 {
			r.MedianS = (sorted[len(sorted)/2-1] + sorted[len(sorted)/2]) / 2
		}
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	if !c.Bool("json") {
		fmt.Fprintln(tw, "way\tgraph\tcache\tmedian\tfastest\tvs before (median)")
	}
	for _, w := range ways {
		r := rows[w]
		if c.Bool("json") {
			if err := json.NewEncoder(stdout).Encode(r); err != nil {
				return err
			}
			continue
		}
		ratio := ""
		if u := rows["before"]; u != nil && u.MedianS > 0 {
			ratio = fmt.Sprintf("%.2f×", r.MedianS/u.MedianS)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", w, r.Variant, r.GraphCache,
			time.Duration(r.MedianS*float64(time.Second)).Round(time.Millisecond),
			time.Duration(r.MinS*float64(time.Second)).Round(time.Millisecond), ratio)
	}
	return tw.Flush()
}
