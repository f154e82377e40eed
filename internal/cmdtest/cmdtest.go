// Package cmdtest drives the project's commands in their tests the way a user
// would: it builds the command once (under the race detector when the tests
// run under it) and runs it as a subprocess from a fresh directory outside
// the repository, with a private cache directory and no SEDD_MODEL.
package cmdtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/sedd-go/sedd/internal/testlib"
)

// EnvLibraryPath is the variable naming ONNX Runtime's shared library.
const EnvLibraryPath = testlib.EnvLibraryPath

// Command is a built command.
type Command struct {
	// Binary is the built executable; ORTLib the ONNX Runtime library the
	// subprocesses get, "" if none was found.
	Binary, ORTLib string
	dir            string
}

// Build builds the main package in the working directory into a temporary
// directory, as name. Close removes it.
func Build(name string) (*Command, error) {
	dir, err := os.MkdirTemp("", name+"-test-")
	if err != nil {
		return nil, err
	}
	c := &Command{Binary: filepath.Join(dir, name), dir: dir, ORTLib: testlib.Path()}
	args := []string{"build", "-o", c.Binary}
	if raceEnabled {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("building %s: %w", name, err)
	}
	return c, nil
}

// Main is TestMain for a command's tests: it builds the command in the
// working directory as name into *c, runs the tests and removes the binary.
func Main(m *testing.M, name string, c **Command) {
	built, err := Build(name)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	*c = built
	code := m.Run()
	built.Close()
	os.Exit(code)
}

// Close removes the built binary.
func (c *Command) Close() { os.RemoveAll(c.dir) }

// NeedORT skips a test that runs a model when no ONNX Runtime library exists.
func (c *Command) NeedORT(t *testing.T) {
	t.Helper()
	if c.ORTLib == "" {
		t.Skip("no ONNX Runtime library: run scripts/install-onnxruntime.sh")
	}
}

// Result is the outcome of one run.
type Result struct {
	Stdout, Stderr string
	Code           int
}

// Run runs the command with args and a 60 s limit; a run that crashes with a
// Go panic or a signal fails the test.
func (c *Command) Run(t *testing.T, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.Binary, args...)
	cmd.Dir = t.TempDir()
	cmd.Env = c.Env(t)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := Result{Stdout: stdout.String(), Stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.Code = exit.ExitCode()
		if r.Code < 0 {
			t.Fatalf("%s %s died of %v:\n%s", filepath.Base(c.Binary), clip(args), exit, r.Stderr)
		}
	default:
		t.Fatalf("%s %s: %v", filepath.Base(c.Binary), clip(args), err)
	}
	if strings.Contains(r.Stderr, "goroutine ") || strings.Contains(r.Stderr, "panic:") {
		t.Fatalf("%s %s crashed:\n%s", filepath.Base(c.Binary), clip(args), r.Stderr)
	}
	return r
}

// Env is the environment of a run: this process's without SEDD_MODEL,
// SEDD_CACHE_DIR, XDG_CACHE_HOME and the library variable, then a private
// cache directory and the library found at Build.
func (c *Command) Env(t *testing.T) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "SEDD_MODEL=") && !strings.HasPrefix(kv, "XDG_CACHE_HOME=") &&
			!strings.HasPrefix(kv, "SEDD_CACHE_DIR=") && !strings.HasPrefix(kv, EnvLibraryPath+"=") {
			env = append(env, kv)
		}
	}
	env = append(env, "XDG_CACHE_HOME="+t.TempDir())
	if c.ORTLib != "" {
		env = append(env, EnvLibraryPath+"="+c.ORTLib)
	}
	return env
}

// OK fails the test unless r succeeded.
func (r Result) OK(t *testing.T) Result {
	t.Helper()
	if r.Code != 0 {
		t.Fatalf("exit %d, stderr:\n%s", r.Code, r.Stderr)
	}
	return r
}

// Abs returns the absolute form of a path relative to the test's package.
func Abs(p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		panic(err)
	}
	return a
}

// clip shortens an argument list for a message.
func clip(args []string) string {
	s := strings.Join(args, " ")
	if len(s) > 200 {
		s = s[:200] + fmt.Sprintf("… (%d bytes)", len(s))
	}
	return s
}
