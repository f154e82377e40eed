package main

import (
	"encoding/json"
	"fmt"
	"math"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/sedd-go/sedd/internal/cmdline"
	"github.com/sedd-go/sedd/sdk"
)

// benchSpeedCommand times whole sampling runs through the SDK's public
// Sample call, one run per step count after one warm-up run, and reports
// what export/reference_sampler.py reports for the PyTorch reference, under
// the same JSON keys, so that benchmarks/speed.py can put them side by side.
func benchSpeedCommand() *cli.Command {
	return &cli.Command{
		Name:  "speed",
		Usage: "time whole samples: seconds per step, the network's share, allocations, peak memory",
		Description: "Each step count gets one warm-up run (1 step) and then one timed run of Sample with " +
			"--batch samples of --length tokens. step_s is the run's wall time over its network evaluations " +
			"(steps + denoiser); forward_s the part inside ONNX Runtime; other_s the rest (the SDK's own work). " +
			"Peak memory is the process's peak resident set during the timed run (Linux) and over the whole process.",
		ArgsUsage: " ",
		Flags: append([]cli.Flag{
			&cli.StringFlag{Name: "steps", Value: "64", Usage: "comma-separated step counts, e.g. 64,1024"},
			&cli.StringFlag{Name: "sampler", Aliases: []string{"predictor"}, Value: "analytic", Usage: "step rule: analytic, euler or none"},
			&cli.IntFlag{Name: "batch", Value: 1, Usage: "samples per run"},
			&cli.IntFlag{Name: "length", Usage: "sequence length in tokens", DefaultText: "the model's trained length"},
			&cli.Uint64Flag{Name: "seed", Value: 0, Usage: "random seed of the timed runs"},
			&cli.BoolFlag{Name: "json", Usage: "write one JSON object per timed run per line"},
			&cli.StringFlag{Name: "reuse", Value: "on", Usage: "on a time-independent model: on (the SDK's default: skip the network while no token moved), " +
				"off (call it every step, sdk.SampleRequest.NoCache), or both (each step count timed both ways, side by side, and their tokens compared)"},
		}, cmdline.ModelFlags()...),
		Action: benchSpeed,
	}
}

// speedRow is one timed run; the keys match export/reference_sampler.py.
type speedRow struct {
	Impl           string  `json:"impl"`
	ORT            string  `json:"onnxruntime"`
	Model          string  `json:"model"`
	Predictor      string  `json:"predictor"`
	Steps          int     `json:"steps"`
	Batch          int     `json:"batch"`
	Length         int     `json:"length"`
	Threads        int     `json:"threads"`
	Precision      string  `json:"precision,omitempty"`
	Variant        string  `json:"variant,omitempty"`
	GraphCache     string  `json:"graph_cache,omitempty"`
	NetworkCalls   int     `json:"network_calls"`
	Reuse          string  `json:"reuse"` // on, off, or n/a (a time-conditioned model)
	SameTokens     *bool   `json:"same_tokens_as_reuse,omitempty"`
	LoadS          float64 `json:"load_s"`
	SampleS        float64 `json:"sample_s"`
	StepS          float64 `json:"step_s"`
	ForwardS       float64 `json:"forward_s"`
	OtherS         float64 `json:"other_s"`
	OtherShare     float64 `json:"other_share"`
	AllocsPerStep  float64 `json:"allocs_per_step"`
	PeakSamplingMi float64 `json:"peak_rss_sampling_mib,omitempty"`
	PeakMi         float64 `json:"peak_rss_mib,omitempty"`
}

// parseSteps reads a comma-separated list of step counts.
func parseSteps(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, usagef("--steps: %q is not a step count ≥ 1 (give a list such as 8,16,64)", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func benchSpeed(c *cli.Context) error {
	if c.Args().Present() {
		return usagef("speed takes no arguments, got %q", cmdline.ClipArg(c.Args().First()))
	}
	steps, err := parseSteps(c.String("steps"))
	if err != nil {
		return err
	}
	pred := c.String("sampler")
	var reuses []bool // NoCache of each timed run per step count
	switch c.String("reuse") {
	case "on":
		reuses = []bool{false}
	case "off":
		reuses = []bool{true}
	case "both":
		reuses = []bool{false, true}
	default:
		return usagef("--reuse: %q is not on, off or both", cmdline.ClipArg(c.String("reuse")))
	}
	if c.Int("batch") < 1 {
		return usagef("--batch must be ≥ 1, got %d", c.Int("batch"))
	}
	opts, err := cmdline.ModelOptions(c)
	if err != nil {
		return err
	}
	stdout, stderr := cmdline.Streams(c)
	start := time.Now()
	m, err := cmdline.OpenModel(c, "", opts)
	if err != nil {
		return err
	}
	defer m.Close()
	load := time.Since(start)
	info := m.Info()
	threads := info.Threads
	var rows []speedRow
	for _, n := range steps {
		var reuseTokens [][]int64
		for _, noCache := range reuses {
			req := sdk.SampleRequest{Steps: n, Sampler: pred, Batch: c.Int("batch"), Length: c.Int("length"), Seed: c.Uint64("seed"), NoCache: noCache}
			warm := req
			warm.Steps = 1
			if _, err := m.Sample(c.Context, warm); err != nil {
				return err
			}
			mode := "n/a"
			if info.TimeIndependent {
				mode = map[bool]string{false: "on", true: "off"}[noCache]
			}
			fmt.Fprintf(stderr, "sedd-bench speed: %d steps (reuse %s) …\n", n, mode)
			reset := resetPeakRSS()
			var ms goruntime.MemStats
			goruntime.ReadMemStats(&ms)
			mallocs := ms.Mallocs
			res, err := m.Sample(c.Context, req)
			if err != nil {
				return err
			}
			goruntime.ReadMemStats(&ms)
			calls := float64(res.NetworkCalls)
			row := speedRow{
				Impl: "sedd-go", ORT: info.ORTVersion, Model: info.Name, Predictor: res.Sampler,
				Steps: res.Steps, Batch: len(res.Samples), Length: res.Length, Threads: threads, NetworkCalls: res.NetworkCalls,
				Precision: info.Precision, Variant: info.Variant, GraphCache: info.GraphCache,
				LoadS: load.Seconds(), SampleS: res.Elapsed.Seconds(), StepS: res.Elapsed.Seconds() / calls,
				ForwardS: res.Network.Seconds() / calls, OtherS: (res.Elapsed - res.Network).Seconds() / calls,
				OtherShare:    (res.Elapsed - res.Network).Seconds() / res.Elapsed.Seconds(),
				AllocsPerStep: float64(ms.Mallocs-mallocs) / calls,
				PeakMi:        float64(peakRSS()) / (1 << 20), Reuse: mode,
			}
			var toks [][]int64
			for _, smp := range res.Samples {
				toks = append(toks, smp.Tokens)
			}
			if !noCache {
				reuseTokens = toks
			} else if reuseTokens != nil {
				same := slices.EqualFunc(toks, reuseTokens, slices.Equal[[]int64])
				row.SameTokens = &same
			}
			if reset {
				row.PeakSamplingMi = row.PeakMi
				row.PeakMi = 0 // the whole-process peak was reset; only the run's is known
			}
			rows = append(rows, row)
			if c.Bool("json") {
				enc := json.NewEncoder(stdout)
				if err := enc.Encode(row); err != nil {
					return err
				}
			}
		}
	}
	if c.Bool("json") {
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "model %s (graph %s, %s), %s, batch %d × length %d, %d threads, ONNX Runtime %s, opened in %s\n",
		info.Name, info.Variant, info.Precision, rows[0].Predictor, c.Int("batch"), rows[0].Length, threads, info.ORTVersion,
		load.Round(time.Millisecond))
	fmt.Fprintln(tw, "steps\treuse\tnetwork calls\twhole sample\tper call\tnetwork\tSDK side\tSDK share\tallocs/call\tpeak RSS")
	var notes []string
	for i, r := range rows {
		peak := "n/a"
		if r.PeakSamplingMi > 0 {
			peak = fmt.Sprintf("%.0f MiB", r.PeakSamplingMi)
		} else if r.PeakMi > 0 {
			peak = fmt.Sprintf("%.0f MiB (process)", r.PeakMi)
		}
		fmt.Fprintf(tw, "%d\t%s\t%d\t%s\t%.1f ms\t%.1f ms\t%.2f ms\t%.2f %%\t%.1f\t%s\n", r.Steps, r.Reuse, r.NetworkCalls,
			time.Duration(r.SampleS*float64(time.Second)).Round(time.Millisecond), r.StepS*1e3, r.ForwardS*1e3,
			r.OtherS*1e3, 100*r.OtherShare, math.Round(r.AllocsPerStep*10)/10, peak)
		if r.SameTokens != nil && i > 0 {
			same := "the same tokens"
			if !*r.SameTokens {
				same = "DIFFERENT TOKENS (a bug: please report it)"
			}
			notes = append(notes, fmt.Sprintf("%d steps: reuse is %.2f× as fast as a network call every step (%d calls against %d), with %s",
				r.Steps, r.SampleS/rows[i-1].SampleS, rows[i-1].NetworkCalls, r.NetworkCalls, same))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range notes {
		fmt.Fprintln(stdout, n)
	}
	return nil
}
