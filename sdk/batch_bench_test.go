package sdk_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/sedd-go/sedd/sdk"
)

// BenchmarkForwardRows times one forward pass of B rows (the trained length,
// all masks, σ = 1) and reports ms/row and cpu-ms/row (the process's CPU
// time, which other work on a shared machine does not inflate): what sharing
// a pass can save per row on this machine. Batching pays where a pass of one
// row leaves the device idle; where the cost per row does not fall with B,
// it cannot raise throughput.
//
//	go test ./sdk -run '^$' -bench ForwardRows -benchtime 20x
func BenchmarkForwardRows(b *testing.B) {
	man, _, _, scorer := openBenchModel(b)
	L, n := man.Length, man.N()
	for _, B := range []int{1, 2, 4, 8, 16, 32, 64} {
		b.Run(fmt.Sprintf("rows=%d", B), func(b *testing.B) {
			x := make([]int64, B*L)
			for i := range x {
				x[i] = int64(n - 1)
			}
			sigma := make([]float32, B)
			for i := range sigma {
				sigma[i] = 1
			}
			ctx := context.Background()
			if _, err := scorer.Score(ctx, x, sigma, B, L); err != nil {
				b.Fatal(err)
			}
			cpu := cpuTime()
			for b.Loop() {
				if _, err := scorer.Score(ctx, x, sigma, B, L); err != nil {
					b.Fatal(err)
				}
			}
			rows := float64(b.N * B)
			perRow := b.Elapsed().Seconds() / rows
			b.ReportMetric(perRow*1e3, "ms/row")
			b.ReportMetric((cpuTime()-cpu).Seconds()/rows*1e3, "cpu-ms/row")
			b.ReportMetric(float64(L)/perRow, "tokens/s")
		})
	}
}

// BenchmarkConcurrentSamples runs SEDD_BENCH_CLIENTS (default 16) concurrent
// Sample calls of SEDD_BENCH_STEPS steps (default 16) on one Model, with
// cross-request batching (rows=SEDD_BENCH_BATCH_ROWS, default 16) and
// without, and reports samples/s: the SDK's side of what sedd-bench load
// measures through HTTP.
func BenchmarkConcurrentSamples(b *testing.B) {
	clients := envInt(b, "SEDD_BENCH_CLIENTS", 16)
	steps := envInt(b, "SEDD_BENCH_STEPS", 16)
	rows := envInt(b, "SEDD_BENCH_BATCH_ROWS", 16)
	for _, batching := range []bool{true, false} {
		b.Run(fmt.Sprintf("batching=%v", batching), func(b *testing.B) {
			opts := []sdk.Option{sdk.WithThreads(envInt(b, "SEDD_BENCH_THREADS", 2))}
			if batching {
				opts = append(opts, sdk.WithBatching(rows, 5*time.Millisecond))
			}
			m, err := sdk.Open(benchModel(), opts...)
			if err != nil {
				b.Fatal(err)
			}
			defer m.Close()
			ctx := context.Background()
			if _, err := m.Sample(ctx, sdk.SampleRequest{Steps: 1}); err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				var wg sync.WaitGroup
				for i := range clients {
					wg.Go(func() {
						if _, err := m.Sample(ctx, sdk.SampleRequest{Steps: steps, Seed: uint64(i)}); err != nil {
							b.Error(err)
						}
					})
				}
				wg.Wait()
			}
			b.ReportMetric(float64(clients*b.N)/b.Elapsed().Seconds(), "samples/s")
			st := m.BatchStats()
			b.ReportMetric(float64(st.Calls)/float64(st.Passes), "calls/pass")
		})
	}
}
