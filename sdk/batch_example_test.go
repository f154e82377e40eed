package sdk_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/sedd-go/sedd/sdk"
)

// Four goroutines sample from one Model opened with WithBatching: their rows
// share forward passes, and each seed gives the tokens it gives alone.
func ExampleWithBatching() {
	m, err := sdk.Open("testdata/tiny-absorb", sdk.WithThreads(1), sdk.WithBatching(16, 20*time.Millisecond))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	ctx := context.Background()
	results := make([]*sdk.SampleResult, 4)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			results[i], _ = m.Sample(ctx, sdk.SampleRequest{Steps: 8, Seed: uint64(i)})
		})
	}
	wg.Wait()
	st := m.BatchStats()
	fmt.Println("score calls:", st.Calls, "shared passes:", st.Passes < st.Calls)

	alone, _ := m.Sample(ctx, sdk.SampleRequest{Steps: 8, Seed: 3})
	fmt.Println("seed 3 as alone:", slices.Equal(alone.Samples[0].Tokens, results[3].Samples[0].Tokens))
	// Output:
	// score calls: 36 shared passes: true
	// seed 3 as alone: true
}
