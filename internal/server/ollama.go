package server

import (
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/sedd-go/sedd/api"
	"github.com/sedd-go/sedd/sdk"
)

// ollama's endpoints: generate and chat, the model list, the loaded models,
// show, version, and the root that answers "Ollama is running".

// started stands for the models' modification time: the server's start.
var started = time.Now().UTC().Truncate(time.Second)

// streamer writes the lines of an NDJSON stream, the header first.
type streamer struct {
	w       http.ResponseWriter
	s       *Server
	started bool
}

func (st *streamer) line(v any) error {
	if !st.started {
		st.w.Header().Set("Content-Type", "application/x-ndjson")
		st.w.WriteHeader(http.StatusOK)
		st.started = true
	}
	if st.s.cfg.WriteTimeout > 0 {
		_ = http.NewResponseController(st.w).SetWriteDeadline(time.Now().Add(st.s.cfg.WriteTimeout))
	}
	if err := writeLine(st.w, v); err != nil {
		// The client stopped reading: the run ends.
		return &apiError{status: statusClientGone, kind: "canceled", msg: "writing to the client: " + err.Error()}
	}
	return nil
}

// generate serves POST /api/generate.
func (s *Server) generate(w http.ResponseWriter, r *http.Request) error {
	var req api.GenerateRequest
	m, err := s.read(w, r, &req, func() string { return req.Model })
	if err != nil {
		return err
	}
	mask := "_"
	if req.Mask != nil {
		mask = *req.Mask
		if len(mask) > 16 || !utf8.ValidString(mask) {
			return badRequest("mask", "mask must be valid UTF-8 of at most 16 bytes")
		}
	}
	prompt := req.Prompt
	if req.System != "" && !req.Raw {
		prompt = req.System + "\n\n" + prompt
	}
	j, err := s.newJob(m, prompt, req.Suffix, req.Infill, req.Options, 0, req.Options.NumPredict, "options.num_predict")
	if err != nil {
		return err
	}
	var onStep func(sdk.Step) error
	out := &streamer{w: w, s: s}
	if req.Stream == nil || *req.Stream {
		onStep = func(step sdk.Step) error {
			return out.line(api.GenerateStep{Model: m.Name, CreatedAt: now(), Step: step.Index, Steps: step.Steps,
				T: step.T, Masked: step.Masked, Samples: j.stepSamples(step, mask, req.StreamTokens)})
		}
	}
	res, err := s.runJob(r.Context(), j, onStep)
	if err != nil {
		return err
	}
	a := j.answers(res)[0]
	final := api.GenerateResponse{Model: m.Name, CreatedAt: now(), Response: a.text, Done: true, DoneReason: a.reason,
		Samples: samples(res), Settings: settings(res), Metrics: j.metrics(res, a),
		QueueDuration: j.queued.Nanoseconds(), NetworkDuration: res.Network.Nanoseconds()}
	if onStep == nil {
		writeJSON(w, http.StatusOK, final)
		return nil
	}
	return out.line(final)
}

// chat serves POST /api/chat: the messages rendered as api.RenderChat, the
// answer sampled after them and ended where the model starts a new turn.
func (s *Server) chat(w http.ResponseWriter, r *http.Request) error {
	var req api.ChatRequest
	m, err := s.read(w, r, &req, func() string { return req.Model })
	if err != nil {
		return err
	}
	if len(req.Messages) == 0 {
		// ollama's clients load a model so; every model here is loaded.
		writeJSON(w, http.StatusOK, api.ChatResponse{Model: m.Name, CreatedAt: now(), Message: api.Message{Role: "assistant"},
			Done: true, DoneReason: "load"})
		return nil
	}
	o := req.Options
	o.Stop = append(append(api.Stop{}, api.ChatStops...), o.Stop...)
	j, err := s.newJob(m, api.RenderChat(req.Messages), "", "", o, 0, o.NumPredict, "options.num_predict")
	if err != nil {
		return err
	}
	var onStep func(sdk.Step) error
	out := &streamer{w: w, s: s}
	if req.Stream == nil || *req.Stream {
		onStep = func(step sdk.Step) error {
			return out.line(api.ChatStep{Model: m.Name, CreatedAt: now(), Message: api.Message{Role: "assistant"},
				Step: step.Index, Steps: step.Steps})
		}
	}
	res, err := s.runJob(r.Context(), j, onStep)
	if err != nil {
		return err
	}
	a := j.answers(res)[0]
	final := api.ChatResponse{Model: m.Name, CreatedAt: now(), Done: true, DoneReason: a.reason,
		Message: api.Message{Role: "assistant", Content: strings.TrimLeft(a.text, " ")},
		Samples: samples(res), Settings: settings(res), Metrics: j.metrics(res, a)}
	if onStep == nil {
		writeJSON(w, http.StatusOK, final)
		return nil
	}
	return out.line(final)
}

// listModel is a model's entry of /api/tags and /api/ps.
func listModel(m *Model) api.ListModel {
	info := m.Model.Info()
	return api.ListModel{Name: m.Name, Model: m.Name, ModifiedAt: started, Size: info.ONNXSize,
		Digest: manifestDigest(info), Details: details(info), Capabilities: capabilities}
}

// capabilities are ollama's words for what every SEDD model does: complete
// a text, and fill a gap ("insert", a suffix).
var capabilities = []string{"completion", "insert"}

// tags serves GET /api/tags, the model list.
func (s *Server) tags(w http.ResponseWriter, r *http.Request) error {
	out := api.ListResponse{Models: []api.ListModel{}}
	for i := range s.models {
		out.Models = append(out.Models, listModel(&s.models[i]))
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// ps serves GET /api/ps: every model is loaded while the server runs.
func (s *Server) ps(w http.ResponseWriter, r *http.Request) error {
	out := api.ListResponse{Models: []api.ListModel{}}
	for i := range s.models {
		lm := listModel(&s.models[i])
		lm.ExpiresAt, lm.SizeVRAM, lm.ContextLength = new(time.Time{}), new(int64(0)), lm.Details.Length
		lm.Capabilities = nil
		out.Models = append(out.Models, lm)
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// show serves POST /api/show.
func (s *Server) show(w http.ResponseWriter, r *http.Request) error {
	var req api.ShowRequest
	m, err := s.read(w, r, &req, func() string {
		if req.Model == "" {
			return req.Name
		}
		return req.Model
	})
	if err != nil {
		return err
	}
	info := s.shownInfo(m.Model.Info())
	writeJSON(w, http.StatusOK, api.ShowResponse{Details: details(info), ModelInfo: info,
		Capabilities: capabilities, ModifiedAt: started, Batching: m.Model.BatchStats()})
	return nil
}

// version serves GET /api/version: the version of ollama's API this one
// follows.
func (s *Server) version(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, api.VersionResponse{Version: api.OllamaVersion})
	return nil
}

// root serves GET and HEAD /, which ollama's clients call to see that a
// server runs, with ollama's answer.
func (s *Server) root(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, err := fmt.Fprint(w, "Ollama is running")
	return err
}

// quantization is ollama's quantization level of the graph that runs.
func quantization(info sdk.Info) string {
	if info.Precision == "" {
		return "F32"
	}
	return strings.ToUpper(info.Precision)
}
