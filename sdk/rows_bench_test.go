package sdk_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sedd-go/sedd/sdk/diffusion"
	"github.com/sedd-go/sedd/sdk/internal/manifest"
	"github.com/sedd-go/sedd/sdk/internal/onnxrt"
)

// BenchmarkRowsOnDemand times sampling through one graph of the model
// directory $SEDD_BENCH_MODEL (skipped when unset) with the output head on
// every position ("full", what the SDK ran before the rows input) and on the
// positions the sampler reads ("rows"), at batch 1 × the trained length and
// $SEDD_BENCH_THREADS threads (default 2):
//
//	analytic: a whole sample of $SEDD_BENCH_STEPS steps (default 64) and the
//	denoiser; first-hitting: the first $SEDD_BENCH_FH_CALLS calls (default 16)
//	of a first-hitting sample (one head row per call with rows on demand).
//
// Metrics: s/call, s/sample (analytic), the share of positions whose head
// ran, and the peak resident set while sampling (MiB; Linux). Run each
// sub-benchmark in a process of its own so that the peaks are its own:
//
//	SEDD_BENCH_MODEL=DIR go test -run '^$' -bench 'RowsOnDemand/model.int8.onnx/analytic/rows$' -benchtime 1x ./sdk
func BenchmarkRowsOnDemand(b *testing.B) {
	dir := os.Getenv("SEDD_BENCH_MODEL")
	if dir == "" {
		b.Skip("set SEDD_BENCH_MODEL to a model directory")
	}
	man, err := manifest.Load(dir)
	if err != nil {
		b.Fatal(err)
	}
	threads := envInt(b, "SEDD_BENCH_THREADS", 2)
	graphs := []string{man.ONNX.File}
	for _, v := range man.Variants {
		graphs = append(graphs, v.ONNX.File)
	}
	for _, graph := range graphs {
		b.Run(graph, func(b *testing.B) {
			for _, pred := range []string{"analytic", "first-hitting"} {
				b.Run(pred, func(b *testing.B) {
					for _, head := range []string{"full", "rows"} {
						b.Run(head, func(b *testing.B) {
							benchRows(b, dir, graph, man, threads, pred, head == "rows")
						})
					}
				})
			}
		})
	}
}

func benchRows(b *testing.B, dir, graph string, man *manifest.Manifest, threads int, pred string, rows bool) {
	sess, err := onnxrt.OpenFile(filepath.Join(dir, graph), man.N(), onnxrt.WithIntraOpThreads(threads))
	if err != nil {
		b.Fatal(err)
	}
	defer sess.Close()
	scorer, err := sess.NewScorer()
	if err != nil {
		b.Fatal(err)
	}
	defer scorer.Close()
	g, noise, err := man.Diffusion()
	if err != nil {
		b.Fatal(err)
	}
	cfg := diffusion.Config{Graph: g, Noise: noise, Steps: envInt(b, "SEDD_BENCH_STEPS", 64), Denoise: true,
		Batch: 1, Length: man.Length, Seed: 1}
	limit := 0
	if pred == "first-hitting" {
		cfg.Predictor = diffusion.FirstHitting
		limit = envInt(b, "SEDD_BENCH_FH_CALLS", 16)
	}
	errStop := errors.New("enough calls")
	calls := 0
	cfg.Progress = func(diffusion.Step) error {
		calls++
		if limit > 0 && calls >= limit {
			return errStop
		}
		return nil
	}
	counted := &rowCounter{Scorer: scorer}
	var score diffusion.ScoreFunc = counted
	if !rows {
		score = fullHead{scorer}
	}
	run := func() time.Duration {
		calls = 0
		s, err := diffusion.NewSampler(cfg)
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		if _, err := s.Run(context.Background(), score); err != nil && !errors.Is(err, errStop) {
			b.Fatal(err)
		}
		return time.Since(start)
	}
	// one warm-up call, so that ONNX Runtime's first-run work is not timed
	warm := cfg
	cfg.Steps, cfg.Predictor, limit = 1, diffusion.Analytic, 0
	run()
	cfg, limit = warm, 0
	if pred == "first-hitting" {
		limit = envInt(b, "SEDD_BENCH_FH_CALLS", 16)
	}
	*counted = rowCounter{Scorer: scorer}
	reset := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
	b.ResetTimer()
	d := run()
	b.StopTimer()
	b.ReportMetric(d.Seconds()/float64(calls), "s/call")
	if pred == "analytic" {
		b.ReportMetric(d.Seconds(), "s/sample")
	}
	share := 1.0
	if rows && counted.positions > 0 {
		share = float64(counted.rows) / float64(counted.positions)
	}
	b.ReportMetric(share, "head-share")
	if peak := vmHWM(); reset && peak > 0 {
		b.ReportMetric(float64(peak)/(1<<20), "peak-MiB")
	}
}

// vmHWM returns the process's peak resident set (bytes) since the last reset
// through /proc/self/clear_refs, or 0 where /proc/self/status has none.
func vmHWM() int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			if fields := strings.Fields(rest); len(fields) == 2 && fields[1] == "kB" {
				if kb, err := strconv.ParseInt(fields[0], 10, 64); err == nil {
					return kb << 10
				}
			}
		}
	}
	return 0
}
