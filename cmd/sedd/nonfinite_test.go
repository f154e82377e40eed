package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sedd-go/sedd/internal/cmdtest"
)

// TestEvalJSONInfiniteBound: eval --json on a network whose perplexity bound
// is +Inf used to fail with "json: unsupported value: +Inf" (exit 1); the
// bound is written as the string "+Inf", the text output as "≤ +Inf".
func TestEvalJSONInfiniteBound(t *testing.T) {
	needORT(t)
	model := cmdtest.Abs("../../sdk/testdata/tiny-absorb-infinite")
	data := filepath.Join(t.TempDir(), "text.txt")
	if err := os.WriteFile(data, []byte("a few words of text\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := sedd(t, "eval", "--model", model, "--data", data, "--timesteps", "4", "--json")
	if r.Code != 0 {
		t.Fatalf("exit %d, stderr %q", r.Code, r.Stderr)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(r.Stdout), &out); err != nil {
		t.Fatalf("%v: %s", err, r.Stdout)
	}
	if out["perplexity"] != "+Inf" || out["model"] == nil || out["sequences"] == nil {
		t.Errorf("perplexity %#v (want \"+Inf\"), model %#v, sequences %#v", out["perplexity"], out["model"], out["sequences"])
	}
	if _, ok := out["nats_per_token"].(float64); !ok {
		t.Errorf("nats_per_token %#v, want a finite number", out["nats_per_token"])
	}
	r = sedd(t, "eval", "--model", model, "--data", data, "--timesteps", "4")
	if r.Code != 0 || !strings.Contains(r.Stdout, "≤ +Inf") {
		t.Errorf("text output: exit %d, %q", r.Code, r.Stdout)
	}
}
