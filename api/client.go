package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// Client calls a `sedd serve` (or any server of this API) over HTTP. Its
// methods are safe for concurrent use.
type Client struct {
	base *url.URL
	http *http.Client
}

// NewClient returns a client of the server at base ("http://127.0.0.1:11434")
// over hc (nil: http.DefaultClient).
func NewClient(base string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, fmt.Errorf("api: server address %q: %w", base, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("api: server address %q: want http://HOST:PORT", base)
	}
	if hc == nil {
		hc = http.DefaultClient
	}
	return &Client{base: u, http: hc}, nil
}

// StatusError is an error answer of the server: its HTTP status, message and
// the request field at fault ("options.steps"), if any.
type StatusError struct {
	StatusCode int
	Message    string
	Field      string
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("sedd server: %d %s: %s", e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

// maxLine bounds one line of a stream (a step with many long samples).
const maxLine = 64 << 20

// do sends body (JSON) to path and calls fn with each line of the answer:
// one for a plain answer, one per line of a stream. An error line ends it.
func (c *Client) do(ctx context.Context, method, path string, body any, fn func([]byte) error) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base.JoinPath(path).String(), rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 400 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		var e ErrorResponse
		if json.Unmarshal(data, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(data))
		}
		return &StatusError{StatusCode: resp.StatusCode, Message: e.Error, Field: e.Field}
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), maxLine)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e ErrorResponse
		if json.Unmarshal(line, &e) == nil && e.Error != "" {
			return &StatusError{StatusCode: resp.StatusCode, Message: e.Error, Field: e.Field}
		}
		if err := fn(line); err != nil {
			return err
		}
	}
	return sc.Err()
}

// into decodes one answer into v.
func into(v any) func([]byte) error {
	return func(b []byte) error { return json.Unmarshal(b, v) }
}

// Generate samples text (POST /api/generate); fn gets each step, then the
// result (Done), or the result only when req.Stream is false.
func (c *Client) Generate(ctx context.Context, req *GenerateRequest, fn func(GenerateResponse) error) error {
	return c.do(ctx, http.MethodPost, "/api/generate", req, func(b []byte) error {
		var r GenerateResponse
		if err := json.Unmarshal(b, &r); err != nil {
			return err
		}
		return fn(r)
	})
}

// Chat answers a chat (POST /api/chat), as Generate.
func (c *Client) Chat(ctx context.Context, req *ChatRequest, fn func(ChatResponse) error) error {
	return c.do(ctx, http.MethodPost, "/api/chat", req, func(b []byte) error {
		var r ChatResponse
		if err := json.Unmarshal(b, &r); err != nil {
			return err
		}
		return fn(r)
	})
}

// Evaluate bounds the likelihood of a text (POST /api/evaluate).
func (c *Client) Evaluate(ctx context.Context, req *EvaluateRequest) (*EvaluateResponse, error) {
	var r EvaluateResponse
	return &r, c.do(ctx, http.MethodPost, "/api/evaluate", req, into(&r))
}

// List lists the models (GET /api/tags).
func (c *Client) List(ctx context.Context) (*ListResponse, error) {
	var r ListResponse
	return &r, c.do(ctx, http.MethodGet, "/api/tags", nil, into(&r))
}

// Show describes a model (POST /api/show).
func (c *Client) Show(ctx context.Context, req *ShowRequest) (*ShowResponse, error) {
	var r ShowResponse
	return &r, c.do(ctx, http.MethodPost, "/api/show", req, into(&r))
}

// Health reports whether the server serves (GET /api/health): a draining
// server answers a StatusError of status 503.
func (c *Client) Health(ctx context.Context) (*Health, error) {
	var r Health
	return &r, c.do(ctx, http.MethodGet, "/api/health", nil, into(&r))
}
