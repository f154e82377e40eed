package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sedd-go/sedd/sdk"
)

func TestRecordQualityKeepsTheManifest(t *testing.T) {
	dir := t.TempDir()
	orig := `{
  "format": 1,
  "name": "m",
  "variants": [
    {"name": "fp32-opt", "precision": "fp32", "file": "model.opt.onnx"},
    {"name": "int8", "precision": "int8", "file": "model.int8.onnx", "quality": {"within_limits": false}}
  ],
  "exporter": {"torch": "2.15"}
}
`
	path := filepath.Join(dir, "sedd.json")
	if err := os.WriteFile(path, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	rep := &qualityReport{WithinLimits: true, Limits: limitsWords, Summary: "bound +0.04%"}
	if err := recordQuality(dir, "int8", rep); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(path)
	s := string(raw)
	if i, j, k := strings.Index(s, `"format"`), strings.Index(s, `"variants"`), strings.Index(s, `"exporter"`); !(i < j && j < k) {
		t.Errorf("key order changed:\n%s", s)
	}
	var doc struct {
		Variants []struct {
			Name    string `json:"name"`
			Quality *struct {
				WithinLimits bool            `json:"within_limits"`
				Summary      string          `json:"summary"`
				Detail       json.RawMessage `json:"detail"`
			} `json:"quality"`
		} `json:"variants"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Variants[0].Quality != nil || doc.Variants[1].Quality == nil || !doc.Variants[1].Quality.WithinLimits ||
		doc.Variants[1].Quality.Summary != "bound +0.04%" || len(doc.Variants[1].Quality.Detail) == 0 {
		t.Errorf("recorded: %s", raw)
	}
	if err := recordQuality(dir, "fp16", rep); err == nil || !strings.Contains(err.Error(), `no variant "fp16"`) {
		t.Errorf("unknown variant: %v", err)
	}
}

func TestPairedStdErr(t *testing.T) {
	a := []sdk.Bound{{NatsPerToken: 5}, {NatsPerToken: 6}, {NatsPerToken: 7}}
	b := []sdk.Bound{{NatsPerToken: 5.1}, {NatsPerToken: 6.1}, {NatsPerToken: 7.1}}
	if got := pairedStdErr(a, b); got > 1e-12 {
		t.Errorf("a constant difference has standard error %g, want 0", got)
	}
	b[2].NatsPerToken = 7.4
	// differences 0.1, 0.1, 0.4: sd 0.1732, over √3
	if got, want := pairedStdErr(a, b), 0.17320508/math.Sqrt(3); math.Abs(got-want) > 1e-6 {
		t.Errorf("pairedStdErr = %g, want %g", got, want)
	}
}
