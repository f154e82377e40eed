package server

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sedd-go/sedd/api"
	"github.com/sedd-go/sedd/sdk"
)

// serveLoopback runs a server of the tiny fixture under Serve on
// 127.0.0.1, as `sedd serve` does, and returns its address.
func serveLoopback(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	m, err := sdk.Open(tinyAbsorb, sdk.WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s, err := New([]Model{{Name: "tiny", Model: m}}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln, time.Second) }()
	t.Cleanup(func() {
		stop()
		<-served
	})
	return s, ln.Addr().String()
}

// send makes one HTTP request with the given headers and returns the status
// and body.
func send(t *testing.T, addr, method, path, body string, headers map[string]string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+addr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		if k == "Host" {
			req.Host = v
		} else {
			req.Header.Set(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, string(data)
}

// TestSlowBodyIsCutAtTheDeadline sends a 151-byte body one byte at a time
// slower than the body timeout allows: it used to be read to its end (at 1
// byte per second, 152 s) with the connection held all along; the answer is
// a 408 at the deadline, and the connection is closed.
func TestSlowBodyIsCutAtTheDeadline(t *testing.T) {
	_, addr := serveLoopback(t, Config{BodyTimeout: time.Second})
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	start := time.Now()
	fmt.Fprintf(c, "POST /api/show HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: 151\r\n\r\n", addr)
	stopped := make(chan struct{})
	go func() { // one byte every 100 ms: the body would take 15 s
		for i := 0; i < 151; i++ {
			select {
			case <-stopped:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := c.Write([]byte(" ")); err != nil {
				return
			}
		}
	}()
	defer close(stopped)
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	took := time.Since(start)
	if resp.StatusCode != http.StatusRequestTimeout || !strings.Contains(string(body), "did not arrive within 1s") {
		t.Errorf("%d %s", resp.StatusCode, body)
	}
	if took > 4*time.Second {
		t.Errorf("answered after %v; the body timeout is 1 s", took)
	}
	// and the server closed the connection
	if _, err := br.ReadByte(); err != io.EOF {
		t.Errorf("the connection is still open after the answer: %v", err)
	}
}

// TestConnectionsPerClient opens more connections from one address than
// the server allows one client: the one past the limit is answered 429 and
// closed at once; when one closes, a new one is served.
func TestConnectionsPerClient(t *testing.T) {
	_, addr := serveLoopback(t, Config{MaxConnsPerClient: 2})
	var held []net.Conn
	for i := 0; i < 2; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	time.Sleep(100 * time.Millisecond) // accepted by now
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("the third connection: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "2 connections") {
		t.Errorf("the third connection: %d %q %s", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	held[0].Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Get("http://" + addr + "/api/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection served after one was closed: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestHostAndOrigin: on a loopback bind, a foreign Host (DNS rebinding) and
// a foreign Origin are refused with 403, the server's own names and local
// pages are served, a text/plain, multipart or form POST (what a page may
// send without a preflight) is refused with 415 (curl's form type without an
// Origin header excepted), and the configuration allows more.
func TestHostAndOrigin(t *testing.T) {
	_, addr := serveLoopback(t, Config{})
	_, port, _ := net.SplitHostPort(addr)
	show := `{"model":"tiny"}`
	jsonCT := map[string]string{"Content-Type": "application/json"}
	for _, tc := range []struct {
		name    string
		method  string
		body    string
		headers map[string]string
		want    int
	}{
		{"own address", "POST", show, jsonCT, 200},
		{"localhost", "GET", "", map[string]string{"Host": "localhost:" + port}, 200},
		{"a private address", "GET", "", map[string]string{"Host": "192.168.1.20:" + port}, 200},
		{"a .localhost name", "GET", "", map[string]string{"Host": "app.localhost"}, 200},
		{"DNS rebinding", "POST", show, map[string]string{"Host": "evil.example", "Content-Type": "application/json"}, 403},
		{"DNS rebinding with a port", "GET", "", map[string]string{"Host": "evil.example:" + port}, 403},
		{"local page", "POST", show, map[string]string{"Origin": "http://localhost:3000", "Content-Type": "application/json"}, 200},
		{"editor page", "GET", "", map[string]string{"Origin": "vscode-webview://abc"}, 200},
		{"foreign page", "POST", show, map[string]string{"Origin": "https://evil.example", "Content-Type": "application/json"}, 403},
		{"foreign page, GET", "GET", "", map[string]string{"Origin": "http://evil.example"}, 403},
		{"text/plain POST", "POST", show, map[string]string{"Content-Type": "text/plain"}, 415},
		{"form POST from a page", "POST", show, map[string]string{"Origin": "http://localhost:3000", "Content-Type": "application/x-www-form-urlencoded"}, 415},
		{"multipart POST", "POST", show, map[string]string{"Content-Type": "multipart/form-data; boundary=x"}, 415},
		{"curl -d (form type, no Origin)", "POST", show, map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 200},
		{"JSON with a charset", "POST", show, map[string]string{"Content-Type": "application/json; charset=utf-8"}, 200},
		{"no content type", "POST", show, nil, 200},
		{"preflight from a local page", "OPTIONS", "", map[string]string{"Origin": "http://127.0.0.1:5173", "Access-Control-Request-Method": "POST"}, 204},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := "/api/health"
			if tc.method != "GET" {
				path = "/api/show"
			}
			resp, body := send(t, addr, tc.method, path, tc.body, tc.headers)
			if resp.StatusCode != tc.want {
				t.Fatalf("%d %s, want %d", resp.StatusCode, body, tc.want)
			}
			if o := tc.headers["Origin"]; o != "" && tc.want < 400 && resp.Header.Get("Access-Control-Allow-Origin") != o {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", resp.Header.Get("Access-Control-Allow-Origin"), o)
			}
			if tc.want >= 400 {
				var e api.ErrorResponse
				if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" || e.RequestID == "" {
					t.Errorf("refusal body %s", body)
				}
			}
		})
	}

	// the configuration allows more
	_, addr2 := serveLoopback(t, Config{AllowedOrigins: []string{"https://*.example"}, AllowedHosts: []string{"evil.example"}})
	if resp, body := send(t, addr2, "GET", "/api/health", "", map[string]string{"Host": "evil.example", "Origin": "https://evil.example"}); resp.StatusCode != 200 {
		t.Errorf("allowed host and origin: %d %s", resp.StatusCode, body)
	}
	if resp, body := send(t, addr2, "GET", "/api/health", "", map[string]string{"Origin": "https://evil.other"}); resp.StatusCode != 403 {
		t.Errorf("an origin the pattern does not match: %d %s", resp.StatusCode, body)
	}
}

// TestShowHidesLocalPaths: /api/show gives the base names of the model's
// directory and of the library, unless DisclosePaths.
func TestShowHidesLocalPaths(t *testing.T) {
	for _, disclose := range []bool{false, true} {
		ts := newTestServer(t, Config{DisclosePaths: disclose})
		_, body := ts.do(t, "POST", "/api/show", api.ShowRequest{})
		var out struct {
			ModelInfo sdk.Info `json:"model_info"`
		}
		if err := json.Unmarshal(body, &out); err != nil {
			t.Fatal(err)
		}
		info := ts.models[0].Model.Info()
		hidden := !strings.Contains(string(body), info.Dir) && !strings.Contains(string(body), info.LibraryPath)
		if hidden == disclose || out.ModelInfo.Dir == "" || out.ModelInfo.LibraryPath == "" {
			t.Errorf("DisclosePaths %v: dir %q, library %q (the paths are %s and %s)", disclose,
				out.ModelInfo.Dir, out.ModelInfo.LibraryPath, info.Dir, info.LibraryPath)
		}
	}
}

// TestNullBody: a body of null is not a request (it used to be read as {}).
func TestNullBody(t *testing.T) {
	ts := newTestServer(t, Config{})
	for _, body := range []string{"null", " null ", "[]", `"x"`, "1"} {
		resp, out := ts.do(t, "POST", "/api/show", body)
		if resp.StatusCode != 400 || !strings.Contains(string(out), "JSON object") {
			t.Errorf("%q: %d %s", body, resp.StatusCode, out)
		}
	}
	if resp, out := ts.do(t, "POST", "/api/show", `{} {}`); resp.StatusCode != 400 || !strings.Contains(string(out), "after the JSON object") {
		t.Errorf("trailing data: %d %s", resp.StatusCode, out)
	}
}

// TestMemoryBudget runs requests against a small server-wide memory budget
// (1.5 times what one request of 2 rows needs): a second such request while
// one runs waits in the queue (refused with 429 when the queue is full),
// one that alone needs more than the budget is refused with 503, and the
// estimate of what runs never passes the budget.
func TestMemoryBudget(t *testing.T) {
	m, err := sdk.Open(tinyAbsorb, sdk.WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	need := m.RequestMemory(2, 0)
	m.Close()
	ts := newTestServer(t, Config{MemoryBudget: need * 3 / 2, MaxQueue: 1, MaxSteps: 1 << 24})
	if ts.cfg.MemoryBudget != need*3/2 {
		t.Fatalf("budget %d", ts.cfg.MemoryBudget)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	resp, _ := ts.stream(t, ctx, api.GenerateRequest{Options: api.Options{Steps: 1000000, Batch: 2}})
	defer resp.Body.Close()
	waitFor(t, "the first request to run", func() bool { return ts.memory.inUse() == need })

	// alone past the budget
	r, body := ts.do(t, "POST", "/api/generate", api.GenerateRequest{Stream: ptr(false), Options: api.Options{Steps: 2, Batch: 4}})
	if r.StatusCode != 503 || !strings.Contains(string(body), "budget") {
		t.Errorf("a request over the budget: %d %s", r.StatusCode, body)
	}
	checkResponse(t, "POST", "/api/generate", r, body)

	second := api.GenerateRequest{Stream: ptr(false), Options: api.Options{Steps: 2, Batch: 2}}
	done := make(chan int, 1)
	go func() {
		r, _ := ts.do(t, "POST", "/api/generate", second)
		done <- r.StatusCode
	}()
	waitFor(t, "the second request to queue", func() bool { return ts.queued.Load() == 1 })
	time.Sleep(200 * time.Millisecond)
	if used := ts.memory.inUse(); used != need {
		t.Errorf("memory in use %d while the second waits, want %d", used, need)
	}
	// a third finds the queue full
	if r, body := ts.do(t, "POST", "/api/generate", second); r.StatusCode != 429 || !strings.Contains(string(body), "memory budget") {
		t.Errorf("a third request: %d %s", r.StatusCode, body)
	}
	cancel() // the first leaves; the second runs
	if code := <-done; code != 200 {
		t.Errorf("the queued request: %d", code)
	}
	waitFor(t, "the memory to be given back", func() bool { return ts.memory.inUse() == 0 })
}
