package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/sedd-go/sedd/sdk"
)

// GenerateRequest is the body of POST /api/generate. Prompt pins text at the
// start of every sample, Suffix at the end; Infill is a template with
// [MASK] and [MASK:n] spans to fill, instead of both.
type GenerateRequest struct {
	Model  string `json:"model,omitempty"`
	Prompt string `json:"prompt,omitempty"`
	Suffix string `json:"suffix,omitempty"`
	Infill string `json:"infill,omitempty"`
	// Stream (default true) answers with one NDJSON line per step and the
	// result last; false answers with the result only.
	Stream *bool `json:"stream,omitempty"`
	// Mask is how a masked position shows in a streamed step's text
	// (default "_"); StreamTokens adds the token ids to every step.
	Mask         *string         `json:"mask,omitempty"`
	StreamTokens bool            `json:"stream_tokens,omitempty"`
	Options      GenerateOptions `json:"options,omitempty"`
}

// GenerateOptions are the sampler's settings; absent fields take the SDK's
// defaults (a seed is drawn at random and reported).
type GenerateOptions struct {
	Steps   int     `json:"steps,omitempty"`
	Sampler string  `json:"sampler,omitempty"`
	Seed    *uint64 `json:"seed,omitempty"`
	Batch   int     `json:"batch,omitempty"`
	Length  int     `json:"length,omitempty"`
	Denoise *bool   `json:"denoise,omitempty"`
	EndTime float64 `json:"end_time,omitempty"`
	// Temperature, TopK and TopP reshape the token a mask unmasks to
	// (sdk.SampleRequest); absent or 0: off.
	Temperature float64 `json:"temperature,omitempty"`
	TopK        int     `json:"top_k,omitempty"`
	TopP        float64 `json:"top_p,omitempty"`
	// Threshold and EntropyBudget are the knobs of the confidence and
	// entropy-bounded samplers (sdk.SampleRequest); absent or 0: the SDK's
	// default for that sampler.
	Threshold     float64 `json:"threshold,omitempty"`
	EntropyBudget float64 `json:"entropy_budget,omitempty"`
	// BlockOverlap samples a Length above the trained one in blocks
	// (sdk.SampleRequest); absent or 0: the whole length at once.
	BlockOverlap int `json:"block_overlap,omitempty"`
}

// Sample is one generated or partly generated sequence.
type Sample struct {
	Text   string  `json:"text"`
	Tokens []int64 `json:"tokens,omitempty"`
}

// GenerateStep is one streamed line before the last: the samples after a
// step, masks shown as the request's Mask.
type GenerateStep struct {
	Model     string   `json:"model"`
	CreatedAt string   `json:"created_at"`
	Step      int      `json:"step"`
	Steps     int      `json:"steps"`
	T         float64  `json:"t"`
	Masked    int      `json:"masked"`
	Response  string   `json:"response"`
	Samples   []Sample `json:"samples"`
	Done      bool     `json:"done"`
}

// GenerateResponse is the answer (or the last streamed line): Response is
// the first sample's text, Samples all of them with their token ids.
// Durations are in nanoseconds, as ollama's are.
type GenerateResponse struct {
	Model           string   `json:"model"`
	CreatedAt       string   `json:"created_at"`
	Response        string   `json:"response"`
	Samples         []Sample `json:"samples"`
	Done            bool     `json:"done"`
	DoneReason      string   `json:"done_reason"`
	Steps           int      `json:"steps"`
	NetworkCalls    int      `json:"network_calls"`
	Sampler         string   `json:"sampler"`
	Denoise         bool     `json:"denoise"`
	EndTime         float64  `json:"end_time"`
	Seed            uint64   `json:"seed"`
	Length          int      `json:"length"`
	Temperature     float64  `json:"temperature"`
	TopK            int      `json:"top_k"`
	TopP            float64  `json:"top_p"`
	BlockOverlap    int      `json:"block_overlap"`
	TotalDuration   int64    `json:"total_duration"`
	QueueDuration   int64    `json:"queue_duration"`
	NetworkDuration int64    `json:"network_duration"`
}

// EvaluateRequest is the body of POST /api/evaluate: Text, or Documents.
type EvaluateRequest struct {
	Model     string          `json:"model,omitempty"`
	Text      string          `json:"text,omitempty"`
	Documents []string        `json:"documents,omitempty"`
	Options   EvaluateOptions `json:"options,omitempty"`
}

// EvaluateOptions are the likelihood estimator's settings.
type EvaluateOptions struct {
	Timesteps int     `json:"timesteps,omitempty"`
	Sampling  string  `json:"sampling,omitempty"`
	Seed      uint64  `json:"seed,omitempty"`
	Length    int     `json:"length,omitempty"`
	MinTime   float64 `json:"min_time,omitempty"`
	BatchSize int     `json:"batch_size,omitempty"`
	DropLast  bool    `json:"drop_last,omitempty"`
}

// EvaluateResponse is the likelihood bound of the text and of each window.
type EvaluateResponse struct {
	Model     string `json:"model"`
	CreatedAt string `json:"created_at"`
	sdk.Bound
	Windows       []sdk.Bound `json:"windows"`
	TotalDuration int64       `json:"total_duration"`
}

// ModelSummary is one entry of GET /api/tags.
type ModelSummary struct {
	Name    string       `json:"name"`
	Model   string       `json:"model"`
	Size    int64        `json:"size"`
	Digest  string       `json:"digest"`
	Details ModelDetails `json:"details"`
}

// ModelDetails are ollama's details, in SEDD's terms.
type ModelDetails struct {
	Format        string `json:"format"`
	Family        string `json:"family"`
	ParameterSize string `json:"parameter_size"`
	Graph         string `json:"graph"`
	Noise         string `json:"noise"`
	Tokens        int    `json:"tokens"`
	Length        int    `json:"length"`
}

// ShowRequest is the body of POST /api/show.
type ShowRequest struct {
	Model string `json:"model,omitempty"`
}

// ShowResponse describes one model and how it runs here.
type ShowResponse struct {
	Details   ModelDetails   `json:"details"`
	ModelInfo sdk.Info       `json:"model_info"`
	Batching  sdk.BatchStats `json:"batching"`
}

// Health is the answer of GET /api/health.
type Health struct {
	Status string   `json:"status"`
	Models []string `json:"models"`
}

// ErrorResponse is the body of every error: the message, the request field
// at fault when there is one, and the request id the logs carry.
type ErrorResponse struct {
	Error     string `json:"error"`
	Field     string `json:"field,omitempty"`
	RequestID string `json:"request_id"`
}

// apiError is an error with its HTTP answer.
type apiError struct {
	status     int
	kind       string // the metrics' error kind
	msg        string
	field      string
	retryAfter time.Duration
}

func (e *apiError) Error() string { return e.msg }

func badRequest(field, format string, a ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, kind: "bad_request", field: field, msg: fmt.Sprintf(format, a...)}
}

// fieldNames maps the SDK's request fields to the JSON names of the options.
var fieldNames = map[string]string{
	"Steps": "options.steps", "Sampler": "options.sampler", "EndTime": "options.end_time",
	"Batch": "options.batch", "Length": "options.length", "Timesteps": "options.timesteps",
	"Sampling": "options.sampling", "MinTime": "options.min_time", "BatchSize": "options.batch_size",
	"Temperature": "options.temperature", "TopK": "options.top_k", "TopP": "options.top_p",
	"BlockOverlap": "options.block_overlap", "Threshold": "options.threshold", "EntropyBudget": "options.entropy_budget",
}

// asAPIError maps an error of a handler to its answer: the SDK's kinds to
// 400 and 503, the request's deadline to 504, a client gone to 499 (logged
// only), a drain past its deadline to 503, anything else to 500. ctx is the
// request's own context (without the server's time limit).
func (s *Server) asAPIError(ctx context.Context, err error) *apiError {
	var ae *apiError
	var fe *sdk.FieldError
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &tooBig):
		return &apiError{status: http.StatusRequestEntityTooLarge, kind: "bad_request",
			msg: fmt.Sprintf("the request body is over the server's limit of %d bytes", tooBig.Limit)}
	case errors.As(err, &fe):
		name := fieldNames[fe.Field]
		return badRequest(name, "%s %s", name, fe.Problem)
	case errors.Is(err, sdk.ErrBadRequest):
		return badRequest("", "%s", err.Error())
	case errors.Is(err, sdk.ErrClosed):
		return &apiError{status: http.StatusServiceUnavailable, kind: "closed", msg: "the server is shutting down; retry on another replica"}
	case errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil:
		return &apiError{status: http.StatusGatewayTimeout, kind: "timeout",
			msg: fmt.Sprintf("the request ran past the server's time limit of %v; ask for fewer steps, samples or timesteps", s.cfg.Timeout)}
	case (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) && s.draining.Load():
		return &apiError{status: http.StatusServiceUnavailable, kind: "closed",
			msg: "the server shut down before the request finished; retry on another replica"}
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return &apiError{status: statusClientGone, kind: "canceled", msg: "the client went away: " + err.Error()}
	}
	return &apiError{status: http.StatusInternalServerError, kind: "internal", msg: err.Error()}
}

func writeError(w http.ResponseWriter, r *http.Request, e *apiError) {
	if e.retryAfter > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int((e.retryAfter+time.Second-1)/time.Second)))
	}
	writeJSON(w, e.status, ErrorResponse{Error: e.msg, Field: e.field, RequestID: requestIDOf(r.Context())})
}

// writeStreamError ends a stream whose status was sent with an error line.
func writeStreamError(w http.ResponseWriter, r *http.Request, e *apiError) {
	if e.status == statusClientGone {
		return
	}
	_ = writeLine(w, ErrorResponse{Error: e.msg, Field: e.field, RequestID: requestIDOf(r.Context())})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body, _ = marshal(ErrorResponse{Error: "encoding the answer: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeLine writes one NDJSON line and flushes it to the client.
func writeLine(w http.ResponseWriter, v any) error {
	body, err := marshal(v)
	if err != nil {
		return err
	}
	if _, err := w.Write(body); err != nil {
		return err
	}
	return http.NewResponseController(w).Flush()
}

// marshal encodes v as one line of JSON, without HTML escaping.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// decode reads a JSON body into v: unknown fields and trailing data are
// refused, so that a misspelt option is an error rather than ignored.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) error {
	// A client that sends its body slowly holds nothing but this goroutine,
	// and not for long.
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(bodyTimeout))
	defer rc.SetReadDeadline(time.Time{})
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return err
		}
		return badRequest("", "the body is not a valid request: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return badRequest("", "the body has data after the JSON object")
	}
	return nil
}

// bodyTimeout bounds the reading of a request body.
const bodyTimeout = 30 * time.Second

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

// named is a request body that names its model.
type named interface{ modelName() string }

func (r *GenerateRequest) modelName() string { return r.Model }
func (r *EvaluateRequest) modelName() string { return r.Model }
func (r *ShowRequest) modelName() string     { return r.Model }

// read decodes a request body into req and returns the model it names.
func (s *Server) read(w http.ResponseWriter, r *http.Request, req named) (*Model, error) {
	if err := s.decode(w, r, req); err != nil {
		return nil, err
	}
	return s.model(req.modelName())
}

// run starts the work of a request: its time limit, then a slot. release
// gives both back.
func (s *Server) run(ctx context.Context) (context.Context, func(), error) {
	ctx, cancel := s.deadline(ctx)
	release, err := s.admit(ctx)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return ctx, func() { release(); cancel() }, nil
}

// maxLength is the longest sequence a request to m may ask for.
func (s *Server) maxLength(m *Model) int {
	if s.cfg.MaxLength > 0 {
		return s.cfg.MaxLength
	}
	return m.Model.Info().Length
}

// generate serves POST /api/generate.
func (s *Server) generate(w http.ResponseWriter, r *http.Request) error {
	start := time.Now()
	var req GenerateRequest
	m, err := s.read(w, r, &req)
	if err != nil {
		return err
	}
	sreq, err := s.sampleRequest(m, req)
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
	ctx, release, err := s.run(r.Context())
	if err != nil {
		return err
	}
	defer release()
	queued := time.Since(start)
	stream := req.Stream == nil || *req.Stream
	if !stream {
		res, err := m.Model.Sample(ctx, sreq)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, s.result(m, res, start, queued))
		return nil
	}
	rc := http.NewResponseController(w)
	started := false
	for step, err := range m.Model.Stream(ctx, sreq) {
		if err != nil {
			return err
		}
		if !started {
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
			started = true
		}
		if s.cfg.WriteTimeout > 0 {
			_ = rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout))
		}
		var line any
		if step.Result != nil {
			line = s.result(m, step.Result, start, queued)
		} else {
			line = s.step(m, step, mask, req.StreamTokens)
		}
		if err := writeLine(w, line); err != nil {
			// The client stopped reading: the loop ends, and with it the run.
			return &apiError{status: statusClientGone, kind: "canceled", msg: "writing to the client: " + err.Error()}
		}
	}
	return nil
}

// deadline applies the per-request timeout.
func (s *Server) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.cfg.Timeout > 0 {
		return context.WithTimeout(ctx, s.cfg.Timeout)
	}
	return context.WithCancel(ctx)
}

// sampleRequest checks a generate request against the server's limits and
// turns it into the SDK's request, which the SDK checks further.
func (s *Server) sampleRequest(m *Model, req GenerateRequest) (sdk.SampleRequest, error) {
	o := req.Options
	maxLen := s.maxLength(m)
	switch {
	case o.Steps > s.cfg.MaxSteps:
		return sdk.SampleRequest{}, badRequest("options.steps", "options.steps must be ≤ %d on this server, got %d", s.cfg.MaxSteps, o.Steps)
	case o.Batch > s.cfg.MaxSamples:
		return sdk.SampleRequest{}, badRequest("options.batch", "options.batch must be ≤ %d on this server, got %d", s.cfg.MaxSamples, o.Batch)
	case o.Length > maxLen:
		return sdk.SampleRequest{}, badRequest("options.length", "options.length must be ≤ %d on this server, got %d", maxLen, o.Length)
	}
	sr := sdk.SampleRequest{
		Steps: o.Steps, Sampler: o.Sampler, EndTime: o.EndTime, Batch: o.Batch, Length: o.Length,
		Temperature: o.Temperature, TopK: o.TopK, TopP: o.TopP, BlockOverlap: o.BlockOverlap,
		Threshold: o.Threshold, EntropyBudget: o.EntropyBudget,
		Prefix: req.Prompt, Suffix: req.Suffix, Template: req.Infill,
	}
	if o.Denoise != nil {
		sr.NoDenoise = !*o.Denoise
	}
	if o.Seed != nil {
		sr.Seed = *o.Seed
	} else {
		sr.Seed = uint64(rand.Uint32())
	}
	return sr, nil
}

func (s *Server) step(m *Model, st sdk.Step, mask string, tokens bool) GenerateStep {
	out := GenerateStep{Model: m.Name, CreatedAt: now(), Step: st.Index, Steps: st.Steps, T: st.T, Masked: st.Masked,
		Samples: make([]Sample, len(st.Tokens))}
	for i, t := range st.Tokens {
		out.Samples[i].Text = m.Model.Decode(t, mask)
		if tokens {
			out.Samples[i].Tokens = t
		}
	}
	out.Response = out.Samples[0].Text
	return out
}

func (s *Server) result(m *Model, res *sdk.SampleResult, start time.Time, queued time.Duration) GenerateResponse {
	out := GenerateResponse{
		Model: m.Name, CreatedAt: now(), Done: true, DoneReason: "stop",
		Steps: res.Steps, NetworkCalls: res.NetworkCalls, Sampler: res.Sampler, Denoise: res.Denoise,
		EndTime: res.EndTime, Seed: res.Seed, Length: res.Length,
		Temperature: res.Temperature, TopK: res.TopK, TopP: res.TopP, BlockOverlap: res.BlockOverlap,
		TotalDuration: time.Since(start).Nanoseconds(), QueueDuration: queued.Nanoseconds(),
		NetworkDuration: res.Network.Nanoseconds(),
	}
	for _, smp := range res.Samples {
		out.Samples = append(out.Samples, Sample{Text: smp.Text, Tokens: smp.Tokens})
	}
	out.Response = out.Samples[0].Text
	return out
}

// evaluate serves POST /api/evaluate.
func (s *Server) evaluate(w http.ResponseWriter, r *http.Request) error {
	start := time.Now()
	var req EvaluateRequest
	m, err := s.read(w, r, &req)
	if err != nil {
		return err
	}
	o := req.Options
	docs := req.Documents
	switch {
	case req.Text != "" && len(docs) > 0:
		return badRequest("text", "give text or documents, not both")
	case req.Text != "":
		docs = []string{req.Text}
	}
	// K = 1 (or 2 antithetic) has no standard error: +Inf, which JSON
	// cannot carry.
	minK := 2
	if o.Sampling == sdk.Antithetic {
		minK = 4
	}
	maxLen := s.maxLength(m)
	switch {
	case o.Timesteps != 0 && o.Timesteps < minK:
		return badRequest("options.timesteps", "options.timesteps must be ≥ %d for a standard error, got %d", minK, o.Timesteps)
	case o.Timesteps > s.cfg.MaxTimesteps:
		return badRequest("options.timesteps", "options.timesteps must be ≤ %d on this server, got %d", s.cfg.MaxTimesteps, o.Timesteps)
	case o.BatchSize > s.cfg.MaxEvalBatch:
		return badRequest("options.batch_size", "options.batch_size must be ≤ %d on this server, got %d", s.cfg.MaxEvalBatch, o.BatchSize)
	case o.Length > maxLen:
		return badRequest("options.length", "options.length must be ≤ %d on this server, got %d", maxLen, o.Length)
	}
	ctx, release, err := s.run(r.Context())
	if err != nil {
		return err
	}
	defer release()
	res, err := m.Model.Evaluate(ctx, sdk.EvaluateRequest{
		Documents: docs, Timesteps: o.Timesteps, Sampling: o.Sampling, MinTime: o.MinTime, Seed: o.Seed,
		BatchSize: o.BatchSize, Length: o.Length, DropLast: o.DropLast,
	})
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, EvaluateResponse{Model: m.Name, CreatedAt: now(), Bound: res.Bound, Windows: res.Windows,
		TotalDuration: time.Since(start).Nanoseconds()})
	return nil
}

func details(info sdk.Info) ModelDetails {
	return ModelDetails{Format: "onnx", Family: "sedd", ParameterSize: paramSize(info.Params), Graph: info.Graph,
		Noise: info.Noise, Tokens: info.Tokens, Length: info.Length}
}

// paramSize writes a parameter count as ollama does ("6.2M").
func paramSize(n int64) string {
	switch {
	case n >= 1e9:
		return strconv.FormatFloat(float64(n)/1e9, 'f', 1, 64) + "B"
	case n >= 1e6:
		return strconv.FormatFloat(float64(n)/1e6, 'f', 1, 64) + "M"
	case n >= 1e3:
		return strconv.FormatFloat(float64(n)/1e3, 'f', 1, 64) + "K"
	}
	return strconv.FormatInt(n, 10)
}

// tags serves GET /api/tags, the model list.
func (s *Server) tags(w http.ResponseWriter, r *http.Request) error {
	var out struct {
		Models []ModelSummary `json:"models"`
	}
	for _, m := range s.models {
		info := m.Model.Info()
		out.Models = append(out.Models, ModelSummary{Name: m.Name, Model: m.Name, Size: info.ONNXSize,
			Digest: manifestDigest(info), Details: details(info)})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// manifestDigest is the sha256 of the network that sedd.json records.
func manifestDigest(info sdk.Info) string {
	var man struct {
		ONNX struct {
			SHA256 string `json:"sha256"`
		} `json:"onnx"`
	}
	if json.Unmarshal(info.Manifest, &man) != nil {
		return ""
	}
	return man.ONNX.SHA256
}

// show serves POST /api/show.
func (s *Server) show(w http.ResponseWriter, r *http.Request) error {
	var req ShowRequest
	m, err := s.read(w, r, &req)
	if err != nil {
		return err
	}
	info := m.Model.Info()
	writeJSON(w, http.StatusOK, ShowResponse{Details: details(info), ModelInfo: info, Batching: m.Model.BatchStats()})
	return nil
}

// health serves GET /api/health: 200 while serving, 503 while draining.
func (s *Server) health(w http.ResponseWriter, r *http.Request) error {
	h := Health{Status: "ok"}
	for _, m := range s.models {
		h.Models = append(h.Models, m.Name)
	}
	status := http.StatusOK
	if s.draining.Load() {
		h.Status, status = "draining", http.StatusServiceUnavailable
	}
	writeJSON(w, status, h)
	return nil
}
