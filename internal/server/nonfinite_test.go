package server

import (
	"encoding/json"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/sedd-go/sedd/api"
	"github.com/sedd-go/sedd/sdk"
)

// TestEvaluateInfiniteBound: POST /api/evaluate on a network whose
// perplexity bound is +Inf used to answer 500 with an empty request_id; it
// answers 200 with "+Inf" as a string (the project's rule for non-finite
// numbers), and the rest of the response intact.
func TestEvaluateInfiniteBound(t *testing.T) {
	m, err := sdk.Open("../../sdk/testdata/tiny-absorb-infinite", sdk.WithThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	s, err := New([]Model{{Name: "inf", Model: m}}, Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s.Handler())
	defer hs.Close()
	ts := &testServer{Server: s, url: hs.URL}
	resp, body := ts.do(t, "POST", "/api/evaluate", api.EvaluateRequest{Text: "a few words of text", Options: api.EvaluateOptions{Timesteps: 4}})
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, body)
	}
	var out map[string]any
	if err := json.Unmarshal(body, &out); err != nil {
		t.Fatal(err)
	}
	if out["perplexity"] != "+Inf" || out["model"] != "inf" || out["windows"] == nil || out["total_duration"] == nil {
		t.Errorf("answer %s", body)
	}
	checkResponse(t, "POST", "/api/evaluate", resp, body)
}

// TestUnencodableAnswerKeepsRequestID: an answer that cannot be encoded is a
// 500 that still carries the request id.
func TestUnencodableAnswerKeepsRequestID(t *testing.T) {
	w := httptest.NewRecorder()
	w.Header().Set("X-Request-Id", "abc123")
	writeJSON(w, http.StatusOK, map[string]float64{"x": math.Inf(1)})
	var e api.ErrorResponse
	if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || w.Code != 500 || e.RequestID != "abc123" {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
}
