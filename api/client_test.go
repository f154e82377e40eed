package api_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"

	"github.com/sedd-go/sedd/api"
	"github.com/sedd-go/sedd/internal/server"
	"github.com/sedd-go/sedd/internal/testlib"
	"github.com/sedd-go/sedd/sdk"
)

func TestMain(m *testing.M) { testlib.Main(m) }

// client serves the tiny fixture and returns a Client of it.
func client(t *testing.T) (*api.Client, *sdk.Model) {
	t.Helper()
	if testlib.Path() == "" {
		t.Skip("no ONNX Runtime library")
	}
	m, err := sdk.Open("../sdk/testdata/tiny-absorb", sdk.WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	s, err := server.New([]server.Model{{Name: "tiny", Model: m}}, server.Config{})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	c, err := api.NewClient(hs.URL, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, m
}

func TestClient(t *testing.T) {
	c, m := client(t)
	ctx := context.Background()
	want, err := m.Sample(ctx, sdk.SampleRequest{Prefix: "ab", Steps: 5, Seed: 4, TopP: new(0.9)})
	if err != nil {
		t.Fatal(err)
	}
	for _, stream := range []bool{false, true} {
		var steps []int
		var last api.GenerateResponse
		err := c.Generate(ctx, &api.GenerateRequest{Prompt: "ab", Stream: &stream,
			Options: api.Options{Steps: 5, Seed: new(uint64(4)), TopP: new(0.9)}}, func(r api.GenerateResponse) error {
			if !r.Done {
				steps = append(steps, r.Step)
			}
			last = r
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if !last.Done || !slices.Equal(last.Samples[0].Tokens, want.Samples[0].Tokens) || last.Seed != 4 || last.TopP != 0.9 {
			t.Fatalf("stream %v: %+v, want the SDK's tokens %v", stream, last, want.Samples[0].Tokens)
		}
		if stream != (len(steps) == 5) {
			t.Fatalf("stream %v: steps %v", stream, steps)
		}
	}
	var chat api.ChatResponse
	if err := c.Chat(ctx, &api.ChatRequest{Messages: []api.Message{{Role: "user", Content: "a"}}, Stream: new(false)},
		func(r api.ChatResponse) error { chat = r; return nil }); err != nil || !chat.Done || chat.Message.Role != "assistant" {
		t.Fatalf("chat %+v, %v", chat, err)
	}
	list, err := c.List(ctx)
	if err != nil || len(list.Models) != 1 || list.Models[0].Name != "tiny" {
		t.Fatalf("list %+v, %v", list, err)
	}
	show, err := c.Show(ctx, &api.ShowRequest{Model: "tiny"})
	if err != nil || show.ModelInfo.Length != 32 || show.Details.Graph != "absorb" {
		t.Fatalf("show %+v, %v", show, err)
	}
	ev, err := c.Evaluate(ctx, &api.EvaluateRequest{Text: "hello there", Options: api.EvaluateOptions{Timesteps: 4}})
	if err != nil || ev.Tokens == 0 || !(ev.Perplexity > 1) {
		t.Fatalf("evaluate %+v, %v", ev, err)
	}
	if h, err := c.Health(ctx); err != nil || h.Status != "ok" {
		t.Fatalf("health %+v, %v", h, err)
	}
	_, err = c.Show(ctx, &api.ShowRequest{Model: "nope"})
	var se *api.StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusNotFound {
		t.Fatalf("show of an unknown model: %v", err)
	}
	err = c.Generate(ctx, &api.GenerateRequest{Options: api.Options{TopK: -1}}, func(api.GenerateResponse) error { return nil })
	if !errors.As(err, &se) || se.StatusCode != 400 || se.Field != "options.top_k" {
		t.Fatalf("bad top_k: %v", err)
	}
	if _, err := api.NewClient("localhost:8080", nil); err == nil {
		t.Fatal("an address without a scheme was taken")
	}
}
