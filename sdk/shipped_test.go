package sdk_test

import (
	"context"
	"strings"
	"testing"

	"github.com/sedd-go/sedd/sdk"
)

// The model shipped in models/ must load, match its golden PyTorch outputs
// and sample (its autoregressive twin is tested in sdk/perplexity).
const shippedSEDD = "../models/brown-sedd-small"

func TestShippedSEDDModel(t *testing.T) {
	m := open(t, shippedSEDD, sdk.WithThreads(2))
	rep, err := m.Verify(context.Background(), sdk.VerifyRequest{})
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	t.Logf("%d golden cases, max relative error %.3g", len(rep.Cases), rep.MaxRel)
	res, err := m.Sample(context.Background(), sdk.SampleRequest{Steps: 16, Seed: 1, Prefix: "The jury"})
	if err != nil {
		t.Fatalf("Sample: %v", err)
	}
	s := res.Samples[0]
	if len(s.Tokens) != m.Info().Length || !strings.HasPrefix(s.Text, "The jury") {
		t.Fatalf("sample of %d tokens %q", len(s.Tokens), s.Text)
	}
	for i, tok := range s.Tokens {
		if tok == int64(m.Info().MaskID) {
			t.Fatalf("mask left at %d after denoising", i)
		}
	}
}

// TestShippedSEDDModelLong: a 512-token sample from the 128-token shipped
// model, in blocks, keeps its prefix and has no mask left.
func TestShippedSEDDModelLong(t *testing.T) {
	if testing.Short() {
		t.Skip("samples five blocks of the shipped model")
	}
	m := open(t, shippedSEDD, sdk.WithThreads(2))
	res, err := m.Sample(context.Background(), sdk.SampleRequest{Steps: 4, Length: 512, BlockOverlap: 32, Seed: 3, Prefix: "The jury said"})
	if err != nil {
		t.Fatalf("Sample: %v", err)
	}
	s := res.Samples[0]
	if len(s.Tokens) != 512 || !strings.HasPrefix(s.Text, "The jury said") || res.NetworkCalls != 5*5 {
		t.Fatalf("%d tokens, %d network calls: %q", len(s.Tokens), res.NetworkCalls, s.Text)
	}
	for i, tok := range s.Tokens {
		if tok == int64(m.Info().MaskID) {
			t.Fatalf("mask left at %d", i)
		}
	}
}
