package sdk_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/sedd-go/sedd/sdk"
)

func TestEvaluateWindows(t *testing.T) {
	text := strings.Repeat("the jury said ", 5) // 70 bytes: two full windows of 32 and one of 6
	for _, tc := range []struct {
		name         string
		dir          string
		req          sdk.EvaluateRequest
		tokens, wins int
	}{
		{"absorb, short window kept", tinyAbsorb, sdk.EvaluateRequest{Documents: []string{text}, Timesteps: 4, Seed: 1}, 70, 3},
		{"uniform, short window dropped", tinyUniform, sdk.EvaluateRequest{Documents: []string{text}, Timesteps: 4, Seed: 1, DropLast: true}, 64, 2},
		{"two documents joined, length 16", tinyAbsorb, sdk.EvaluateRequest{Documents: []string{text, text}, Timesteps: 2, Length: 16}, 140, 9},
		{"empty documents skipped", tinyAbsorb, sdk.EvaluateRequest{Documents: []string{"", text, ""}, Timesteps: 4, Seed: 1}, 70, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := open(t, tc.dir)
			res, err := m.Evaluate(context.Background(), tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if res.Tokens != tc.tokens || len(res.Windows) != tc.wins {
				t.Errorf("%d tokens in %d windows, want %d in %d", res.Tokens, len(res.Windows), tc.tokens, tc.wins)
			}
			if math.IsNaN(res.Perplexity) || res.Perplexity <= 1 {
				t.Errorf("perplexity %g", res.Perplexity)
			}
			again, err := m.Evaluate(context.Background(), tc.req)
			if err != nil || again.Nats != res.Nats {
				t.Errorf("the same seed gave %g, then %g (%v)", res.Nats, again.Nats, err)
			}
		})
	}
}

func TestEvaluateBadRequests(t *testing.T) {
	m := open(t, tinyAbsorb)
	for _, tc := range []struct {
		name string
		req  sdk.EvaluateRequest
	}{
		{"negative timesteps", sdk.EvaluateRequest{Documents: []string{"text"}, Timesteps: -1}},
		{"negative length", sdk.EvaluateRequest{Documents: []string{"text"}, Length: -1}},
		{"min time 2", sdk.EvaluateRequest{Documents: []string{"text"}, MinTime: 2}},
		{"empty text", sdk.EvaluateRequest{Documents: []string{""}}},
		{"a thousand empty documents", sdk.EvaluateRequest{Documents: make([]string, 1000)}},
		{"no documents", sdk.EvaluateRequest{}},
		{"shorter than a dropped window", sdk.EvaluateRequest{Documents: []string{"short"}, DropLast: true}},
		{"invalid UTF-8", sdk.EvaluateRequest{Documents: []string{"\xff\xfe"}}},
		{"unknown sampling", sdk.EvaluateRequest{Documents: []string{"text"}, Sampling: "sobol"}},
		{"odd antithetic", sdk.EvaluateRequest{Documents: []string{"text"}, Sampling: sdk.Antithetic, Timesteps: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := m.Evaluate(context.Background(), tc.req); !errors.Is(err, sdk.ErrBadRequest) {
				t.Errorf("error %v, want ErrBadRequest", err)
			}
		})
	}
}
