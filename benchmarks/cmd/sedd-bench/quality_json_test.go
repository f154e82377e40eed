package main

import (
	"encoding/json"
	"github.com/sedd-go/sedd/internal/jsonobj"
	"math"
	"strings"
	"testing"
)

// TestQualityReportNonFiniteJSON: a report whose bound is infinite (a graph
// past 709 nats per token) is written by the project's rule for non-finite
// numbers instead of failing (the error used to be dropped, leaving an empty
// report).
func TestQualityReportNonFiniteJSON(t *testing.T) {
	var rep qualityReport
	rep.Bound.Baseline.Perplexity = 12.5
	rep.Bound.Variant.Perplexity = jsonobj.Float(math.Inf(1))
	rep.Bound.Variant.NatsPerToken = 1000
	rep.Bound.RelDiff = rep.Bound.Variant.NatsPerToken/rep.Bound.Baseline.NatsPerToken - 1   // 1000/0: +Inf
	rep.Bound.DiffStdErr = rep.Bound.Baseline.NatsPerToken / rep.Bound.Baseline.NatsPerToken // 0/0: NaN
	raw, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"perplexity":12.5`, `"perplexity":"+Inf"`, `"rel_diff":"+Inf"`, `"diff_stderr":"NaN"`} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("%s lacks %s", raw, want)
		}
	}
	var back qualityReport
	if err := json.Unmarshal(raw, &back); err != nil || !math.IsInf(float64(back.Bound.Variant.Perplexity), 1) {
		t.Errorf("read back %+v, %v", back.Bound, err)
	}
}
