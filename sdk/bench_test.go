package sdk_test

// Benchmarks of the SDK on real models. The sampling-step benchmark splits
// each step into the ONNX Runtime forward pass and the Go side (the
// predictor's draws, projection and bookkeeping), so that the cost of our
// sampling loop can be compared with the network's; the evaluation benchmark
// times one network evaluation of the likelihood bound (the generative-
// perplexity evaluator's is in sdk/perplexity).
//
//	SEDD_BENCH_MODEL=$PWD/out/sedd-small-random SEDD_BENCH_STEPS=16 \
//	  go test ./sdk -run '^$' -bench SampleStep -benchtime 1x
//
// Without SEDD_BENCH_MODEL they run on the shipped model,
// models/brown-sedd-small, so that `go test ./sdk -run '^$' -bench .` needs no
// setup beyond ONNX Runtime. Every benchmark reports tokens/s, for benchstat.

import (
	"context"
	"github.com/sedd-go/sedd/internal/testlib"
	"os"
	goruntime "runtime"
	"testing"
	"time"

	"github.com/sedd-go/sedd/sdk/diffusion"
	"github.com/sedd-go/sedd/sdk/internal/manifest"
	"github.com/sedd-go/sedd/sdk/internal/onnxrt"
)

// timedScore wraps a ScoreFunc and accumulates the time spent inside it.
type timedScore struct {
	inner   diffusion.ScoreFunc
	elapsed time.Duration
	calls   int
}

func (t *timedScore) Score(ctx context.Context, x []int64, sigma []float32, batch, length int) (diffusion.Scores, error) {
	start := time.Now()
	s, err := t.inner.Score(ctx, x, sigma, batch, length)
	t.elapsed += time.Since(start)
	t.calls++
	return s, err
}

func envInt(b *testing.B, name string, def int) int { return testlib.EnvInt(b, name, def) }

// benchModel returns SEDD_BENCH_MODEL or the shipped model.
func benchModel() string {
	if dir := os.Getenv("SEDD_BENCH_MODEL"); dir != "" {
		return dir
	}
	return shippedSEDD
}

// openBenchModel loads benchModel() for a benchmark: its manifest, diffusion
// graph and noise, and a Scorer with SEDD_BENCH_THREADS ONNX Runtime threads
// (default 2), closed when the benchmark ends.
func openBenchModel(b *testing.B) (*manifest.Manifest, diffusion.Graph, diffusion.Noise, *onnxrt.Scorer) {
	b.Helper()
	dir := benchModel()
	man, err := manifest.Load(dir)
	if err != nil {
		b.Fatal(err)
	}
	graph, noise, err := man.Diffusion()
	if err != nil {
		b.Fatal(err)
	}
	sess, err := onnxrt.Open(dir, man, onnxrt.WithIntraOpThreads(envInt(b, "SEDD_BENCH_THREADS", 2)))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sess.Close() })
	scorer, err := sess.NewScorer()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { scorer.Close() })
	return man, graph, noise, scorer
}

// BenchmarkSampleStep runs whole sampling runs (SEDD_BENCH_STEPS steps plus
// the denoiser, batch SEDD_BENCH_BATCH, length SEDD_BENCH_LENGTH or the
// model's) and reports per network evaluation: forward-ms (ONNX Runtime),
// go-ms (everything else), go-share-% and allocs/step (Go heap allocations of
// the whole step, ONNX Runtime's Go binding included); tokens/s counts the
// tokens of finished samples per second of whole runs.
func BenchmarkSampleStep(b *testing.B) {
	man, graph, noise, scorer := openBenchModel(b)
	steps := envInt(b, "SEDD_BENCH_STEPS", 16)
	batch := envInt(b, "SEDD_BENCH_BATCH", 1)
	length := envInt(b, "SEDD_BENCH_LENGTH", man.Length)
	for _, pred := range []diffusion.Predictor{diffusion.Analytic, diffusion.Euler} {
		b.Run(pred.String(), func(b *testing.B) {
			s, err := diffusion.NewSampler(diffusion.Config{
				Graph: graph, Noise: noise, Predictor: pred, Steps: steps, Denoise: true,
				Batch: batch, Length: length, Seed: 1,
			})
			if err != nil {
				b.Fatal(err)
			}
			ts := &timedScore{inner: scorer}
			ctx := context.Background()
			// Warm-up: shapes, tensors and ONNX Runtime's first-run costs.
			if _, err := s.Run(ctx, ts); err != nil {
				b.Fatal(err)
			}
			ts.elapsed, ts.calls = 0, 0
			var total time.Duration
			var mallocs int64
			var ms goruntime.MemStats
			runs := 0
			for b.Loop() {
				runs++
				goruntime.ReadMemStats(&ms)
				before := ms.Mallocs
				start := time.Now()
				if _, err := s.Run(ctx, ts); err != nil {
					b.Fatal(err)
				}
				total += time.Since(start)
				goruntime.ReadMemStats(&ms)
				mallocs += int64(ms.Mallocs-before) - 1 // Run's one result slice
			}
			calls := float64(ts.calls)
			fwd := ts.elapsed.Seconds() / calls
			goSide := (total - ts.elapsed).Seconds() / calls
			b.ReportMetric(fwd*1e3, "forward-ms/step")
			b.ReportMetric(goSide*1e3, "go-ms/step")
			b.ReportMetric(100*goSide/fwd, "go-share-%")
			b.ReportMetric(float64(mallocs)/calls, "allocs/step")
			b.ReportMetric(float64(batch*length)*calls/total.Seconds(), "tokens·steps/s")
			b.ReportMetric(float64(batch*length*runs)/total.Seconds(), "tokens/s")
		})
	}
}
