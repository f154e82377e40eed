package server

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/sedd-go/sedd/api"
	"github.com/sedd-go/sedd/sdk"
)

// OpenAI's endpoints: the model list, completions (a prompt and a suffix:
// the gap between them filled) and chat completions, streamed as
// server-sent events ending with "data: [DONE]".

// writeEvent writes one server-sent event of JSON and flushes it.
func writeEvent(w http.ResponseWriter, v any) error {
	body, err := marshal(v)
	if err != nil {
		return err
	}
	if _, err := w.Write(append(append([]byte("data: "), body...), '\n')); err != nil {
		return err
	}
	return http.NewResponseController(w).Flush()
}

// sseStream writes a server-sent event stream, the header first; a comment
// line per sampling step keeps proxies from closing an idle connection.
type sseStream struct {
	w       http.ResponseWriter
	s       *Server
	started bool
}

func (e *sseStream) start() {
	if !e.started {
		e.w.Header().Set("Content-Type", "text/event-stream")
		e.w.Header().Set("Cache-Control", "no-cache")
		e.w.WriteHeader(http.StatusOK)
		e.started = true
	}
	if e.s.cfg.WriteTimeout > 0 {
		_ = http.NewResponseController(e.w).SetWriteDeadline(time.Now().Add(e.s.cfg.WriteTimeout))
	}
}

func (e *sseStream) write(v any) error {
	e.start()
	if err := writeEvent(e.w, v); err != nil {
		return &apiError{status: statusClientGone, kind: "canceled", msg: "writing to the client: " + err.Error()}
	}
	return nil
}

func (e *sseStream) comment(step sdk.Step) error {
	e.start()
	_, err := e.w.Write([]byte(": step " + itoa(step.Index) + "/" + itoa(step.Steps) + "\n\n"))
	if err == nil {
		err = http.NewResponseController(e.w).Flush()
	}
	if err != nil {
		return &apiError{status: statusClientGone, kind: "canceled", msg: "writing to the client: " + err.Error()}
	}
	return nil
}

func (e *sseStream) done() error {
	e.start()
	if _, err := e.w.Write([]byte("data: [DONE]\n\n")); err != nil {
		return &apiError{status: statusClientGone, kind: "canceled", msg: "writing to the client: " + err.Error()}
	}
	return http.NewResponseController(e.w).Flush()
}

// choices checks OpenAI's n.
func choices(n *int) (int, error) {
	if n == nil {
		return 1, nil
	}
	if *n < 1 {
		return 0, badRequest("n", "n must be ≥ 1, got %d", *n)
	}
	return *n, nil
}

// maxTokens checks OpenAI's max_tokens (or max_completion_tokens).
func maxTokens(field string, v *int) (int, error) {
	if v == nil {
		return 0, nil
	}
	if *v < 1 {
		return 0, badRequest(field, "%s must be ≥ 1, got %d", field, *v)
	}
	return *v, nil
}

func usage(j *job, as []answer) *api.Usage {
	u := &api.Usage{PromptTokens: j.prefix + j.suffix}
	for _, a := range as {
		u.CompletionTokens += a.tokens
	}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	return u
}

// completions serves POST /v1/completions.
func (s *Server) completions(w http.ResponseWriter, r *http.Request) error {
	var req api.CompletionRequest
	m, err := s.read(w, r, &req, func() string { return req.Model })
	if err != nil {
		return err
	}
	if req.Logprobs != nil {
		return badRequest("logprobs", "logprobs is not available: a diffusion model gives no left-to-right token probabilities; leave it out")
	}
	n, err := choices(req.N)
	if err != nil {
		return err
	}
	predict, err := maxTokens("max_tokens", req.MaxTokens)
	if err != nil {
		return err
	}
	j, err := s.newJob(m, string(req.Prompt), req.Suffix, "", req.Options, n, predict, "max_tokens")
	if err != nil {
		return err
	}
	id := "cmpl-" + requestIDOf(r.Context())
	var onStep func(sdk.Step) error
	ev := &sseStream{w: w, s: s}
	if req.Stream {
		onStep = ev.comment
	}
	res, err := s.runJob(r.Context(), j, onStep)
	if err != nil {
		return err
	}
	as := j.answers(res)
	base := api.CompletionResponse{ID: id, Object: "text_completion", Created: time.Now().Unix(), Model: m.Name,
		SystemFingerprint: "sedd", Settings: settings(res)}
	out := base
	for i, a := range as {
		text := a.text
		if req.Echo {
			text = string(req.Prompt) + text
		}
		out.Choices = append(out.Choices, api.CompletionChoice{Text: text, Index: i, FinishReason: new(a.reason)})
	}
	if !req.Stream {
		out.Usage = usage(j, as)
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	for _, c := range out.Choices {
		chunk := base
		chunk.Choices = []api.CompletionChoice{c}
		if err := ev.write(chunk); err != nil {
			return err
		}
	}
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		chunk := base
		chunk.Choices, chunk.Usage = []api.CompletionChoice{}, usage(j, as)
		if err := ev.write(chunk); err != nil {
			return err
		}
	}
	return ev.done()
}

// chatCompletions serves POST /v1/chat/completions, with the rendering of
// /api/chat.
func (s *Server) chatCompletions(w http.ResponseWriter, r *http.Request) error {
	var req api.ChatCompletionRequest
	m, err := s.read(w, r, &req, func() string { return req.Model })
	if err != nil {
		return err
	}
	if req.Logprobs {
		return badRequest("logprobs", "logprobs is not available: a diffusion model gives no left-to-right token probabilities; leave it out")
	}
	if len(req.Messages) == 0 {
		return badRequest("messages", "messages is empty; send at least one message")
	}
	n, err := choices(req.N)
	if err != nil {
		return err
	}
	field, limit := "max_tokens", req.MaxTokens
	if req.MaxCompletionTokens != nil {
		field, limit = "max_completion_tokens", req.MaxCompletionTokens
	}
	predict, err := maxTokens(field, limit)
	if err != nil {
		return err
	}
	msgs := make([]api.Message, len(req.Messages))
	for i, msg := range req.Messages {
		role := msg.Role
		if role == "developer" {
			role = "system"
		}
		msgs[i] = api.Message{Role: role, Content: string(msg.Content)}
	}
	o := req.Options
	o.Stop = append(append(api.Stop{}, api.ChatStops...), o.Stop...)
	j, err := s.newJob(m, api.RenderChat(msgs), "", "", o, n, predict, field)
	if err != nil {
		return err
	}
	var onStep func(sdk.Step) error
	ev := &sseStream{w: w, s: s}
	if req.Stream {
		onStep = ev.comment
	}
	res, err := s.runJob(r.Context(), j, onStep)
	if err != nil {
		return err
	}
	as := j.answers(res)
	base := api.ChatCompletionResponse{ID: "chatcmpl-" + requestIDOf(r.Context()), Object: "chat.completion",
		Created: time.Now().Unix(), Model: m.Name, SystemFingerprint: "sedd", Settings: settings(res)}
	if !req.Stream {
		out := base
		for i, a := range as {
			out.Choices = append(out.Choices, api.ChatCompletionChoice{Index: i, FinishReason: new(a.reason),
				Message: &api.ChatCompletionMessage{Role: "assistant", Content: new(strings.TrimLeft(a.text, " "))}})
		}
		out.Usage = usage(j, as)
		writeJSON(w, http.StatusOK, out)
		return nil
	}
	base.Object = "chat.completion.chunk"
	for i, a := range as {
		for _, c := range []api.ChatCompletionChoice{
			{Index: i, Delta: &api.ChatCompletionMessage{Role: "assistant", Content: new("")}},
			{Index: i, Delta: &api.ChatCompletionMessage{Content: new(strings.TrimLeft(a.text, " "))}},
			{Index: i, Delta: &api.ChatCompletionMessage{}, FinishReason: new(a.reason)},
		} {
			chunk := base
			chunk.Choices = []api.ChatCompletionChoice{c}
			if err := ev.write(chunk); err != nil {
				return err
			}
		}
	}
	if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
		chunk := base
		chunk.Choices, chunk.Usage = []api.ChatCompletionChoice{}, usage(j, as)
		if err := ev.write(chunk); err != nil {
			return err
		}
	}
	return ev.done()
}

// models serves GET /v1/models.
func (s *Server) openAIModels(w http.ResponseWriter, r *http.Request) error {
	out := api.OpenAIModelList{Object: "list", Data: []api.OpenAIModel{}}
	for _, m := range s.models {
		out.Data = append(out.Data, openAIModel(&m))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// openAIModel serves GET /v1/models/{model}.
func (s *Server) openAIModel(w http.ResponseWriter, r *http.Request) error {
	m, err := s.model(r.PathValue("model"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, openAIModel(m))
	return nil
}

func openAIModel(m *Model) api.OpenAIModel {
	return api.OpenAIModel{ID: m.Name, Object: "model", Created: started.Unix(), OwnedBy: "sedd"}
}

func itoa(n int) string { return strconv.Itoa(n) }
