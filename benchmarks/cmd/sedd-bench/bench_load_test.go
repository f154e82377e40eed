package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// TestLoad runs a small load test of both modes against a freshly built
// sedd serve on the tiny fixture, and checks what it reports.
func TestLoad(t *testing.T) {
	needORT(t)
	bin := filepath.Join(t.TempDir(), "sedd")
	build := exec.Command("go", "build", "-o", bin, "./cmd/sedd")
	build.Dir = "../../.." // the SDK's module
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "load.jsonl")
	// The model goes after --, unsplit: the clone's path may hold a space.
	r := sedd(t, "load", "--sedd", bin, "--server-args", "--threads 1 --max-batch 4",
		"--clients", "6", "--requests", "12", "--steps", "3", "--modes", "on,off", "--out", out,
		"--", "--model", tinyAbsorb).OK(t)
	if !strings.Contains(r.Stdout, "throughput with batching / without") || !strings.Contains(r.Stdout, "of 4") {
		t.Fatalf("output:\n%s", r.Stdout)
	}
	lines := strings.Split(strings.TrimSpace(string(readFile(t, out))), "\n")
	if len(lines) != 2 {
		t.Fatalf("%d JSON lines", len(lines))
	}
	for i, l := range lines {
		var row loadRow
		if err := json.Unmarshal([]byte(l), &row); err != nil {
			t.Fatal(err)
		}
		// 12 requests of 3 steps and the denoiser: 48 score calls.
		if row.Batching != (i == 0) || row.Requests != 12 || row.Failed != 0 || row.Calls != 48 || row.RSSMaxMiB <= 0 || !(row.P99S >= row.P50S) ||
			row.CPUS <= 0 || row.SamplesPerCPUS <= 0 {
			t.Errorf("row %d: %+v", i, row)
		}
		if row.Batching && (row.MaxRows != 4 || row.Passes >= row.Calls || row.MeanFill <= 0 || row.MeanFill > 1) {
			t.Errorf("batched row: %+v", row)
		}
		if !row.Batching && (row.MaxRows != 0 || row.Passes != row.Calls) {
			t.Errorf("unbatched row: %+v", row)
		}
	}
	if r := sedd(t, "load", "--modes", "sideways"); r.Code != exitUsage {
		t.Errorf("--modes sideways: exit %d", r.Code)
	}
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestSplitWords(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"  --threads 2\t--max-batch  16 ", []string{"--threads", "2", "--max-batch", "16"}},
		{`--model '/a dir/m' --x`, []string{"--model", "/a dir/m", "--x"}},
		{`--model "/a \"b\" dir"`, []string{"--model", `/a "b" dir`}},
		{`--model /a\ dir`, []string{"--model", "/a dir"}},
		{`a''b ""`, []string{"ab", ""}},
	} {
		got, err := splitWords(c.in)
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("splitWords(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, bad := range []string{`'open`, `"open`, `end\`} {
		if _, err := splitWords(bad); err == nil {
			t.Errorf("splitWords(%q): no error", bad)
		}
	}
}
