package sdk_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/sedd-go/sedd/sdk/internal/likelihood"
)

// randomRows returns n rows of length tokens drawn uniformly from [0, vocab)
// with a fixed seed: the cost of a forward pass does not depend on the text.
func randomRows(n, length, vocab int) [][]int64 {
	rng := rand.New(rand.NewPCG(1, 2))
	rows := make([][]int64, n)
	for i := range rows {
		rows[i] = make([]int64, length)
		for j := range rows[i] {
			rows[i][j] = int64(rng.IntN(vocab))
		}
	}
	return rows
}

// BenchmarkEvalStep times one network evaluation of the likelihood bound:
// SEDD_BENCH_BATCH windows of the model's length (or SEDD_BENCH_LENGTH), one
// Monte-Carlo timestep each, so each likelihood.Evaluate call is exactly one
// forward pass plus the Go side (corruption, score entropy). It reports
// forward-ms/step (ONNX Runtime), go-ms/step and tokens/s (window tokens
// scored per second).
func BenchmarkEvalStep(b *testing.B) {
	man, graph, noise, scorer := openBenchModel(b)
	batch := envInt(b, "SEDD_BENCH_BATCH", 1)
	length := envInt(b, "SEDD_BENCH_LENGTH", man.Length)
	seqs := randomRows(batch, length, man.Tokens)
	cfg := likelihood.Config{Graph: graph, Noise: noise, Timesteps: 1, BatchSize: batch, Seed: 1}
	ts := &timedScore{inner: scorer}
	ctx := context.Background()
	// Warm-up: shapes, tensors and ONNX Runtime's first-run costs.
	if _, err := likelihood.Evaluate(ctx, ts, seqs, cfg); err != nil {
		b.Fatal(err)
	}
	ts.elapsed, ts.calls = 0, 0
	var total time.Duration
	for b.Loop() {
		start := time.Now()
		if _, err := likelihood.Evaluate(ctx, ts, seqs, cfg); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
	}
	calls := float64(ts.calls)
	b.ReportMetric(ts.elapsed.Seconds()/calls*1e3, "forward-ms/step")
	b.ReportMetric((total-ts.elapsed).Seconds()/calls*1e3, "go-ms/step")
	b.ReportMetric(float64(batch*length)*calls/total.Seconds(), "tokens/s")
}
