package main

// Tests of `sedd serve` as a subprocess on loopback: the same seed through
// the server, alone and among 16 other requests, gives the tokens of `sedd
// sample`; SIGTERM drains; bad flags are usage errors. The HTTP API itself
// is tested in internal/server.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// serverProcess is a running `sedd serve`.
type serverProcess struct {
	cmd    *exec.Cmd
	addr   string
	mu     sync.Mutex
	stderr bytes.Buffer
	exited chan error
}

// startServer runs `sedd serve --addr 127.0.0.1:0 args...` and waits for its
// "listening" log line. The process is killed when the test ends.
func startServer(t *testing.T, args ...string) *serverProcess {
	t.Helper()
	needORT(t)
	cmd := exec.Command(command.Binary, append([]string{"serve", "--addr", "127.0.0.1:0"}, args...)...)
	cmd.Dir = t.TempDir()
	cmd.Env = childEnv(t)
	pipe, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &serverProcess{cmd: cmd, exited: make(chan error, 1)}
	listening := make(chan string, 1)
	addrRE := regexp.MustCompile(`"msg":"listening","addr":"([^"]+)"`)
	go func() {
		br := bufio.NewReader(pipe)
		for {
			line, err := br.ReadString('\n')
			s.mu.Lock()
			s.stderr.WriteString(line)
			s.mu.Unlock()
			if m := addrRE.FindStringSubmatch(line); m != nil {
				listening <- m[1]
			}
			if err != nil {
				s.exited <- cmd.Wait()
				return
			}
		}
	}()
	t.Cleanup(func() { cmd.Process.Kill() })
	select {
	case s.addr = <-listening:
	case err := <-s.exited:
		t.Fatalf("sedd serve exited (%v):\n%s", err, s.logs())
	case <-time.After(60 * time.Second):
		t.Fatalf("sedd serve did not listen within 60 s:\n%s", s.logs())
	}
	return s
}

func (s *serverProcess) logs() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stderr.String()
}

// generate posts a request with stream false and returns the first sample's
// tokens.
func (s *serverProcess) generate(t *testing.T, body string) []int {
	t.Helper()
	resp, err := http.Post("http://"+s.addr+"/api/generate", "application/json", strings.NewReader(body))
	if err != nil {
		t.Error(err)
		return nil
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	var out struct {
		Samples []struct {
			Tokens []int `json:"tokens"`
		} `json:"samples"`
	}
	if err := json.Unmarshal(data, &out); err != nil || resp.StatusCode != 200 || len(out.Samples) == 0 {
		t.Errorf("%d %v: %s", resp.StatusCode, err, data)
		return nil
	}
	return out.Samples[0].Tokens
}

// metric reads one value from /metrics.
func (s *serverProcess) metric(t *testing.T, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + s.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	for l := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(l, name+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			if err != nil {
				t.Fatal(err)
			}
			return v
		}
	}
	t.Fatalf("no %s in /metrics", name)
	return 0
}

// TestServeSameTokensAsSample: a seeded request through the server gives the
// tokens of `sedd sample` with the same settings, alone and while 16 other
// requests share its forward passes.
func TestServeSameTokensAsSample(t *testing.T) {
	s := startServer(t, "--threads", "2", "--batching", "--max-wait", "20ms")
	r := sedd(t, "sample", "--json", "--seed", "7", "--steps", "16", "--prefix", "The jury", "--threads", "2").OK(t)
	var want sampleLine
	if err := json.Unmarshal([]byte(r.Stdout), &want); err != nil {
		t.Fatal(err)
	}
	req := `{"prompt":"The jury","stream":false,"options":{"steps":16,"seed":7}}`
	if got := s.generate(t, req); !slices.Equal(got, want.Tokens) {
		t.Fatalf("through the server alone:\n got %v\nwant %v (sedd sample)", got, want.Tokens)
	}
	passes := s.metric(t, `sedd_network_passes_total{model="brown-sedd-small"}`)
	calls := s.metric(t, `sedd_network_calls_total{model="brown-sedd-small"}`)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			other := fmt.Sprintf(`{"stream":false,"options":{"steps":%d,"seed":%d}}`, 12+i%8, 100+i)
			if i%2 == 1 {
				other = fmt.Sprintf(`{"prompt":"It was","options":{"steps":20,"seed":%d}}`, 100+i) // streamed
				resp, err := http.Post("http://"+s.addr+"/api/generate", "application/json", strings.NewReader(other))
				if err != nil {
					t.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return
			}
			s.generate(t, other)
		})
	}
	time.Sleep(200 * time.Millisecond) // the others are running
	got := s.generate(t, req)
	wg.Wait()
	if !slices.Equal(got, want.Tokens) {
		t.Fatalf("through the server among 16 other requests:\n got %v\nwant %v (sedd sample)", got, want.Tokens)
	}
	passes = s.metric(t, `sedd_network_passes_total{model="brown-sedd-small"}`) - passes
	calls = s.metric(t, `sedd_network_calls_total{model="brown-sedd-small"}`) - calls
	t.Logf("17 requests: %v score calls in %v forward passes", calls, passes)
	if calls <= passes {
		t.Fatalf("the requests did not share forward passes: %v calls in %v passes", calls, passes)
	}
}

// TestServeSIGTERMDrains: after SIGTERM the server takes no new connection,
// the stream in flight runs to its end, and the process exits 0.
func TestServeSIGTERMDrains(t *testing.T) {
	s := startServer(t, "--model", tinyAbsorb, "--batching", "--drain", "60s")
	resp, err := http.Post("http://"+s.addr+"/api/generate", "application/json",
		strings.NewReader(`{"options":{"steps":400,"seed":1}}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.addr, time.Second)
		if err != nil {
			break // refused: the listener is closed
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the server still accepts connections 10 s after SIGTERM")
		}
		time.Sleep(20 * time.Millisecond)
	}
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(rest)), "\n")
	var last struct {
		Done  bool `json:"done"`
		Steps int  `json:"steps"`
	}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &last); err != nil || !last.Done || last.Steps != 400 {
		t.Fatalf("the stream in flight did not finish: last line %q", lines[len(lines)-1])
	}
	select {
	case err := <-s.exited:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, s.logs())
		}
	case <-time.After(30 * time.Second):
		t.Fatal("sedd serve did not exit after draining")
	}
	if logs := s.logs(); !strings.Contains(logs, `"msg":"draining"`) || !strings.Contains(logs, `"msg":"drained"`) {
		t.Fatalf("logs:\n%s", logs)
	}
}

func TestServeUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"serve", "extra"}, "no arguments"},
		{[]string{"serve", "--log-format", "xml"}, "--log-format"},
		{[]string{"serve", "--max-batch", "0"}, "--max-batch must be ≥ 1"},
		{[]string{"serve", "--batching", "--max-wait", "1h", "--addr", "127.0.0.1:0"}, "max wait"},
		{[]string{"serve", "--model", tinyAbsorb, "--model", tinyAbsorb}, "two models are named"},
		{[]string{"serve", "--addr", "nonsense:address:x", "--model", tinyAbsorb}, "listen on"},
	} {
		r := sedd(t, tt.args...)
		wantCode := exitUsage
		if tt.want == "listen on" {
			wantCode = exitRuntime
		}
		if r.Code != wantCode || !strings.Contains(r.Stderr, tt.want) {
			t.Errorf("%q: exit %d, stderr %q; want %d with %q", tt.args, r.Code, r.Stderr, wantCode, tt.want)
		}
	}
}

// TestServeBatchingDefault: on the CPU the server runs each request's steps
// on their own unless --batching asks otherwise (see benchmarks/README.md).
func TestServeBatchingDefault(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		maxRows float64
	}{{nil, 0}, {[]string{"--batching", "--max-batch", "5"}, 5}} {
		s := startServer(t, append([]string{"--model", tinyAbsorb}, tt.args...)...)
		if got := s.metric(t, `sedd_batch_max_rows{model="tiny-absorb"}`); got != tt.maxRows {
			t.Errorf("%q: sedd_batch_max_rows %v, want %v", tt.args, got, tt.maxRows)
		}
		if want := fmt.Sprintf(`"batching":%v`, tt.maxRows > 0); !strings.Contains(s.logs(), want) {
			t.Errorf("%q: the listening line lacks %s:\n%s", tt.args, want, s.logs())
		}
	}
}
