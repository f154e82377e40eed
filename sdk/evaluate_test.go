package sdk_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/sedd-go/sedd/sdk"
	"github.com/sedd-go/sedd/sdk/likelihood"
)

func TestEvaluateWindows(t *testing.T) {
	text := strings.Repeat("the jury said ", 5) // 70 bytes: two full windows of 32 and one of 6
	for _, tc := range []struct {
		name         string
		dir          string
		req          sdk.EvalRequest
		docs         []string
		tokens, wins int
	}{
		{"absorb, short window kept", tinyAbsorb, sdk.EvalRequest{Timesteps: 4, Seed: 1}, []string{text}, 70, 3},
		{"uniform, short window dropped", tinyUniform, sdk.EvalRequest{Timesteps: 4, Seed: 1, Last: likelihood.DropShort}, []string{text}, 64, 2},
		{"two documents joined, length 16", tinyAbsorb, sdk.EvalRequest{Timesteps: 2, Length: 16}, []string{text, text}, 140, 9},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := open(t, tc.dir)
			res, err := m.Evaluate(context.Background(), tc.docs, tc.req)
			if err != nil {
				t.Fatal(err)
			}
			if res.Tokens != tc.tokens || len(res.Sequences) != tc.wins {
				t.Errorf("%d tokens in %d windows, want %d in %d", res.Tokens, len(res.Sequences), tc.tokens, tc.wins)
			}
			if math.IsNaN(res.Perplexity) || res.Perplexity <= 1 {
				t.Errorf("perplexity %g", res.Perplexity)
			}
			again, err := m.Evaluate(context.Background(), tc.docs, tc.req)
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
		docs []string
		req  sdk.EvalRequest
	}{
		{"negative timesteps", []string{"text"}, sdk.EvalRequest{Timesteps: -1}},
		{"negative length", []string{"text"}, sdk.EvalRequest{Length: -1}},
		{"eps 2", []string{"text"}, sdk.EvalRequest{Eps: 2}},
		{"empty text", []string{""}, sdk.EvalRequest{}},
		{"no documents", nil, sdk.EvalRequest{}},
		{"shorter than a dropped window", []string{"short"}, sdk.EvalRequest{Last: likelihood.DropShort}},
		{"invalid UTF-8", []string{"\xff\xfe"}, sdk.EvalRequest{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := m.Evaluate(context.Background(), tc.docs, tc.req); !errors.Is(err, sdk.ErrBadRequest) {
				t.Errorf("error %v, want ErrBadRequest", err)
			}
		})
	}
}
