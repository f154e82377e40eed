package compat

// ollama's own Go client (github.com/ollama/ollama/api, pinned in go.mod)
// against a real `sedd serve` on loopback: every call is checked for content,
// and each generated text against `sedd sample` with the same seed.

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"

	ollama "github.com/ollama/ollama/api"

	sedd "github.com/sedd-go/sedd/api"
)

const model = "brown-sedd-small"

func ollamaClient(t *testing.T) *ollama.Client {
	t.Helper()
	srv := server(t)
	// As a user would: OLLAMA_HOST names the server.
	t.Setenv("OLLAMA_HOST", "http://"+srv.addr)
	c, err := ollama.ClientFromEnvironment()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestOllamaListShowVersion(t *testing.T) {
	c := ollamaClient(t)
	ctx := context.Background()
	if err := c.Heartbeat(ctx); err != nil {
		t.Fatalf("heartbeat: %v", err)
	}
	v, err := c.Version(ctx)
	if err != nil || v != sedd.OllamaVersion {
		t.Fatalf("version %q, %v; want %q", v, err, sedd.OllamaVersion)
	}
	list, err := c.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Models) != 1 || list.Models[0].Name != model || list.Models[0].Details.Family != "sedd" ||
		list.Models[0].Size <= 0 || len(list.Models[0].Digest) != 64 || list.Models[0].ModifiedAt.IsZero() {
		t.Fatalf("list: %+v", list.Models)
	}
	ps, err := c.ListRunning(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps.Models) != 1 || ps.Models[0].Name != model || ps.Models[0].ContextLength != 128 {
		t.Fatalf("ps: %+v", ps.Models)
	}
	show, err := c.Show(ctx, &ollama.ShowRequest{Model: model, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if show.ModelInfo["name"] != model || show.ModelInfo["length"] != float64(128) || show.Details.ParameterSize == "" ||
		!strings.Contains(capabilitiesOf(show), "insert") {
		t.Fatalf("show: %+v", show)
	}
	_, err = c.Show(ctx, &ollama.ShowRequest{Model: "llama3"})
	var se ollama.StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusNotFound || !strings.Contains(se.ErrorMessage, `model "llama3" not found`) {
		t.Fatalf("show of an unknown model: %v", err)
	}
}

func capabilitiesOf(s *ollama.ShowResponse) string {
	var out []string
	for _, c := range s.Capabilities {
		out = append(out, string(c))
	}
	return strings.Join(out, ",")
}

// TestOllamaGenerateFillsTheGap: a prompt, a system prompt and a suffix with
// num_predict, streamed and not, give the text of `sedd sample` with the
// same seed: system, prompt, the answer, then the suffix.
func TestOllamaGenerateFillsTheGap(t *testing.T) {
	c := ollamaClient(t)
	ctx := context.Background()
	req := &ollama.GenerateRequest{Model: model, System: "A story.", Prompt: "The jury said", Suffix: " and then it rained.",
		Stream: new(false),
		// repeat_penalty and num_ctx mean nothing here: ignored, not refused.
		Options: map[string]any{"num_predict": 12, "seed": 7, "steps": 16, "repeat_penalty": 1.1, "num_ctx": 2048}}
	var got ollama.GenerateResponse
	lines := 0
	if err := c.Generate(ctx, req, func(r ollama.GenerateResponse) error { got = r; lines++; return nil }); err != nil {
		t.Fatal(err)
	}
	if lines != 1 || !got.Done || got.DoneReason != "length" || got.EvalCount != 12 || got.Response == "" || got.TotalDuration <= 0 {
		t.Fatalf("%d lines, last %+v", lines, got)
	}
	prefix := req.System + "\n\n" + req.Prompt
	want := sample(t, "--seed", "7", "--steps", "16", "--prefix", prefix, "--suffix", req.Suffix,
		"--length", strconv.Itoa(got.PromptEvalCount+got.EvalCount))
	if want.Text != prefix+got.Response+req.Suffix {
		t.Fatalf("generate answered %q; sedd sample with the same seed: %q", got.Response, want.Text)
	}

	// Streamed: one line per step, the answer once in all.
	req.Stream = nil
	var streamed strings.Builder
	lines = 0
	err := c.Generate(ctx, req, func(r ollama.GenerateResponse) error {
		streamed.WriteString(r.Response)
		lines++
		if r.Done && r.DoneReason != "length" {
			t.Errorf("done reason %q", r.DoneReason)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if streamed.String() != got.Response || lines != 17 {
		t.Fatalf("streamed %q in %d lines, want %q in 16 steps, the denoiser and the answer", streamed.String(), lines, got.Response)
	}
}

// TestOllamaGenerateGreedyAndStop: temperature 0 is greedy, as `sedd sample
// --temperature 0`; a stop string ends the answer before it.
func TestOllamaGenerateGreedyAndStop(t *testing.T) {
	c := ollamaClient(t)
	req := &ollama.GenerateRequest{Model: model, Prompt: "It was", Stream: new(false),
		Options: map[string]any{"seed": 3, "steps": 12, "temperature": 0}}
	var got ollama.GenerateResponse
	if err := c.Generate(context.Background(), req, func(r ollama.GenerateResponse) error { got = r; return nil }); err != nil {
		t.Fatal(err)
	}
	want := sample(t, "--seed", "3", "--steps", "12", "--prefix", "It was", "--temperature", "0")
	answer, reason := cut(strings.TrimPrefix(want.Text, "It was"), eos(t, c))
	if got.Response != answer || got.DoneReason != reason {
		t.Fatalf("greedy generate: %q (%s); sedd sample --temperature 0: %q (%s)", got.Response, got.DoneReason, answer, reason)
	}
	if len(answer) < 4 {
		t.Skipf("answer %q too short to cut", answer)
	}
	stop := answer[2:4]
	req.Options["stop"] = []string{stop}
	if err := c.Generate(context.Background(), req, func(r ollama.GenerateResponse) error { got = r; return nil }); err != nil {
		t.Fatal(err)
	}
	if want, _ := cut(answer, stop); got.Response != want || got.DoneReason != "stop" {
		t.Fatalf("with stop %q: %q (%s), want %q", stop, got.Response, got.DoneReason, want)
	}
}

// TestOllamaChat: a chat, streamed and not, answers what `sedd sample`
// continues the rendered messages with, ended at the next turn.
func TestOllamaChat(t *testing.T) {
	c := ollamaClient(t)
	msgs := []ollama.Message{{Role: "system", Content: "Answer briefly."}, {Role: "user", Content: "Who said it?"}}
	req := &ollama.ChatRequest{Model: model, Messages: msgs, Stream: new(false), Options: map[string]any{"seed": 11, "steps": 16}}
	var got ollama.ChatResponse
	if err := c.Chat(context.Background(), req, func(r ollama.ChatResponse) error { got = r; return nil }); err != nil {
		t.Fatal(err)
	}
	prefix := sedd.RenderChat([]sedd.Message{{Role: "system", Content: "Answer briefly."}, {Role: "user", Content: "Who said it?"}})
	want := sample(t, "--seed", "11", "--steps", "16", "--prefix", prefix)
	answer, reason := cut(strings.TrimPrefix(want.Text, prefix), append(sedd.ChatStops, eos(t, c))...)
	answer = strings.TrimLeft(answer, " ")
	if !got.Done || got.Message.Role != "assistant" || got.Message.Content != answer || got.DoneReason != reason {
		t.Fatalf("chat answered %+v; sedd sample with the same seed: %q (%s)", got, answer, reason)
	}
	req.Stream = nil
	var streamed strings.Builder
	lines := 0
	err := c.Chat(context.Background(), req, func(r ollama.ChatResponse) error {
		streamed.WriteString(r.Message.Content)
		lines++
		return nil
	})
	if err != nil || streamed.String() != answer || lines != 17 {
		t.Fatalf("streamed chat: %q in %d lines (%v), want %q", streamed.String(), lines, err, answer)
	}
}

// TestOllamaErrors: a value of the wrong type and one out of range are 400s
// that name the option.
func TestOllamaErrors(t *testing.T) {
	c := ollamaClient(t)
	for opts, want := range map[string]map[string]any{
		"options.steps must be a JSON value of Go type int": {"steps": "many"},
		"options.top_p must be in [0, 1]":                   {"top_p": 2},
	} {
		err := c.Generate(context.Background(), &ollama.GenerateRequest{Model: model, Prompt: "x", Options: want},
			func(ollama.GenerateResponse) error { return nil })
		var se ollama.StatusError
		if !errors.As(err, &se) || se.StatusCode != 400 || !strings.Contains(se.ErrorMessage, opts) {
			t.Errorf("options %v: %v, want a 400 with %q", want, err, opts)
		}
	}
}

// eos is the model's end-of-text text, as /api/show reports it.
func eos(t *testing.T, c *ollama.Client) string {
	t.Helper()
	show, err := c.Show(context.Background(), &ollama.ShowRequest{Model: model})
	if err != nil {
		t.Fatal(err)
	}
	s, _ := show.ModelInfo["eos"].(string)
	return s
}

// cut ends text before the first of stops: "stop" if one was there, else
// "length".
func cut(text string, stops ...string) (string, string) {
	k := -1
	for _, s := range stops {
		if i := strings.Index(text, s); s != "" && i >= 0 && (k < 0 || i < k) {
			k = i
		}
	}
	if k < 0 {
		return text, "length"
	}
	return text[:k], "stop"
}
