package api

import (
	"encoding/json"

	"github.com/sedd-go/sedd/internal/jsonobj"
	"github.com/sedd-go/sedd/sdk"
)

// MarshalJSON writes the response with the bound's fields among its own:
// the embedded sdk.Bound would otherwise lend its MarshalJSON (non-finite
// numbers as the strings "+Inf", "-Inf", "NaN") to the whole object and
// leave the rest out.
func (r EvaluateResponse) MarshalJSON() ([]byte, error) {
	head, err := json.Marshal(struct {
		Model     string `json:"model"`
		CreatedAt string `json:"created_at"`
	}{r.Model, r.CreatedAt})
	if err != nil {
		return nil, err
	}
	bound, err := r.Bound.MarshalJSON()
	if err != nil {
		return nil, err
	}
	tail, err := json.Marshal(struct {
		Windows       []sdk.Bound `json:"windows"`
		TotalDuration int64       `json:"total_duration"`
	}{r.Windows, r.TotalDuration})
	if err != nil {
		return nil, err
	}
	return jsonobj.Join(head, bound, tail)
}

// UnmarshalJSON reads what MarshalJSON writes (the embedded sdk.Bound's
// UnmarshalJSON would otherwise read the bound alone).
func (r *EvaluateResponse) UnmarshalJSON(data []byte) error {
	var rest struct {
		Model         string      `json:"model"`
		CreatedAt     string      `json:"created_at"`
		Windows       []sdk.Bound `json:"windows"`
		TotalDuration int64       `json:"total_duration"`
	}
	if err := json.Unmarshal(data, &rest); err != nil {
		return err
	}
	if err := r.Bound.UnmarshalJSON(data); err != nil {
		return err
	}
	r.Model, r.CreatedAt, r.Windows, r.TotalDuration = rest.Model, rest.CreatedAt, rest.Windows, rest.TotalDuration
	return nil
}
