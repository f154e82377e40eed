package compat

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sync"
	"testing"
	"time"

	"github.com/sedd-go/sedd/internal/testlib"
)

// bin is `sedd`, built from this checkout for the tests; cache its cache
// directory.
var bin, cache string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sedd-compat-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin, cache = filepath.Join(dir, "sedd"), filepath.Join(dir, "cache")
	build := exec.Command("go", "build", "-o", bin, "./cmd/sedd")
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building sedd:", err)
		os.Exit(1)
	}
	code := m.Run()
	if srv.cmd != nil {
		srv.cmd.Process.Kill()
		srv.cmd.Wait()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is the environment of the subprocesses: ONNX Runtime's library, a
// private cache directory and the built-in model.
func env(t *testing.T) []string {
	lib := testlib.Path()
	if lib == "" {
		t.Skip("no ONNX Runtime library: run scripts/install-onnxruntime.sh")
	}
	var out []string
	for _, kv := range os.Environ() {
		if !regexp.MustCompile(`^(SEDD_MODEL|SEDD_CACHE_DIR|XDG_CACHE_HOME|` + testlib.EnvLibraryPath + `)=`).MatchString(kv) {
			out = append(out, kv)
		}
	}
	return append(out, "XDG_CACHE_HOME="+cache, testlib.EnvLibraryPath+"="+lib)
}

// serveProcess is a running `sedd serve`.
type serveProcess struct {
	once sync.Once
	cmd  *exec.Cmd
	addr string
	err  error
}

// srv is the `sedd serve` the tests share, started by the first.
var srv serveProcess

// server returns the running `sedd serve` of the built-in model, on a free
// port of 127.0.0.1.
func server(t *testing.T) *serveProcess {
	t.Helper()
	e := env(t)
	srv.once.Do(func() {
		cmd := exec.Command(bin, "serve", "--addr", "127.0.0.1:0", "--threads", "2", "--log-format", "json")
		cmd.Env = e
		pipe, err := cmd.StderrPipe()
		if err != nil {
			srv.err = err
			return
		}
		if srv.err = cmd.Start(); srv.err != nil {
			return
		}
		srv.cmd = cmd
		addr := make(chan string, 1)
		re := regexp.MustCompile(`"msg":"listening","addr":"([^"]+)"`)
		go func() {
			sc := bufio.NewScanner(pipe)
			for sc.Scan() {
				if m := re.FindStringSubmatch(sc.Text()); m != nil {
					addr <- m[1]
				}
			}
		}()
		select {
		case srv.addr = <-addr:
		case <-time.After(60 * time.Second):
			srv.err = fmt.Errorf("sedd serve did not listen within 60 s")
		}
	})
	if srv.err != nil {
		t.Fatal(srv.err)
	}
	return &srv
}

// sampled is a line of `sedd sample --json`.
type sampled struct {
	Text   string  `json:"text"`
	Tokens []int64 `json:"tokens"`
}

// sample runs `sedd sample --json --threads 2 args...`.
func sample(t *testing.T, args ...string) sampled {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"sample", "--json", "--threads", "2"}, args...)...)
	cmd.Env = env(t)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("sedd sample %q: %v", args, err)
	}
	var s sampled
	if err := json.Unmarshal(out, &s); err != nil {
		t.Fatalf("sedd sample: %v: %s", err, out)
	}
	return s
}
