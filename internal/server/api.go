package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/sedd-go/sedd/api"
	"github.com/sedd-go/sedd/sdk"
)

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
		name := "options." + fe.JSONName()
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
	writeJSON(w, e.status, errorBody(r, e))
}

// writeStreamError ends a stream whose status was sent with an error line
// (an event of a server-sent event stream).
func writeStreamError(w http.ResponseWriter, r *http.Request, e *apiError) {
	if e.status == statusClientGone {
		return
	}
	if openAIPath(r) {
		_ = writeEvent(w, errorBody(r, e))
		return
	}
	_ = writeLine(w, errorBody(r, e))
}

// openAIPath reports whether r is one of OpenAI's endpoints, which answer
// errors in OpenAI's error object.
func openAIPath(r *http.Request) bool { return strings.HasPrefix(r.URL.Path, "/v1/") }

// errorBody is the body of an error answer: OpenAI's error object on its
// endpoints (where SEDD's options are top-level fields), else ollama's.
func errorBody(r *http.Request, e *apiError) any {
	if !openAIPath(r) {
		return api.ErrorResponse{Error: e.msg, Field: e.field, RequestID: requestIDOf(r.Context())}
	}
	field := strings.TrimPrefix(e.field, "options.")
	msg := strings.ReplaceAll(e.msg, "options.", "")
	typ := "invalid_request_error"
	switch {
	case e.status == http.StatusTooManyRequests:
		typ = "rate_limit_error"
	case e.status >= 500:
		typ = "server_error"
	}
	code := e.kind
	if e.status == http.StatusNotFound && strings.HasPrefix(e.msg, "model ") {
		code = "model_not_found"
	}
	out := api.OpenAIError{Error: api.OpenAIErrorDetail{Message: msg, Type: typ, Code: &code}}
	if field != "" {
		out.Error.Param = &field
	}
	return out
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := marshal(v)
	if err != nil {
		status = http.StatusInternalServerError
		body, _ = marshal(api.ErrorResponse{Error: "encoding the answer: " + err.Error(), RequestID: w.Header().Get("X-Request-Id")})
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

// decode reads a JSON body into v. The body must be one JSON object (not
// null, nothing after it) within the size limit and arrive within
// BodyTimeout (408 past it, the connection closed, as after any body not read
// to its end); a value of the wrong type is refused, naming its field. Fields
// that v does not declare (the many of ollama's and OpenAI's that have no
// meaning for a SEDD model) are ignored, as ollama ignores what a model does
// not support: the answer names them in its X-Sedd-Ignored header, and the
// log at debug level, once per endpoint and field.
func (s *Server) decode(w http.ResponseWriter, r *http.Request, v any) error {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(s.cfg.BodyTimeout))
	var raw json.RawMessage
	body := json.NewDecoder(http.MaxBytesReader(w, r.Body, s.cfg.MaxBodyBytes))
	err := body.Decode(&raw)
	trailing := false
	if err == nil {
		// Anything but the end after the object: more data.
		if _, err = body.Token(); err == io.EOF {
			err = nil
		} else {
			trailing, err = true, nil
		}
	}
	if err != nil || trailing {
		// The rest of the body is not read: close the connection after the
		// answer (the read deadline stays, so that the server does not wait
		// for the rest either).
		w.Header().Set("Connection", "close")
		var tooBig *http.MaxBytesError
		switch {
		case trailing:
			return badRequest("", "the body has data after the JSON object")
		case errors.As(err, &tooBig):
			return err
		case errors.Is(err, os.ErrDeadlineExceeded):
			return &apiError{status: http.StatusRequestTimeout, kind: "bad_request",
				msg: fmt.Sprintf("the request body did not arrive within %v; send it at once", s.cfg.BodyTimeout)}
		}
		return badRequest("", "the body is not a valid request: %v", err)
	}
	_ = rc.SetReadDeadline(time.Time{})
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '{' {
		return badRequest("", "the body must be a JSON object, got %.20s", t)
	}
	if err := json.NewDecoder(bytes.NewReader(raw)).Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			field := jsonPath(te.Field)
			return badRequest(field, "%s must be a JSON value of Go type %s, got %s", field, te.Type, te.Value)
		}
		return badRequest("", "the body is not a valid request: %v", err)
	}
	if ignored := unknownFields(raw, reflect.TypeOf(v), ""); len(ignored) > 0 {
		w.Header().Set("X-Sedd-Ignored", strings.Join(ignored, ", "))
		for _, f := range ignored {
			if _, seen := s.ignoredLogged.LoadOrStore(r.URL.Path+" "+f, true); !seen {
				s.log.Debug("ignoring a field this server has no use for", "path", r.URL.Path, "field", f)
			}
		}
	}
	return nil
}

// jsonPath is the JSON path of a field that encoding/json names: without the
// names of embedded structs ("Options.temperature" is "temperature"), which
// are Go's, capitalized, where every JSON key of the API is lower case.
func jsonPath(field string) string {
	parts := strings.Split(field, ".")
	parts = slices.DeleteFunc(parts, func(p string) bool { return p != "" && unicode.IsUpper(rune(p[0])) })
	return strings.Join(parts, ".")
}

// unknownFields lists the keys of the JSON object body that struct type t
// does not declare, and those of its objects' fields of struct type, as
// "options.foo".
func unknownFields(body []byte, t reflect.Type, prefix string) []string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var obj map[string]json.RawMessage
	if t.Kind() != reflect.Struct || json.Unmarshal(body, &obj) != nil {
		return nil
	}
	fields := map[string]reflect.Type{}
	jsonFields(t, fields)
	var out []string
	for k, raw := range obj {
		ft, ok := fields[k]
		if !ok {
			out = append(out, prefix+k)
			continue
		}
		if ft.Kind() == reflect.Struct {
			out = append(out, unknownFields(raw, ft, prefix+k+".")...)
		}
	}
	slices.Sort(out)
	return out
}

// jsonFields adds the JSON names of struct type t's fields, those of its
// embedded structs included, with their types.
func jsonFields(t reflect.Type, into map[string]reflect.Type) {
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" {
			continue
		}
		ft := f.Type
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if f.Anonymous && name == "" && ft.Kind() == reflect.Struct {
			jsonFields(ft, into)
			continue
		}
		if name == "" {
			name = f.Name
		}
		into[name] = ft
	}
}

func now() string { return time.Now().UTC().Format(time.RFC3339Nano) }

// read decodes a request body into req and returns the model it names.
func (s *Server) read(w http.ResponseWriter, r *http.Request, req any, name func() string) (*Model, error) {
	if err := s.decode(w, r, req); err != nil {
		return nil, err
	}
	return s.model(name())
}

// run starts the work of a request: its time limit, then a slot and need
// bytes of the memory budget. release gives them back.
func (s *Server) run(ctx context.Context, need int64) (context.Context, func(), error) {
	ctx, cancel := s.deadline(ctx)
	release, err := s.admit(ctx, need)
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

// deadline applies the per-request timeout.
func (s *Server) deadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.cfg.Timeout > 0 {
		return context.WithTimeout(ctx, s.cfg.Timeout)
	}
	return context.WithCancel(ctx)
}

// evaluate serves POST /api/evaluate.
func (s *Server) evaluate(w http.ResponseWriter, r *http.Request) error {
	start := time.Now()
	var req api.EvaluateRequest
	m, err := s.read(w, r, &req, func() string { return req.Model })
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
	ctx, release, err := s.run(r.Context(), evalMemory(m, o))
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
	writeJSON(w, http.StatusOK, api.EvaluateResponse{Model: m.Name, CreatedAt: now(), Bound: res.Bound, Windows: res.Windows,
		TotalDuration: time.Since(start).Nanoseconds()})
	return nil
}

func details(info sdk.Info) api.ModelDetails {
	return api.ModelDetails{Format: "onnx", Family: "sedd", Families: []string{"sedd"}, ParameterSize: paramSize(info.Params),
		QuantizationLevel: quantization(info), ContextLength: info.Length, Graph: info.Graph, Noise: info.Noise, Tokens: info.Tokens, Length: info.Length}
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

// health serves GET /api/health: 200 while serving, 503 while draining.
func (s *Server) health(w http.ResponseWriter, r *http.Request) error {
	h := api.Health{Status: "ok"}
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
