package perplexity_test

import (
	"context"
	"github.com/sedd-go/sedd/internal/testlib"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/sedd-go/sedd/sdk"
	"github.com/sedd-go/sedd/sdk/perplexity"
)

func envInt(b *testing.B, name string, def int) int { return testlib.EnvInt(b, name, def) }

// BenchmarkEvaluatorScore times the generative-perplexity evaluator (the
// shipped twin, or SEDD_BENCH_EVALUATOR): one Evaluator.Score call on
// SEDD_BENCH_BATCH rows of its trained length (or SEDD_BENCH_LENGTH), which is
// one forward pass and a log-softmax per position. tokens/s counts the
// row tokens scored per second.
func BenchmarkEvaluatorScore(b *testing.B) {
	dir := os.Getenv("SEDD_BENCH_EVALUATOR")
	if dir == "" {
		dir = shippedAR
	}
	ev, err := perplexity.Open(dir, sdk.WithThreads(envInt(b, "SEDD_BENCH_THREADS", 2)))
	if err != nil {
		b.Fatal(err)
	}
	defer ev.Close()
	batch := envInt(b, "SEDD_BENCH_BATCH", 1)
	length := envInt(b, "SEDD_BENCH_LENGTH", ev.Length())
	rng := rand.New(rand.NewPCG(1, 2))
	rows := make([][]int64, batch)
	for i := range rows {
		rows[i] = make([]int64, length)
		for j := range rows[i] {
			rows[i][j] = int64(rng.IntN(ev.VocabSize()))
		}
	}
	req := perplexity.ScoreRequest{BatchSize: batch}
	ctx := context.Background()
	if _, err := ev.Score(ctx, rows, req); err != nil {
		b.Fatal(err)
	}
	var total time.Duration
	runs := 0
	for b.Loop() {
		runs++
		start := time.Now()
		if _, err := ev.Score(ctx, rows, req); err != nil {
			b.Fatal(err)
		}
		total += time.Since(start)
	}
	b.ReportMetric(float64(batch*length*runs)/total.Seconds(), "tokens/s")
}
