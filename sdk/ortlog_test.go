package sdk_test

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/sedd-go/sedd/sdk"
)

// TestRuntimeErrorsStayOffStderr runs a forward pass that fails inside ONNX
// Runtime (a graph that reshapes its output to one token, through a shape ONNX
// Runtime cannot know before it runs) in a
// child process and reads the child's stderr: ONNX Runtime must not write
// its own log there (it used to print a red "[E:onnxruntime:, ...
// sequential_executor.cc ...]" block); its message reaches the caller as the
// error, which the child prints.
func TestRuntimeErrorsStayOffStderr(t *testing.T) {
	if dir := os.Getenv("SEDD_ORTLOG_CHILD"); dir != "" {
		m, err := sdk.Open(dir, sdk.WithThreads(1))
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		_, err = m.Sample(context.Background(), sdk.SampleRequest{Steps: 2, Batch: 2, Seed: 1})
		if err == nil {
			t.Fatal("a forward pass of a graph whose shape lies succeeded")
		}
		os.Stdout.WriteString("CHILD-ERROR: " + err.Error() + "\n")
		return
	}
	dir := fixtureCopy(t, hAbsorb)
	setModel(t, dir, scoreGraph{n: 257, lyingShape: true}.encode())
	cmd := exec.Command(os.Args[0], "-test.run", "^TestRuntimeErrorsStayOffStderr$", "-test.count=1")
	cmd.Env = append(os.Environ(), "SEDD_ORTLOG_CHILD="+dir)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("child: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if !strings.Contains(stdout.String(), "CHILD-ERROR: ") || !strings.Contains(stdout.String(), "Reshape") {
		t.Errorf("the caller's error does not carry ONNX Runtime's message:\n%s", stdout.String())
	}
	if s := stderr.String(); s != "" {
		t.Errorf("ONNX Runtime wrote to stderr:\n%s", s)
	}
}
