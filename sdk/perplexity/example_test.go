package perplexity_test

import (
	"fmt"

	"github.com/sedd-go/sedd/sdk/perplexity"
)

func ExampleUnigramEntropy() {
	// A repetitive sample and a varied one: the mean hides neither.
	e, err := perplexity.UnigramEntropy([][]int64{{5, 5, 5, 5}, {1, 2, 3, 4}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%.3f ± %.3f nats\n", e.Mean, e.StdErr)
	// Output: 0.693 ± 0.693 nats
}

func ExampleSummarize() {
	// Two samples scored by an Evaluator: 2 and 3 nats per token.
	g, err := perplexity.Summarize([]perplexity.RowScore{{NLL: 254, Tokens: 127}, {NLL: 381, Tokens: 127}})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("perplexity %.1f [%.1f, %.1f] over %d samples\n", g.Perplexity, g.Low, g.High, g.Samples)
	// Output: perplexity 12.2 [4.6, 32.5] over 2 samples
}
