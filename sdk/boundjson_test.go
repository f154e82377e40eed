package sdk_test

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sedd-go/sedd/sdk"
)

// infiniteModel is a copy of tiny-absorb whose network gives every state a
// log score of -1000: its bound is over 709 nats per token, so that the
// perplexity bound exp(nats per token) is +Inf.
func infiniteModel(t *testing.T) string {
	t.Helper()
	dir := fixtureCopy(t, hAbsorb)
	setModel(t, dir, scoreGraph{n: 257, logScore: -1000}.encode())
	return dir
}

// TestNonFiniteBoundJSON evaluates text under a network whose bound is
// infinite and writes the result as JSON: it used to fail with "json:
// unsupported value: +Inf". Non-finite numbers are the strings "+Inf",
// "-Inf" and "NaN", finite ones numbers, and the JSON reads back.
func TestNonFiniteBoundJSON(t *testing.T) {
	m := open(t, infiniteModel(t))
	res, err := m.Evaluate(context.Background(), sdk.EvaluateRequest{Documents: []string{"a few words of text"}, Timesteps: 4, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	if !math.IsInf(res.Perplexity, 1) {
		t.Fatalf("perplexity %v, want +Inf from a network whose scores are exp(-1000)", res.Perplexity)
	}
	raw, err := json.Marshal(res)
	if err != nil {
		t.Fatalf("json.Marshal: %v", err)
	}
	var fields map[string]any
	if err := json.Unmarshal(raw, &fields); err != nil {
		t.Fatal(err)
	}
	if fields["perplexity"] != "+Inf" {
		t.Errorf("perplexity is written as %#v, want \"+Inf\": %s", fields["perplexity"], raw)
	}
	if _, ok := fields["tokens"].(float64); !ok {
		t.Errorf("tokens is written as %#v, want a number", fields["tokens"])
	}
	if w, ok := fields["windows"].([]any); !ok || len(w) != len(res.Windows) {
		t.Errorf("windows: %#v", fields["windows"])
	}
	var back sdk.EvaluateResult
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if !math.IsInf(back.Perplexity, 1) || back.Tokens != res.Tokens || len(back.Windows) != len(res.Windows) {
		t.Errorf("read back %+v, wrote %+v", back, res)
	}

	// every non-finite value, and finite ones
	b := sdk.Bound{Tokens: 3, Nats: math.Inf(-1), NatsStdErr: math.NaN(), NatsPerToken: 1.5, StdErr: math.Inf(1)}
	raw, err = json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"nats":"-Inf"`, `"nats_stderr":"NaN"`, `"nats_per_token":1.5`, `"stderr":"+Inf"`, `"perplexity":0`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("%s lacks %s", raw, want)
		}
	}
	var bb sdk.Bound
	if err := json.Unmarshal(raw, &bb); err != nil || !math.IsInf(bb.Nats, -1) || !math.IsNaN(bb.NatsStdErr) || bb.NatsPerToken != 1.5 {
		t.Errorf("read back %+v, %v", bb, err)
	}
	if err := json.Unmarshal([]byte(`{"nats":"lots"}`), &bb); err == nil {
		t.Error(`"lots" read as a number`)
	}
}

// TestInfiniteFixture keeps testdata/tiny-absorb-infinite, which the CLI's
// and the server's tests evaluate, equal to what infiniteModel builds
// (SEDD_UPDATE_FIXTURES=1 writes it).
func TestInfiniteFixture(t *testing.T) {
	const fixture = "testdata/tiny-absorb-infinite"
	dir := infiniteModel(t)
	for _, name := range []string{"model.onnx", "sedd.json", "tokenizer.json"} {
		want, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if os.Getenv("SEDD_UPDATE_FIXTURES") == "1" {
			if err := os.MkdirAll(fixture, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(fixture, name), want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if got, err := os.ReadFile(filepath.Join(fixture, name)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s/%s is not what infiniteModel builds (%v); run with SEDD_UPDATE_FIXTURES=1", fixture, name, err)
		}
	}
}
