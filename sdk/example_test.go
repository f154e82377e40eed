package sdk_test

import (
	"context"
	"errors"
	"fmt"

	"github.com/sedd-go/sedd/sdk"
)

// The examples run on the committed tiny fixture, a random-init model whose
// tokenizer has one token per byte: its samples are noise, but the same seed
// gives the same tokens on every run.

func ExampleOpen() {
	m, err := sdk.Open("testdata/tiny-absorb", sdk.WithThreads(1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	info := m.Info()
	fmt.Println(info.Name, info.Graph, info.Tokens, "tokens, length", info.Length)
	// Output: tiny-absorb absorb 256 tokens, length 32
}

func ExampleModel_Sample() {
	m, err := sdk.Open("testdata/tiny-absorb", sdk.WithThreads(1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	res, err := m.Sample(context.Background(), sdk.SampleRequest{Steps: 16, Batch: 2, Prefix: "Hi", Seed: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range res.Samples {
		fmt.Println(len(s.Tokens), s.Tokens[:6])
	}
	fmt.Println(res.NetworkCalls, "network calls")
	// Output:
	// 32 [72 105 1 178 194 234]
	// 32 [72 105 55 173 29 226]
	// 17 network calls
}

// The entropy-bounded sampler unmasks several positions per network call,
// the surest first, never two neighbours; the budget trades calls for
// fidelity to the model's law.
func ExampleModel_Sample_entropyBounded() {
	m, err := sdk.Open("testdata/tiny-absorb", sdk.WithThreads(1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	res, err := m.Sample(context.Background(), sdk.SampleRequest{Sampler: sdk.EntropyBounded, EntropyBudget: 12, Prefix: "Hi", Seed: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Samples[0].Tokens[:6])
	fmt.Println(res.NetworkCalls, "network calls for", len(res.Samples[0].Tokens)-2, "tokens")
	// Output:
	// [72 105 108 227 205 211]
	// 11 network calls for 30 tokens
}

// An infill template: literal text stays where it is, [MASK:n] spans are
// generated.
func ExampleModel_Sample_infill() {
	m, err := sdk.Open("testdata/tiny-absorb", sdk.WithThreads(1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	res, err := m.Sample(context.Background(), sdk.SampleRequest{Template: "ab[MASK:3]cd", Steps: 8, Seed: 2})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(res.Samples[0].Tokens)
	// Output: [97 98 92 44 34 99 100]
}

// Stream shows every step; breaking out of the loop stops the run.
func ExampleModel_Stream() {
	m, err := sdk.Open("testdata/tiny-absorb", sdk.WithThreads(1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	for step, err := range m.Stream(context.Background(), sdk.SampleRequest{Steps: 4, Seed: 3}) {
		if err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("step %d/%d t=%.2f masked %d\n", step.Index, step.Steps, step.T, step.Masked)
	}
	// Output:
	// step 1/5 t=0.75 masked 24
	// step 2/5 t=0.50 masked 19
	// step 3/5 t=0.25 masked 9
	// step 4/5 t=0.00 masked 0
	// step 5/5 t=0.00 masked 0
}

func ExampleModel_Evaluate() {
	m, err := sdk.Open("testdata/tiny-absorb", sdk.WithThreads(1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	res, err := m.Evaluate(context.Background(), sdk.EvaluateRequest{
		Documents: []string{"The quick brown fox jumps over the lazy dog."}, Timesteps: 64, Seed: 1,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%d tokens in %d windows: %.2f ± %.2f nats/token\n", res.Tokens, len(res.Windows), res.NatsPerToken, res.StdErr)
	// Output: 44 tokens in 2 windows: 5.48 ± 0.18 nats/token
}

// Errors say what is wrong; errors.Is tells a bad request from a bad model.
func ExampleErrBadRequest() {
	m, err := sdk.Open("testdata/tiny-absorb", sdk.WithThreads(1))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer m.Close()
	_, err = m.Sample(context.Background(), sdk.SampleRequest{Prefix: "far more than thirty-two bytes of prefix"})
	fmt.Println(errors.Is(err, sdk.ErrBadRequest), errors.Is(err, sdk.ErrBadModel))
	fmt.Println(err)
	// Output:
	// true false
	// bad request: the prefix takes 40 tokens but the length is 32; shorten it or raise the length
}
