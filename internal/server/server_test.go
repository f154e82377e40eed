package server

// Tests through real HTTP on loopback: every endpoint, streaming and not,
// every error code with its body, each answer checked against openapi.yaml
// (with kin-openapi); the queue's 429, timeouts, a client that disconnects,
// a panic, and the drain.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/sedd-go/sedd/api"
	"github.com/sedd-go/sedd/internal/testlib"
	"github.com/sedd-go/sedd/sdk"
)

func TestMain(m *testing.M) { testlib.Main(m) }

const tinyAbsorb = "../../sdk/testdata/tiny-absorb"

// spec is openapi.yaml, loaded and validated once.
var spec = sync.OnceValues(func() (*openapi3.T, error) {
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData(OpenAPI)
	if err != nil {
		return nil, err
	}
	return doc, doc.Validate(loader.Context)
})

func TestOpenAPIDocumentIsValid(t *testing.T) {
	if _, err := spec(); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
}

// operation returns the documented operation of method and path.
func operation(t *testing.T, method, path string) *openapi3.Operation {
	t.Helper()
	doc, err := spec()
	if err != nil {
		t.Fatal(err)
	}
	item := doc.Paths.Find(path)
	if item == nil {
		t.Fatalf("%s is not in openapi.yaml", path)
	}
	op := item.GetOperation(method)
	if op == nil {
		t.Fatalf("%s %s is not in openapi.yaml", method, path)
	}
	return op
}

// checkRequest validates a request body against its documented schema, so
// that the tests only send what the document describes.
func checkRequest(t *testing.T, method, path string, body any) {
	t.Helper()
	op := operation(t, method, path)
	if op.RequestBody == nil {
		t.Fatalf("%s %s takes no body in openapi.yaml", method, path)
	}
	data, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	validate(t, op.RequestBody.Value.Content.Get("application/json").Schema.Value, decodeAny(t, data), "request to "+path)
}

// checkResponse validates an answer against openapi.yaml: its status code
// is documented for the operation, with its content type, and every JSON
// value (every line of NDJSON) matches the schema.
func checkResponse(t *testing.T, method, path string, resp *http.Response, body []byte) {
	t.Helper()
	op := operation(t, method, path)
	ref := op.Responses.Status(resp.StatusCode)
	if ref == nil {
		t.Fatalf("%s %s answered %d, which openapi.yaml does not document:\n%s", method, path, resp.StatusCode, body)
	}
	ct, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("%s %s: content type %q: %v", method, path, resp.Header.Get("Content-Type"), err)
	}
	mt := ref.Value.Content.Get(ct)
	if mt == nil {
		t.Fatalf("%s %s answered %d as %s, which openapi.yaml does not document", method, path, resp.StatusCode, ct)
	}
	for name := range ref.Value.Headers {
		if resp.Header.Get(name) == "" {
			t.Errorf("%s %s %d: header %s missing", method, path, resp.StatusCode, name)
		}
	}
	if resp.Header.Get("X-Request-Id") == "" {
		t.Errorf("%s %s: no X-Request-Id", method, path)
	}
	switch ct {
	case "application/json":
		validate(t, mt.Schema.Value, decodeAny(t, body), fmt.Sprintf("%s %s %d", method, path, resp.StatusCode))
	case "application/x-ndjson":
		for i, line := range lines(body) {
			validate(t, mt.Schema.Value, decodeAny(t, line), fmt.Sprintf("%s %s line %d", method, path, i))
		}
	case "text/event-stream":
		events := events(t, body)
		if len(events) == 0 || string(events[len(events)-1]) != "[DONE]" {
			t.Fatalf("%s %s: the event stream does not end with data: [DONE]:\n%s", method, path, body)
		}
		for i, ev := range events[:len(events)-1] {
			validate(t, mt.Schema.Value, decodeAny(t, ev), fmt.Sprintf("%s %s event %d", method, path, i))
		}
	}
}

func validate(t *testing.T, schema *openapi3.Schema, v any, what string) {
	t.Helper()
	if err := schema.VisitJSON(v, openapi3.MultiErrors()); err != nil {
		t.Fatalf("%s does not match openapi.yaml: %v\n%v", what, err, v)
	}
}

func decodeAny(t *testing.T, b []byte) any {
	t.Helper()
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, b)
	}
	return v
}

// events are the data of a server-sent event stream's events; comment
// lines are skipped.
func events(t *testing.T, b []byte) [][]byte {
	t.Helper()
	var out [][]byte
	for l := range bytes.Lines(b) {
		l = bytes.TrimRight(l, "\n")
		switch {
		case len(l) == 0 || l[0] == ':':
		case bytes.HasPrefix(l, []byte("data: ")):
			out = append(out, l[len("data: "):])
		default:
			t.Fatalf("not a line of a server-sent event stream: %q", l)
		}
	}
	return out
}

func lines(b []byte) [][]byte {
	var out [][]byte
	for l := range bytes.Lines(b) {
		if l = bytes.TrimSpace(l); len(l) > 0 {
			out = append(out, l)
		}
	}
	return out
}

// testServer serves the tiny fixture (and a second name for it) over
// loopback.
type testServer struct {
	*Server
	url  string
	logs *syncBuffer
}

func newTestServer(t *testing.T, cfg Config, opts ...sdk.Option) *testServer {
	t.Helper()
	m, err := sdk.Open(tinyAbsorb, append([]sdk.Option{sdk.WithThreads(1)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	logs := &syncBuffer{}
	cfg.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New([]Model{{Name: "tiny", Model: m}, {Name: "tiny-2", Model: m}}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	t.Cleanup(hs.Close)
	return &testServer{Server: s, url: hs.URL, logs: logs}
}

// do sends a request (body marshalled when not a string) and returns the
// answer and its body.
func (ts *testServer) do(t *testing.T, method, path string, body any) (*http.Response, []byte) {
	t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		r = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, ts.url+path, r)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		// As ollama's and OpenAI's clients send it.
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, data
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func ptr[T any](v T) *T { return &v }

// jsonText is s as it comes back from JSON: bytes that are not UTF-8 (the
// tiny fixture's tokens are bytes) become U+FFFD.
func jsonText(s string) string {
	data, _ := json.Marshal(s)
	var out string
	_ = json.Unmarshal(data, &out)
	return out
}

func TestEndpoints(t *testing.T) {
	ts := newTestServer(t, Config{}, sdk.WithBatching(8, 5*time.Millisecond))
	// The same request, streamed and not, and through the SDK directly.
	gen := api.GenerateRequest{Prompt: "Hi", Options: api.Options{Steps: 6, Seed: ptr[uint64](9), Batch: 2}}
	want, err := ts.models[0].Model.Sample(context.Background(), sdk.SampleRequest{Steps: 6, Seed: 9, Batch: 2, Prefix: "Hi"})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("generate stream false", func(t *testing.T) {
		req := gen
		req.Stream = ptr(false)
		checkRequest(t, "POST", "/api/generate", req)
		resp, body := ts.do(t, "POST", "/api/generate", req)
		checkResponse(t, "POST", "/api/generate", resp, body)
		var out api.GenerateResponse
		if err := json.Unmarshal(body, &out); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%d %v %s", resp.StatusCode, err, body)
		}
		if out.Model != "tiny" || out.Seed != 9 || out.Steps != 6 || out.NetworkCalls != 7 || len(out.Samples) != 2 ||
			"Hi"+out.Response != out.Samples[0].Text || out.DoneReason != "length" || out.EvalCount != 30 || out.PromptEvalCount != 2 {
			t.Fatalf("answer %+v", out)
		}
		for i, s := range out.Samples {
			if !slices.Equal(s.Tokens, want.Samples[i].Tokens) || s.Text != jsonText(want.Samples[i].Text) {
				t.Fatalf("sample %d: %q %v, want the SDK's %q %v", i, s.Text, s.Tokens, want.Samples[i].Text, want.Samples[i].Tokens)
			}
		}
	})

	t.Run("generate stream", func(t *testing.T) {
		req := gen
		req.Model, req.Mask, req.StreamTokens = "tiny-2", ptr("#"), true
		checkRequest(t, "POST", "/api/generate", req)
		resp, body := ts.do(t, "POST", "/api/generate", req)
		checkResponse(t, "POST", "/api/generate", resp, body)
		ls := lines(body)
		if len(ls) != 7 {
			t.Fatalf("%d lines, want 6 steps and the result (after the denoiser, the 7th step):\n%s", len(ls), body)
		}
		lastMasked := 1 << 30
		for i, l := range ls[:6] {
			var st api.GenerateStep
			if err := json.Unmarshal(l, &st); err != nil {
				t.Fatal(err)
			}
			if st.Step != i+1 || st.Steps != 7 || st.Done || st.Model != "tiny-2" || len(st.Samples) != 2 || len(st.Samples[0].Tokens) != 32 {
				t.Fatalf("line %d: %+v", i, st)
			}
			if st.Masked > lastMasked || strings.Count(st.Samples[0].Text+st.Samples[1].Text, "#") < st.Masked || !strings.HasPrefix(st.Samples[0].Text, "Hi") || st.Response != "" {
				t.Fatalf("line %d: %d masked after %d, text %q, response %q", i, st.Masked, lastMasked, st.Samples[0].Text, st.Response)
			}
			lastMasked = st.Masked
		}
		var out api.GenerateResponse
		if err := json.Unmarshal(ls[6], &out); err != nil || !out.Done {
			t.Fatalf("last line %s: %v", ls[6], err)
		}
		if !slices.Equal(out.Samples[1].Tokens, want.Samples[1].Tokens) {
			t.Fatalf("streamed tokens %v, want %v", out.Samples[1].Tokens, want.Samples[1].Tokens)
		}
	})

	t.Run("generate first-hitting with top-k and temperature", func(t *testing.T) {
		req := api.GenerateRequest{Prompt: "Hi", Stream: ptr(false), Options: api.Options{Sampler: sdk.FirstHitting, Seed: ptr[uint64](4), TopK: 5, Temperature: new(0.8)}}
		checkRequest(t, "POST", "/api/generate", req)
		resp, body := ts.do(t, "POST", "/api/generate", req)
		checkResponse(t, "POST", "/api/generate", resp, body)
		var out api.GenerateResponse
		if err := json.Unmarshal(body, &out); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%d %v %s", resp.StatusCode, err, body)
		}
		if out.Sampler != sdk.FirstHitting || out.NetworkCalls != 30 || out.Steps != 30 || out.Denoise || out.TopK != 5 || out.Temperature != 0.8 || out.TopP != 1 {
			t.Fatalf("answer %+v, want 30 network calls (one per free position) and the settings", out)
		}
		direct, err := ts.models[0].Model.Sample(context.Background(), sdk.SampleRequest{Sampler: sdk.FirstHitting, Seed: 4, Prefix: "Hi", TopK: 5, Temperature: new(0.8)})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(out.Samples[0].Tokens, direct.Samples[0].Tokens) {
			t.Fatalf("tokens %v, want the SDK's %v", out.Samples[0].Tokens, direct.Samples[0].Tokens)
		}
	})

	t.Run("generate entropy-bounded with a budget", func(t *testing.T) {
		req := api.GenerateRequest{Prompt: "Hi", Stream: ptr(false), Options: api.Options{Sampler: sdk.EntropyBounded, EntropyBudget: 12, Seed: ptr[uint64](5)}}
		checkRequest(t, "POST", "/api/generate", req)
		resp, body := ts.do(t, "POST", "/api/generate", req)
		checkResponse(t, "POST", "/api/generate", resp, body)
		var out api.GenerateResponse
		if err := json.Unmarshal(body, &out); err != nil || resp.StatusCode != 200 {
			t.Fatalf("%d %v %s", resp.StatusCode, err, body)
		}
		direct, err := ts.models[0].Model.Sample(context.Background(), sdk.SampleRequest{Sampler: sdk.EntropyBounded, EntropyBudget: 12, Seed: 5, Prefix: "Hi"})
		if err != nil {
			t.Fatal(err)
		}
		if out.Sampler != sdk.EntropyBounded || out.NetworkCalls != direct.NetworkCalls || out.NetworkCalls >= 30 || !slices.Equal(out.Samples[0].Tokens, direct.Samples[0].Tokens) {
			t.Fatalf("answer %+v, want the SDK's %d calls (fewer than the 30 free positions) and tokens %v", out, direct.NetworkCalls, direct.Samples[0].Tokens)
		}
	})

	t.Run("generate infill and defaults", func(t *testing.T) {
		req := api.GenerateRequest{Infill: "a[MASK:3]b", Stream: ptr(false)}
		checkRequest(t, "POST", "/api/generate", req)
		resp, body := ts.do(t, "POST", "/api/generate", req)
		checkResponse(t, "POST", "/api/generate", resp, body)
		var out api.GenerateResponse
		_ = json.Unmarshal(body, &out)
		if resp.StatusCode != 200 || out.Steps != sdk.DefaultSteps || out.Length != 5 ||
			!strings.HasPrefix(out.Response, "a") || !strings.HasSuffix(out.Response, "b") || out.Response != out.Samples[0].Text {
			t.Fatalf("%d %+v", resp.StatusCode, out)
		}
	})

	t.Run("evaluate", func(t *testing.T) {
		req := api.EvaluateRequest{Text: "The quick brown fox jumps over the lazy dog.", Options: api.EvaluateOptions{Timesteps: 8, Seed: 3}}
		checkRequest(t, "POST", "/api/evaluate", req)
		resp, body := ts.do(t, "POST", "/api/evaluate", req)
		checkResponse(t, "POST", "/api/evaluate", resp, body)
		var out api.EvaluateResponse
		_ = json.Unmarshal(body, &out)
		direct, err := ts.models[0].Model.Evaluate(context.Background(), sdk.EvaluateRequest{Documents: []string{req.Text}, Timesteps: 8, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || out.Tokens != direct.Tokens || len(out.Windows) != len(direct.Windows) ||
			out.NatsPerToken != direct.NatsPerToken {
			t.Fatalf("%d %+v, want %+v", resp.StatusCode, out.Bound, direct.Bound)
		}
	})

	t.Run("tags show health openapi", func(t *testing.T) {
		resp, body := ts.do(t, "GET", "/api/tags", nil)
		checkResponse(t, "GET", "/api/tags", resp, body)
		if !strings.Contains(string(body), `"name":"tiny-2"`) {
			t.Fatalf("tags: %s", body)
		}
		req := api.ShowRequest{Model: "tiny"}
		checkRequest(t, "POST", "/api/show", req)
		resp, body = ts.do(t, "POST", "/api/show", req)
		checkResponse(t, "POST", "/api/show", resp, body)
		var show api.ShowResponse
		_ = json.Unmarshal(body, &show)
		if show.ModelInfo.Name != "tiny-absorb" || show.Batching.MaxRows != 8 || show.Batching.Passes == 0 {
			t.Fatalf("show: %s", body)
		}
		resp, body = ts.do(t, "GET", "/api/health", nil)
		checkResponse(t, "GET", "/api/health", resp, body)
		if resp.StatusCode != 200 {
			t.Fatalf("health %d", resp.StatusCode)
		}
		resp, body = ts.do(t, "GET", "/api/openapi.yaml", nil)
		checkResponse(t, "GET", "/api/openapi.yaml", resp, body)
		if !bytes.Equal(body, OpenAPI) {
			t.Fatal("the served document is not openapi.yaml")
		}
	})

	t.Run("metrics", func(t *testing.T) {
		resp, body := ts.do(t, "GET", "/metrics", nil)
		checkResponse(t, "GET", "/metrics", resp, body)
		for _, want := range []string{
			`sedd_requests_total{code="200",endpoint="generate"}`,
			`sedd_network_passes_total{model="tiny"}`, `sedd_network_calls_total{model="tiny-2"}`,
			`sedd_batch_fill_bucket{model="tiny",le="1"}`, `sedd_batch_max_rows{model="tiny"} 8`,
			"sedd_requests_running 0", "sedd_requests_queued 0", "sedd_batch_queue_rows", "sedd_network_seconds_total",
			"sedd_request_duration_seconds_bucket", "process_resident_memory_bytes",
		} {
			if !strings.Contains(string(body), want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})
}

// TestErrors sends bad requests: each gets its status and a documented
// error body naming the problem (and the field, when there is one).
func TestErrors(t *testing.T) {
	ts := newTestServer(t, Config{MaxSteps: 50, MaxSamples: 3, MaxBodyBytes: 4096, MaxTimesteps: 16})
	tests := []struct {
		name, method, path string
		body               any
		status             int
		field, message     string
	}{
		{"not JSON", "POST", "/api/generate", "{", 400, "", "not a valid request"},
		{"first-hitting with steps", "POST", "/api/generate", `{"options":{"sampler":"first-hitting","steps":8}}`, 400, "options.steps", "must be 0 with the first-hitting sampler"},
		{"top-p above 1", "POST", "/api/generate", `{"options":{"top_p":1.5}}`, 400, "options.top_p", "[0, 1]"},
		{"wrong type", "POST", "/api/generate", `{"options":{"steps":"many"}}`, 400, "options.steps", "options.steps must be a JSON value of Go type int, got string"},
		{"threshold above 1", "POST", "/api/generate", `{"options":{"sampler":"confidence","threshold":1.5}}`, 400, "options.threshold", "(0, 1]"},
		{"entropy budget with analytic", "POST", "/api/generate", `{"options":{"entropy_budget":3}}`, 400, "options.entropy_budget", "setting of the entropy-bounded sampler"},
		{"trailing data", "POST", "/api/generate", `{} {}`, 400, "", "after the JSON object"},
		{"unknown model", "POST", "/api/generate", `{"model":"gpt-5"}`, 404, "", `model "gpt-5" not found`},
		{"steps over the limit", "POST", "/api/generate", `{"options":{"steps":51}}`, 400, "options.steps", "≤ 50"},
		{"negative steps", "POST", "/api/generate", `{"options":{"steps":-1}}`, 400, "options.steps", "≥ 1"},
		{"bad sampler", "POST", "/api/generate", `{"options":{"sampler":"ddim"}}`, 400, "options.sampler", "not a sampler"},
		{"end time", "POST", "/api/generate", `{"options":{"end_time":2}}`, 400, "options.end_time", "(0, 1)"},
		{"too many samples", "POST", "/api/generate", `{"options":{"batch":4}}`, 400, "options.batch", "≤ 3"},
		{"too long", "POST", "/api/generate", `{"options":{"length":33}}`, 400, "options.length", "≤ 32"},
		{"prompt too long", "POST", "/api/generate", `{"prompt":"` + strings.Repeat("a", 40) + `"}`, 400, "", "the prefix takes 40 tokens but the length is 32"},
		{"bad template", "POST", "/api/generate", `{"infill":"a [MASK:0] b"}`, 400, "", "[MASK:0]"},
		{"infill with prompt", "POST", "/api/generate", `{"infill":"a[MASK]","prompt":"b"}`, 400, "", "template"},
		{"invalid UTF-8 mask", "POST", "/api/generate", "{\"mask\":\"" + strings.Repeat("x", 17) + "\"}", 400, "mask", "16 bytes"},
		{"body too large", "POST", "/api/generate", `{"prompt":"` + strings.Repeat("a", 5000) + `"}`, 413, "", "4096 bytes"},
		{"evaluate nothing", "POST", "/api/evaluate", `{}`, 400, "", "no documents"},
		{"evaluate both", "POST", "/api/evaluate", `{"text":"a","documents":["b"]}`, 400, "text", "not both"},
		{"evaluate one timestep", "POST", "/api/evaluate", `{"text":"a","options":{"timesteps":1}}`, 400, "options.timesteps", "≥ 2"},
		{"evaluate many timesteps", "POST", "/api/evaluate", `{"text":"a","options":{"timesteps":17}}`, 400, "options.timesteps", "≤ 16"},
		{"evaluate odd antithetic", "POST", "/api/evaluate", `{"text":"a","options":{"timesteps":5,"sampling":"antithetic"}}`, 400, "options.timesteps", "even"},
		{"show unknown", "POST", "/api/show", `{"model":"x"}`, 404, "", "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := ts.do(t, tt.method, tt.path, tt.body)
			checkResponse(t, tt.method, tt.path, resp, body)
			var e api.ErrorResponse
			if err := json.Unmarshal(body, &e); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.status || e.Field != tt.field || !strings.Contains(e.Error, tt.message) ||
				e.RequestID != resp.Header.Get("X-Request-Id") {
				t.Fatalf("%d %+v; want %d, field %q, message with %q", resp.StatusCode, e, tt.status, tt.field, tt.message)
			}
		})
	}
	resp, body := ts.do(t, "GET", "/api/generate", nil)
	if resp.StatusCode != 404 || !strings.Contains(string(body), "no endpoint GET /api/generate") {
		t.Fatalf("GET /api/generate: %d %s", resp.StatusCode, body)
	}
	// The client's request id is kept and logged.
	req, _ := http.NewRequest("POST", ts.url+"/api/generate", strings.NewReader("{"))
	req.Header.Set("X-Request-Id", "client-id-7")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Request-Id"); got != "client-id-7" || !strings.Contains(ts.logs.String(), `"request_id":"client-id-7"`) {
		t.Fatalf("request id %q, logs:\n%s", got, ts.logs.String())
	}
}

// stream starts a streaming generate request and returns its reader after
// the first line.
func (ts *testServer) stream(t *testing.T, ctx context.Context, req api.GenerateRequest) (*http.Response, *bufio.Reader) {
	t.Helper()
	data, _ := json.Marshal(req)
	hreq, _ := http.NewRequestWithContext(ctx, "POST", ts.url+"/api/generate", bytes.NewReader(data))
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	r := bufio.NewReader(resp.Body)
	if _, err := r.ReadBytes('\n'); err != nil {
		t.Fatal(err)
	}
	return resp, r
}

// waitFor polls cond for up to 30 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestQueueFull fills the only slot and the queue: the next request gets
// 429 with Retry-After, and the queued one runs once the slot is free.
func TestQueueFull(t *testing.T) {
	ts := newTestServer(t, Config{MaxActive: 1, MaxQueue: 1, RetryAfter: 3 * time.Second, MaxSteps: 1 << 24})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	long := api.GenerateRequest{Options: api.Options{Steps: 1000000}}
	resp, _ := ts.stream(t, ctx, long)
	defer resp.Body.Close()
	queued := make(chan int, 1)
	go func() {
		r, _ := ts.do(t, "POST", "/api/generate", api.GenerateRequest{Stream: ptr(false), Options: api.Options{Steps: 2}})
		queued <- r.StatusCode
	}()
	waitFor(t, "a queued request", func() bool { return ts.queued.Load() == 1 })
	r, body := ts.do(t, "POST", "/api/generate", api.GenerateRequest{Stream: ptr(false)})
	checkResponse(t, "POST", "/api/generate", r, body)
	if r.StatusCode != 429 || r.Header.Get("Retry-After") != "3" || !strings.Contains(string(body), "1 requests running and 1 waiting") {
		t.Fatalf("%d Retry-After %q %s", r.StatusCode, r.Header.Get("Retry-After"), body)
	}
	cancel() // the long stream's client leaves: its slot goes to the queued request
	if code := <-queued; code != 200 {
		t.Fatalf("the queued request: %d", code)
	}
	_, metrics := ts.do(t, "GET", "/metrics", nil)
	if !strings.Contains(string(metrics), `sedd_errors_total{endpoint="generate",kind="queue_full"} 1`) {
		t.Fatalf("metrics:\n%s", metrics)
	}
}

// TestDisconnectCancels: a client that closes its connection mid-stream
// frees its slot, and its rows leave the batch (no more passes run).
func TestDisconnectCancels(t *testing.T) {
	ts := newTestServer(t, Config{MaxSteps: 1 << 24}, sdk.WithBatching(8, 5*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	resp, _ := ts.stream(t, ctx, api.GenerateRequest{Options: api.Options{Steps: 1000000}})
	cancel()
	resp.Body.Close()
	waitFor(t, "the slot to be free", func() bool { return len(ts.slots) == 0 })
	stats := ts.models[0].Model.BatchStats()
	time.Sleep(100 * time.Millisecond)
	if later := ts.models[0].Model.BatchStats(); later.Passes != stats.Passes || later.QueuedCalls != 0 {
		t.Fatalf("passes went on after the client left: %d then %d", stats.Passes, later.Passes)
	}
	waitFor(t, "the request's log line", func() bool { return strings.Contains(ts.logs.String(), `"status":499`) })
}

// TestTimeout: a request past the time limit gets 504, or an error line
// when its stream has started.
func TestTimeout(t *testing.T) {
	ts := newTestServer(t, Config{Timeout: 300 * time.Millisecond, MaxSteps: 1 << 24})
	resp, body := ts.do(t, "POST", "/api/generate", api.GenerateRequest{Stream: ptr(false), Options: api.Options{Steps: 1000000}})
	checkResponse(t, "POST", "/api/generate", resp, body)
	if resp.StatusCode != 504 || !strings.Contains(string(body), "time limit") {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	resp, body = ts.do(t, "POST", "/api/generate", api.GenerateRequest{Options: api.Options{Steps: 1000000}})
	checkResponse(t, "POST", "/api/generate", resp, body)
	ls := lines(body)
	var e api.ErrorResponse
	if err := json.Unmarshal(ls[len(ls)-1], &e); err != nil || resp.StatusCode != 200 || !strings.Contains(e.Error, "time limit") {
		t.Fatalf("%d, last line %s", resp.StatusCode, ls[len(ls)-1])
	}
}

// TestPanicIsA500: a panicking handler answers 500 with the request id, and
// the log has the stack.
func TestPanicIsA500(t *testing.T) {
	ts := newTestServer(t, Config{})
	ts.route("GET /api/panic", "panic", func(http.ResponseWriter, *http.Request) error { panic("boom") })
	resp, body := ts.do(t, "GET", "/api/panic", nil)
	var e api.ErrorResponse
	if err := json.Unmarshal(body, &e); err != nil || resp.StatusCode != 500 || e.RequestID == "" || !strings.Contains(e.Error, e.RequestID) {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	if logs := ts.logs.String(); !strings.Contains(logs, `"panic":"boom"`) || !strings.Contains(logs, "server_test.go") {
		t.Fatalf("logs:\n%s", logs)
	}
	validate(t, operation(t, "POST", "/api/generate").Responses.Status(500).Value.Content.Get("application/json").Schema.Value,
		decodeAny(t, body), "the 500")
}

// TestDrain: after the context ends, a stream in flight finishes, new
// connections are refused, and Serve returns; past the drain deadline the
// requests still running are cancelled.
func TestDrain(t *testing.T) {
	for _, tt := range []struct {
		name     string
		steps    int
		drain    time.Duration
		finishes bool
	}{
		{"in-flight finishes", 30, 30 * time.Second, true},
		{"deadline cancels", 1000000, 200 * time.Millisecond, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, err := sdk.Open(tinyAbsorb, sdk.WithThreads(1))
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			s, err := New([]Model{{Name: "tiny", Model: m}}, Config{MaxSteps: 1 << 24})
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, stop := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- s.Serve(ctx, ln, tt.drain) }()
			ts := &testServer{Server: s, url: "http://" + ln.Addr().String()}
			resp, r := ts.stream(t, context.Background(), api.GenerateRequest{Options: api.Options{Steps: tt.steps}})
			defer resp.Body.Close()
			stop()
			waitFor(t, "draining", s.draining.Load)
			if _, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second); err == nil {
				// The listener closes as the drain starts.
				waitFor(t, "the listener to close", func() bool {
					c, err := net.DialTimeout("tcp", ln.Addr().String(), time.Second)
					if err == nil {
						c.Close()
					}
					return err != nil
				})
			}
			rest, _ := io.ReadAll(r)
			ls := lines(rest)
			var last api.GenerateResponse
			finished := len(ls) > 0 && json.Unmarshal(ls[len(ls)-1], &last) == nil && last.Done
			if finished != tt.finishes {
				t.Fatalf("stream finished: %v, want %v; last lines %q", finished, tt.finishes, ls[max(0, len(ls)-2):])
			}
			select {
			case err := <-served:
				if err != nil && !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("Serve: %v", err)
				}
			case <-time.After(30 * time.Second):
				t.Fatal("Serve did not return")
			}
		})
	}
}
