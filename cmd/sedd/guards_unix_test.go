//go:build unix

package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestEvalDataGuards gives eval --data what is not a text file: a FIFO (it
// used to block forever and ignore Ctrl-C), /dev/zero (3 GB of memory in 3
// s), a file over the size cap, each refused at once with a usage error.
func TestEvalDataGuards(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Skip("cannot make a FIFO here:", err)
	}
	huge := filepath.Join(dir, "huge.txt")
	if err := os.WriteFile(huge, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(huge, maxDataFile+1); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, path, want string }{
		{"FIFO", fifo, "not a regular file"},
		{"device", "/dev/zero", "not a regular file"},
		{"directory", dir, "not a regular file"},
		{"over the cap", huge, "256 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			r := sedd(t, "eval", "--model", tinyAbsorb, "--data", tc.path)
			if r.Code != exitUsage || !strings.Contains(r.Stderr, "--data") || !strings.Contains(r.Stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit %d naming --data and %q", r.Code, r.Stderr, exitUsage, tc.want)
			}
			if d := time.Since(start); d > 10*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

// TestEvalInterruptedWhileReading sends Ctrl-C (SIGINT) to eval --data -
// while it waits for standard input that never comes (a pipe kept open), and
// while it waits on a FIFO given as standard input: it must exit at once
// with status 130.
func TestEvalInterruptedWhileReading(t *testing.T) {
	for _, fromFIFO := range []bool{false, true} {
		name := "pipe"
		if fromFIFO {
			name = "fifo"
		}
		t.Run(name, func(t *testing.T) {
			cmd := exec.Command(command.Binary, "eval", "--model", tinyAbsorb, "--data", "-")
			cmd.Dir = t.TempDir()
			cmd.Env = childEnv(t)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if fromFIFO {
				fifo := filepath.Join(t.TempDir(), "fifo")
				if err := syscall.Mkfifo(fifo, 0o600); err != nil {
					t.Skip("cannot make a FIFO here:", err)
				}
				// open both ends without waiting: the child reads a FIFO
				// whose writer never writes
				rd, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer rd.Close()
				wr, err := os.OpenFile(fifo, os.O_WRONLY, 0)
				if err != nil {
					t.Fatal(err)
				}
				defer wr.Close()
				if err := syscall.SetNonblock(int(rd.Fd()), false); err != nil {
					t.Fatal(err)
				}
				cmd.Stdin = rd
			} else {
				w, err := cmd.StdinPipe()
				if err != nil {
					t.Fatal(err)
				}
				defer w.Close()
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			waitReadingStdin(t, cmd.Process.Pid)
			if err := cmd.Process.Signal(os.Interrupt); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- cmd.Wait() }()
			var err error
			select {
			case err = <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				t.Fatal("eval did not stop within 10 s of SIGINT while reading standard input")
			}
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != exitInterrupted {
				t.Fatalf("exit %v, want status %d; stderr %q", err, exitInterrupted, stderr.String())
			}
		})
	}
}

// TestCacheEntryReplacedByFIFO replaces the cached optimized graph and its
// weights with FIFOs, as the reproduction did: sedd used to block
// forever opening one (and ignore Ctrl-C); it rebuilds the entry and samples.
func TestCacheEntryReplacedByFIFO(t *testing.T) {
	needORT(t)
	for _, name := range []string{"graph.onnx", "graph.onnx.data"} {
		t.Run(name, func(t *testing.T) {
			cache := t.TempDir()
			args := []string{"sample", "--model", tinyAbsorb, "--cache-dir", cache, "--steps", "4", "--seed", "1"}
			first := sedd(t, args...).OK(t)
			entries, _ := filepath.Glob(filepath.Join(cache, "*", name))
			if len(entries) != 1 {
				t.Fatalf("cache entries' %s: %q", name, entries)
			}
			os.Remove(entries[0])
			if err := syscall.Mkfifo(entries[0], 0o600); err != nil {
				t.Skip("cannot make a FIFO here:", err)
			}
			start := time.Now()
			r := sedd(t, args...)
			if r.Code != 0 || r.Stdout != first.Stdout {
				t.Fatalf("exit %d after %v, stdout %q (want %q), stderr %q", r.Code, time.Since(start), r.Stdout, first.Stdout, r.Stderr)
			}
			if !strings.Contains(r.Stderr, "not a regular file") {
				t.Errorf("no warning that the entry was rebuilt: %q", r.Stderr)
			}
			if st, err := os.Lstat(entries[0]); err != nil || !st.Mode().IsRegular() {
				t.Errorf("the entry was not rebuilt: %v %v", st, err)
			}
		})
	}
}

// TestServeSurvivesTruncatedCache runs the issue's reproduction: `sedd serve
// --cache-dir`, one request, the cached weights truncated to 0 bytes (by
// another process or a disk cleaner), another request. The server mapped
// those weights and died of SIGBUS; it answers the second request with the
// same tokens.
func TestServeSurvivesTruncatedCache(t *testing.T) {
	cache := t.TempDir()
	sedd(t, "info", "--model", tinyAbsorb, "--cache-dir", cache).OK(t) // build the entry
	s := startServer(t, "--model", tinyAbsorb, "--cache-dir", cache, "--threads", "1")
	body := `{"stream":false,"options":{"steps":4,"seed":3}}`
	before := s.generate(t, body)
	data, _ := filepath.Glob(filepath.Join(cache, "*", "graph.onnx.data"))
	if len(data) != 1 {
		t.Fatalf("cached weights: %q", data)
	}
	if err := os.Truncate(data[0], 0); err != nil {
		t.Fatal(err)
	}
	after := s.generate(t, body)
	select {
	case err := <-s.exited:
		t.Fatalf("sedd serve died: %v\n%s", err, s.logs())
	default:
	}
	if len(before) == 0 || fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("tokens %v after the truncation, %v before", after, before)
	}
}

// waitReadingStdin waits until a thread of process pid is in read(0, ...)
// (Linux's /proc/PID/task/*/syscall), so that a signal sent next arrives
// while the command reads standard input, after it set up its handler.
// Where that cannot be seen it waits a second.
func waitReadingStdin(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/syscall", pid))
		if err != nil || len(tasks) == 0 {
			time.Sleep(time.Second)
			return
		}
		for _, task := range tasks {
			raw, err := os.ReadFile(task)
			if err != nil {
				continue
			}
			if f := strings.Fields(string(raw)); len(f) > 1 && f[0] == "0" && f[1] == "0x0" {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the command never read standard input")
}
