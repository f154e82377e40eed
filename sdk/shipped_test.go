package sdk_test

import (
	"context"
	"slices"
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
	// 5 blocks of 4 steps and the denoiser (every step moves some of ~100 masks: no reuse)
	if len(s.Tokens) != 512 || !strings.HasPrefix(s.Text, "The jury said") || res.NetworkCalls != 5*5 {
		t.Fatalf("%d tokens, %d network calls: %q", len(s.Tokens), res.NetworkCalls, s.Text)
	}
	for i, tok := range s.Tokens {
		if tok == int64(m.Info().MaskID) {
			t.Fatalf("mask left at %d", i)
		}
	}
}

// TestShippedSEDDModelReuse: the shipped model is time-independent, so a
// 256-step sample reuses the network's output while no token moves: at most
// length+1 calls, and the tokens of the run that calls the network every step.
func TestShippedSEDDModelReuse(t *testing.T) {
	if testing.Short() {
		t.Skip("samples 256 steps of the shipped model twice")
	}
	m := open(t, shippedSEDD, sdk.WithThreads(2))
	if !m.Info().TimeIndependent {
		t.Fatal("the shipped model is not time-independent (model.time_independent in sedd.json)")
	}
	req := sdk.SampleRequest{Steps: 256, Seed: 11, Prefix: "The jury"}
	cached, err := m.Sample(context.Background(), req)
	if err != nil {
		t.Fatalf("Sample: %v", err)
	}
	req.NoCache = true
	plain, err := m.Sample(context.Background(), req)
	if err != nil {
		t.Fatalf("Sample (NoCache): %v", err)
	}
	if n := m.Info().Length + 1; cached.NetworkCalls > n || plain.NetworkCalls != 257 {
		t.Errorf("network calls: %d cached (want ≤ %d), %d uncached (want 257)", cached.NetworkCalls, n, plain.NetworkCalls)
	}
	if !slices.Equal(cached.Samples[0].Tokens, plain.Samples[0].Tokens) {
		t.Errorf("cached and uncached tokens differ:\n%q\n%q", cached.Samples[0].Text, plain.Samples[0].Text)
	}
}
