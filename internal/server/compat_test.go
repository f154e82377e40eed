package server

// The ollama and OpenAI endpoints, each answer checked against openapi.yaml
// and for content; the third-party clients themselves drive a real `sedd
// serve` in compat/.

import (
	"context"
	"encoding/json"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/sedd-go/sedd/api"
	"github.com/sedd-go/sedd/sdk"
)

func TestOllamaEndpoints(t *testing.T) {
	ts := newTestServer(t, Config{})
	for _, tt := range []struct{ method, path, want string }{
		{"GET", "/", "Ollama is running"},
		{"GET", "/api/version", `"version":"` + api.OllamaVersion + `"`},
		{"GET", "/api/ps", `"expires_at":"0001-01-01T00:00:00Z","size_vram":0,"context_length":32`},
		{"GET", "/api/tags", `"capabilities":["completion","insert"]`},
	} {
		resp, body := ts.do(t, tt.method, tt.path, nil)
		checkResponse(t, tt.method, tt.path, resp, body)
		if resp.StatusCode != 200 || !strings.Contains(string(body), tt.want) {
			t.Errorf("%s %s: %d %s, want %s", tt.method, tt.path, resp.StatusCode, body, tt.want)
		}
	}
	resp, body := ts.do(t, "HEAD", "/", nil)
	if resp.StatusCode != 200 || len(body) != 0 {
		t.Errorf("HEAD /: %d %q", resp.StatusCode, body)
	}
	resp, body = ts.do(t, "POST", "/api/show", `{"name":"tiny-2","verbose":true}`)
	checkResponse(t, "POST", "/api/show", resp, body)
	if resp.StatusCode != 200 || resp.Header.Get("X-Sedd-Ignored") != "verbose" {
		t.Errorf("show by ollama's old name field: %d %s (ignored %q)", resp.StatusCode, body, resp.Header.Get("X-Sedd-Ignored"))
	}

	t.Run("generate as ollama's client sends it", func(t *testing.T) {
		// Every field ollama's Go client writes, options null included.
		body := `{"model":"tiny","prompt":"ab","suffix":"yz","system":"","template":"","stream":false,"raw":false,
			"images":null,"options":{"num_predict":5,"seed":3,"temperature":0,"num_ctx":4096,"mirostat":0},"keep_alive":"5m","think":false}`
		resp, data := ts.do(t, "POST", "/api/generate", body)
		checkResponse(t, "POST", "/api/generate", resp, data)
		var out api.GenerateResponse
		if err := json.Unmarshal(data, &out); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%d %v %s", resp.StatusCode, err, data)
		}
		if got, want := resp.Header.Get("X-Sedd-Ignored"), "images, keep_alive, options.mirostat, options.num_ctx, template, think"; got != want {
			t.Errorf("X-Sedd-Ignored %q, want %q", got, want)
		}
		if out.Length != 9 || out.EvalCount != 5 || out.PromptEvalCount != 4 || out.Temperature != 0 || out.TopK != 1 ||
			jsonText("ab"+out.Response+"yz") != out.Samples[0].Text {
			t.Fatalf("answer %+v", out)
		}
		direct, err := ts.models[0].Model.Sample(context.Background(), sdk.SampleRequest{Prefix: "ab", Suffix: "yz", Length: 9, Seed: 3, Temperature: new(0.0)})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(direct.Samples[0].Tokens, out.Samples[0].Tokens) {
			t.Fatalf("tokens %v, want the SDK's %v", out.Samples[0].Tokens, direct.Samples[0].Tokens)
		}
		// Logged once per endpoint and field.
		ts.do(t, "POST", "/api/generate", body)
		if n := strings.Count(ts.logs.String(), `"msg":"ignoring a field this server has no use for","path":"/api/generate","field":"keep_alive"`); n != 1 {
			t.Errorf("%d debug lines for keep_alive, want 1", n)
		}
	})

	t.Run("chat without messages loads", func(t *testing.T) {
		resp, data := ts.do(t, "POST", "/api/chat", `{"model":"tiny","messages":null,"options":null}`)
		checkResponse(t, "POST", "/api/chat", resp, data)
		if resp.StatusCode != 200 || !strings.Contains(string(data), `"done":true,"done_reason":"load"`) {
			t.Fatalf("%d %s", resp.StatusCode, data)
		}
	})

	t.Run("chat streamed", func(t *testing.T) {
		req := api.ChatRequest{Messages: []api.Message{{Role: "user", Content: "a"}}, Options: api.Options{Steps: 4, Seed: new(uint64(2)), Length: 32}}
		checkRequest(t, "POST", "/api/chat", req)
		resp, data := ts.do(t, "POST", "/api/chat", req)
		checkResponse(t, "POST", "/api/chat", resp, data)
		ls := lines(data)
		var last api.ChatResponse
		if err := json.Unmarshal(ls[len(ls)-1], &last); err != nil || len(ls) != 5 || !last.Done || last.Message.Role != "assistant" {
			t.Fatalf("%d lines, last %s", len(ls), ls[len(ls)-1])
		}
		prefix := "User: a\n\nAssistant:"
		if full := last.Samples[0].Text; !strings.HasPrefix(full, prefix) || !strings.HasPrefix(strings.TrimLeft(full[len(prefix):], " "), last.Message.Content) {
			t.Fatalf("answer %q is not what follows %q in %q", last.Message.Content, prefix, full)
		}
	})
}

func TestOpenAIEndpoints(t *testing.T) {
	ts := newTestServer(t, Config{MaxSamples: 4})
	resp, body := ts.do(t, "GET", "/v1/models", nil)
	checkResponse(t, "GET", "/v1/models", resp, body)
	if !strings.Contains(string(body), `"id":"tiny-2","object":"model"`) {
		t.Fatalf("models: %s", body)
	}
	resp, body = ts.do(t, "GET", "/v1/models/tiny", nil)
	checkResponse(t, "GET", "/v1/models/{model}", resp, body)

	completion := `{"model":"tiny","prompt":["ab"],"suffix":"yz","max_tokens":6,"n":3,"seed":8,"steps":5,"stop":"\u0000never","user":"u1"}`
	resp, body = ts.do(t, "POST", "/v1/completions", completion)
	checkResponse(t, "POST", "/v1/completions", resp, body)
	var out api.CompletionResponse
	if err := json.Unmarshal(body, &out); err != nil || len(out.Choices) != 3 || out.Usage.CompletionTokens != 18 ||
		out.Usage.PromptTokens != 4 || out.Settings.Seed != 8 || out.Settings.Length != 10 {
		t.Fatalf("%v %s", err, body)
	}
	direct, err := ts.models[0].Model.Sample(context.Background(), sdk.SampleRequest{Prefix: "ab", Suffix: "yz", Length: 10, Seed: 8, Steps: 5, Batch: 3})
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range out.Choices {
		if want := jsonText(direct.Samples[i].Text); "ab"+c.Text+"yz" != want || *c.FinishReason != "length" {
			t.Errorf("choice %d: %q, want the middle of the SDK's %q", i, c.Text, want)
		}
	}
	// Streamed: the same choices, the usage, [DONE].
	resp, body = ts.do(t, "POST", "/v1/completions", strings.Replace(completion, `"n":3`, `"n":3,"stream":true,"stream_options":{"include_usage":true}`, 1))
	checkResponse(t, "POST", "/v1/completions", resp, body)
	evs := events(t, body)
	if len(evs) != 5 {
		t.Fatalf("%d events, want 3 choices, the usage and [DONE]:\n%s", len(evs), body)
	}
	for i, ev := range evs[:3] {
		var chunk api.CompletionResponse
		_ = json.Unmarshal(ev, &chunk)
		if chunk.Choices[0].Text != out.Choices[i].Text {
			t.Errorf("streamed choice %d: %q, want %q", i, chunk.Choices[0].Text, out.Choices[i].Text)
		}
	}

	chat := `{"model":"tiny","messages":[{"role":"developer","content":"x"},{"role":"user","content":[{"type":"text","text":"a"}]}],"seed":1,"steps":3,"n":2,"stream":true}`
	resp, body = ts.do(t, "POST", "/v1/chat/completions", chat)
	checkResponse(t, "POST", "/v1/chat/completions", resp, body)
	if evs := events(t, body); len(evs) != 7 {
		t.Fatalf("%d events, want 3 per choice and [DONE]:\n%s", len(evs), body)
	}
	resp, body = ts.do(t, "POST", "/v1/chat/completions", strings.Replace(chat, `"stream":true`, `"max_completion_tokens":4`, 1))
	checkResponse(t, "POST", "/v1/chat/completions", resp, body)
	var cc api.ChatCompletionResponse
	if err := json.Unmarshal(body, &cc); err != nil || len(cc.Choices) != 2 || cc.Usage.CompletionTokens > 8 {
		t.Fatalf("%v %s", err, body)
	}

	for _, tt := range []struct {
		name, path, body string
		status           int
		param, message   string
	}{
		{"unknown model", "/v1/completions", `{"model":"gpt-5","prompt":"a"}`, 404, "", `model "gpt-5" not found`},
		{"steps over the limit", "/v1/completions", `{"model":"tiny","prompt":"a","steps":5000}`, 400, "steps", "steps must be ≤ 1024"},
		{"n over the limit", "/v1/completions", `{"model":"tiny","prompt":"a","n":5}`, 400, "batch", "≤ 4"},
		{"n 0", "/v1/completions", `{"model":"tiny","prompt":"a","n":0}`, 400, "n", "n must be ≥ 1"},
		{"two prompts", "/v1/completions", `{"model":"tiny","prompt":["a","b"]}`, 400, "", "one request per prompt"},
		{"logprobs", "/v1/completions", `{"model":"tiny","prompt":"a","logprobs":2}`, 400, "logprobs", "not available"},
		{"gap too long", "/v1/completions", `{"model":"tiny","prompt":"a","suffix":"b","max_tokens":40}`, 400, "max_tokens", "more than the 32"},
		{"temperature as text", "/v1/completions", `{"model":"tiny","prompt":"a","temperature":"hot"}`, 400, "temperature", "temperature must be"},
		{"no messages", "/v1/chat/completions", `{"model":"tiny","messages":[]}`, 400, "messages", "messages is empty"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := ts.do(t, "POST", tt.path, tt.body)
			checkResponse(t, "POST", tt.path, resp, body)
			var e api.OpenAIError
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatal(err)
			}
			param := ""
			if e.Error.Param != nil {
				param = *e.Error.Param
			}
			if resp.StatusCode != tt.status || param != tt.param || !strings.Contains(e.Error.Message, tt.message) || e.Error.Code == nil {
				t.Fatalf("%d %s; want %d, param %q, message with %q", resp.StatusCode, body, tt.status, tt.param, tt.message)
			}
		})
	}
}

// TestOneVocabulary: every setting of sdk.SampleRequest is a key of
// api.Options named by the rule of sdk.FieldError.JSONName, and a server
// error names it so.
func TestOneVocabulary(t *testing.T) {
	keys := map[string]bool{}
	opts := reflect.TypeFor[api.Options]()
	for i := range opts.NumField() {
		name, _, _ := strings.Cut(opts.Field(i).Tag.Get("json"), ",")
		keys[name] = true
	}
	// The texts are the request's own fields (prompt, suffix, infill);
	// NoDenoise is denoise, true by default, as the flag --denoise.
	notOptions := map[string]bool{"Prefix": true, "Suffix": true, "Spans": true, "Template": true, "NoDenoise": true}
	req := reflect.TypeFor[sdk.SampleRequest]()
	for i := range req.NumField() {
		f := req.Field(i).Name
		if name := (&sdk.FieldError{Field: f}).JSONName(); !notOptions[f] && !keys[name] {
			t.Errorf("sdk.SampleRequest.%s has no key %q in api.Options", f, name)
		}
	}
	if !keys["denoise"] {
		t.Error("api.Options has no denoise")
	}
	ts := newTestServer(t, Config{})
	resp, body := ts.do(t, "POST", "/api/generate", `{"options":{"block_overlap":-1}}`)
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"field":"options.block_overlap"`) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
}
