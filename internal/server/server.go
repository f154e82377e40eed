// Package server is the HTTP service behind `sedd serve`: an ollama-shaped
// JSON API over one or more SEDD models (docs in openapi.yaml), streaming
// each sampling step as a line of NDJSON, with admission limits, a queue that
// answers 429 when full, per-request timeouts, cancellation when a client
// goes away, Prometheus metrics and a graceful drain. Cross-request batching
// is the SDK's (sdk.WithBatching): when it is wanted, the models are opened
// with it, and the server runs every request as an ordinary SDK call either
// way.
//
// A Server is stateless between requests, so any number of replicas can run
// behind an HTTP load balancer.
package server

import (
	"context"
	"crypto/rand"
	_ "embed" // the OpenAPI document
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"regexp"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sedd-go/sedd/sdk"
)

// OpenAPI is the API's OpenAPI 3.0 document, served at /api/openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte

// Model is one model the server serves, under Name.
type Model struct {
	Name  string
	Model *sdk.Model
}

// Config bounds what one request may ask for and how many run at once. The
// zero value of a field means its default (Defaults).
type Config struct {
	// MaxBodyBytes bounds a request body (413 past it).
	MaxBodyBytes int64
	// MaxSteps, MaxSamples and MaxLength bound a generate request's steps,
	// samples (options.batch) and sequence length; MaxLength 0 means each
	// model's trained length.
	MaxSteps, MaxSamples, MaxLength int
	// MaxTimesteps and MaxEvalBatch bound an evaluate request's
	// Monte-Carlo timesteps and rows per network evaluation.
	MaxTimesteps, MaxEvalBatch int
	// MaxActive requests run at once; MaxQueue more wait for a slot, and
	// past that a request is refused with 429 and Retry-After.
	MaxActive, MaxQueue int
	// RetryAfter is what a 429 tells the client to wait.
	RetryAfter time.Duration
	// Timeout bounds a request from its arrival, queueing included (504
	// past it, or an error line in a stream).
	Timeout time.Duration
	// WriteTimeout bounds the write of one response or one streamed line
	// to a client that stopped reading.
	WriteTimeout time.Duration
	// BodyTimeout bounds the reading of one request body: past it the
	// request is answered 408 and its connection closed.
	BodyTimeout time.Duration
	// MaxConnsPerClient bounds the connections one client address holds at
	// once (Serve): past it a new connection is answered 429 and closed. 0
	// means MaxActive + MaxQueue + 64: every request the server could admit,
	// and some idle connections.
	MaxConnsPerClient int
	// MemoryBudget bounds the memory estimate (the SDK's, per request: rows ×
	// window length, see sdk.Model.RequestMemory) of all the requests
	// running at once: a request that would pass it waits in the queue, one
	// that alone needs more is refused with 503. 0 means the largest
	// per-request limit of the models (sdk.WithMemoryLimit; by default half
	// of the machine's memory).
	MemoryBudget int64
	// AllowedOrigins are browser origins allowed besides the default ones
	// (http and https on localhost, 127.0.0.1, [::1] and 0.0.0.0, any port;
	// app, file, tauri, vscode-webview and vscode-file pages): a request
	// whose Origin header is none of them is refused with 403. An entry may
	// hold "*" wildcards ("https://*.example.com", "*" for any origin).
	AllowedOrigins []string
	// AllowedHosts are Host header names allowed besides the default ones
	// when the server listens on a loopback address: a request naming
	// another host is refused with 403 (DNS rebinding). The defaults are
	// localhost, IP addresses that are loopback, private or unspecified,
	// this machine's host name, and names under .localhost, .local and
	// .internal. "*" allows any.
	AllowedHosts []string
	// DisclosePaths lets /api/show answer the model's directory and the ONNX
	// Runtime library's path; by default only their base names are given.
	DisclosePaths bool
	// Logger gets one line per request, and the server's events.
	Logger *slog.Logger
}

// Defaults returns the default limits.
func Defaults() Config {
	return Config{
		MaxBodyBytes: 1 << 20, MaxSteps: 1024, MaxSamples: 16,
		MaxTimesteps: 1024, MaxEvalBatch: 64,
		MaxActive: 64, MaxQueue: 256, RetryAfter: time.Second,
		Timeout: 5 * time.Minute, WriteTimeout: 30 * time.Second,
		BodyTimeout: 30 * time.Second,
		Logger:      slog.New(slog.DiscardHandler),
	}
}

// withDefaults fills the zero fields of c.
func (c Config) withDefaults() Config {
	d := Defaults()
	set := func(v *int, def int) {
		if *v == 0 {
			*v = def
		}
	}
	set(&c.MaxSteps, d.MaxSteps)
	set(&c.MaxSamples, d.MaxSamples)
	set(&c.MaxTimesteps, d.MaxTimesteps)
	set(&c.MaxEvalBatch, d.MaxEvalBatch)
	set(&c.MaxActive, d.MaxActive)
	set(&c.MaxQueue, d.MaxQueue)
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = d.MaxBodyBytes
	}
	if c.RetryAfter == 0 {
		c.RetryAfter = d.RetryAfter
	}
	if c.Timeout == 0 {
		c.Timeout = d.Timeout
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = d.WriteTimeout
	}
	if c.Logger == nil {
		c.Logger = d.Logger
	}
	if c.BodyTimeout == 0 {
		c.BodyTimeout = d.BodyTimeout
	}
	set(&c.MaxConnsPerClient, c.MaxActive+c.MaxQueue+64)
	return c
}

// Server serves models over HTTP. Its methods are safe for concurrent use.
type Server struct {
	cfg     Config
	models  []Model
	byName  map[string]*Model
	log     *slog.Logger
	mux     *http.ServeMux
	metrics *metrics

	slots    chan struct{} // one per running request
	queued   atomic.Int64  // requests waiting for a slot
	draining atomic.Bool

	ignoredLogged sync.Map // "path field" of the request fields logged as ignored

	handler http.Handler // mux behind the origin and content-type checks
	memory  memoryBudget
	origins []string
}

// New returns a server of models (the first is the default one) under cfg.
// Names must be unique and not empty.
func New(models []Model, cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if len(models) == 0 {
		return nil, errors.New("server: no model to serve")
	}
	for _, v := range []int{cfg.MaxSteps, cfg.MaxSamples, cfg.MaxTimesteps, cfg.MaxEvalBatch, cfg.MaxActive} {
		if v < 1 {
			return nil, fmt.Errorf("server: limits must be ≥ 1: %+v", cfg)
		}
	}
	if cfg.MaxQueue < 0 || cfg.MaxLength < 0 || cfg.MaxBodyBytes < 1 || cfg.Timeout < 0 || cfg.WriteTimeout < 0 ||
		cfg.BodyTimeout < 0 || cfg.MaxConnsPerClient < 0 || cfg.MemoryBudget < 0 {
		return nil, fmt.Errorf("server: negative limit: %+v", cfg)
	}
	s := &Server{cfg: cfg, models: models, byName: map[string]*Model{}, log: cfg.Logger,
		slots: make(chan struct{}, cfg.MaxActive)}
	for i := range s.models {
		m := &s.models[i]
		if m.Name == "" || m.Model == nil {
			return nil, fmt.Errorf("server: model %d has no name or no model", i)
		}
		if _, dup := s.byName[m.Name]; dup {
			return nil, fmt.Errorf("server: two models are named %q", m.Name)
		}
		s.byName[m.Name] = m
	}
	s.metrics = newMetrics(s)
	s.mux = http.NewServeMux()
	s.route("POST /api/generate", "generate", s.generate)
	s.route("POST /api/evaluate", "evaluate", s.evaluate)
	s.route("GET /api/tags", "tags", s.tags)
	s.route("POST /api/show", "show", s.show)
	s.route("POST /api/chat", "chat", s.chat)
	s.route("GET /api/ps", "ps", s.ps)
	s.route("GET /api/version", "version", s.version)
	s.route("GET /{$}", "root", s.root)
	s.route("GET /v1/models", "models", s.openAIModels)
	s.route("GET /v1/models/{model}", "models", s.openAIModel)
	s.route("POST /v1/completions", "completions", s.completions)
	s.route("POST /v1/chat/completions", "chat_completions", s.chatCompletions)
	s.route("GET /api/health", "health", s.health)
	s.route("GET /api/openapi.yaml", "openapi", func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Set("Content-Type", "application/yaml")
		_, err := w.Write(OpenAPI)
		return err
	})
	metrics := s.metrics.handler()
	s.route("GET /metrics", "metrics", func(w http.ResponseWriter, r *http.Request) error {
		metrics.ServeHTTP(w, r)
		return nil
	})
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, &apiError{status: http.StatusNotFound, kind: "not_found",
			msg: fmt.Sprintf("no endpoint %s %s: see /api/openapi.yaml", r.Method, r.URL.Path)})
	})
	if cfg.MemoryBudget == 0 {
		for _, m := range models {
			cfg.MemoryBudget = max(cfg.MemoryBudget, m.Model.MemoryLimit())
		}
		s.cfg.MemoryBudget = cfg.MemoryBudget
	}
	s.memory.init(cfg.MemoryBudget)
	s.origins = append(slices.Clone(defaultOrigins), cfg.AllowedOrigins...)
	s.handler = s.guard(s.mux)
	return s, nil
}

// Handler returns the server's HTTP handler: the API behind the Origin and
// content-type checks. The Host check applies only under Serve, which knows
// whether it listens on a loopback address.
func (s *Server) Handler() http.Handler { return s.handler }

// Serve answers requests on ln until ctx is done, then drains: it stops
// accepting connections, reports itself not ready, lets the requests in
// flight finish for up to drain, then cancels those still running (they stop
// within one network evaluation) and returns. It returns nil after a drain,
// or the listener's error.
func (s *Server) Serve(ctx context.Context, ln net.Listener, drain time.Duration) error {
	base, cancelAll := context.WithCancel(context.Background())
	defer cancelAll()
	handler := s.handler
	if isLoopback(ln.Addr()) {
		handler = s.hostCheck(handler)
	}
	ln = limitPerClient(ln, s.cfg.MaxConnsPerClient, s.cfg.RetryAfter, s.log)
	hs := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		BaseContext:       func(net.Listener) context.Context { return base },
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	s.draining.Store(true)
	s.log.Info("draining", "deadline", drain.String(), "running", len(s.slots), "queued", s.queued.Load())
	dctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	err := hs.Shutdown(dctx)
	if errors.Is(err, context.DeadlineExceeded) {
		s.log.Warn("drain deadline passed: cancelling the requests still running", "running", len(s.slots))
		cancelAll()
		grace, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err = hs.Shutdown(grace)
		if err != nil {
			hs.Close()
		}
	}
	<-served
	s.log.Info("drained")
	return err
}

// handlerFunc is a handler that returns an error for the wrapper to answer.
type handlerFunc func(http.ResponseWriter, *http.Request) error

// route registers h under pattern with the request id, the logs, the
// metrics, the panic guard and the error answer around it.
func (s *Server) route(pattern, endpoint string, h handlerFunc) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := requestID(r)
		rw := &responseWriter{ResponseWriter: w}
		rw.Header().Set("X-Request-Id", id)
		r = r.WithContext(withRequestID(r.Context(), id))
		var err error
		func() {
			defer func() {
				if p := recover(); p != nil {
					if p == http.ErrAbortHandler {
						panic(p)
					}
					s.log.Error("panic", "request_id", id, "endpoint", endpoint, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
					err = &apiError{status: http.StatusInternalServerError, kind: "internal",
						msg: fmt.Sprintf("internal error (request id %s); the server logged it", id)}
				}
			}()
			err = h(rw, r)
		}()
		status := rw.status
		kind := ""
		if err != nil {
			ae := s.asAPIError(r.Context(), err)
			kind = ae.kind
			if ae.status == statusClientGone {
				status = statusClientGone
			} else if !rw.wrote {
				writeError(rw, r, ae)
				status = ae.status
			} else {
				writeStreamError(rw, r, ae)
			}
		}
		if status == 0 {
			status = http.StatusOK
		}
		s.metrics.observe(endpoint, status, kind, time.Since(start))
		attrs := []any{"request_id", id, "method", r.Method, "path", r.URL.Path, "status", status,
			"duration_ms", float64(time.Since(start).Microseconds()) / 1e3}
		if err != nil {
			attrs = append(attrs, "error", err.Error())
		}
		level := slog.LevelInfo
		if status >= 500 {
			level = slog.LevelError
		}
		s.log.Log(r.Context(), level, "request", attrs...)
	})
}

// statusClientGone is logged (never sent) for a client that went away
// before its answer: nginx's 499.
const statusClientGone = 499

// admit waits for a slot to run a request and for need bytes of the
// server's memory budget. It refuses with 503 a request that alone needs more
// than the budget, and with 429 when MaxQueue requests wait already; release
// gives the slot and the memory back.
func (s *Server) admit(ctx context.Context, need int64) (release func(), err error) {
	if need > s.cfg.MemoryBudget {
		return nil, s.overBudget(need)
	}
	if s.tryAdmit(need) {
		return s.releaser(need), nil
	}
	if s.queued.Add(1) > int64(s.cfg.MaxQueue) {
		s.queued.Add(-1)
		return nil, &apiError{status: http.StatusTooManyRequests, kind: "queue_full", retryAfter: s.cfg.RetryAfter,
			msg: fmt.Sprintf("the server is full: %d requests running and %d waiting (%s of its %s memory budget in use); retry later",
				len(s.slots), s.cfg.MaxQueue, gib(s.memory.inUse()), gib(s.cfg.MemoryBudget))}
	}
	defer s.queued.Add(-1)
	for {
		select {
		case s.slots <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		ok, changed := s.memory.take(need)
		if ok {
			return s.releaser(need), nil
		}
		// Wait for memory without holding a slot.
		s.release()
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// tryAdmit takes a slot and the memory when both are free now.
func (s *Server) tryAdmit(need int64) bool {
	select {
	case s.slots <- struct{}{}:
	default:
		return false
	}
	if ok, _ := s.memory.take(need); ok {
		return true
	}
	s.release()
	return false
}

func (s *Server) releaser(need int64) func() {
	return func() {
		s.memory.give(need)
		s.release()
	}
}

func (s *Server) release() { <-s.slots }

// model returns the model a request names ("" is the default model).
func (s *Server) model(name string) (*Model, error) {
	if name == "" {
		return &s.models[0], nil
	}
	if m, ok := s.byName[name]; ok {
		return m, nil
	}
	names := make([]string, len(s.models))
	for i, m := range s.models {
		names[i] = m.Name
	}
	return nil, &apiError{status: http.StatusNotFound, kind: "not_found",
		msg: fmt.Sprintf("model %q not found; this server has %q (GET /api/tags)", name, names)}
}

// responseWriter remembers the status and whether anything was written.
type responseWriter struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (w *responseWriter) WriteHeader(code int) {
	if !w.wrote {
		w.status, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.status, w.wrote = http.StatusOK, true
	}
	return w.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection (flushes, write
// deadlines).
func (w *responseWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Request ids.
type idKey struct{}

var validID = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

// requestID returns the client's X-Request-Id when it is a plain token, else
// a new random one.
func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); validID.MatchString(id) {
		return id
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func withRequestID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, idKey{}, id)
}

func requestIDOf(ctx context.Context) string {
	id, _ := ctx.Value(idKey{}).(string)
	return id
}
