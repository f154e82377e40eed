package sdk

import (
	"encoding/json"

	"github.com/sedd-go/sedd/internal/jsonobj"
)

// boundJSON is Bound as JSON: its floats may be infinite (a network whose
// scores are all zero, a window with too few draws for a standard error), so
// they are written by the project's rule for non-finite numbers: "+Inf",
// "-Inf" and "NaN" as JSON strings, every finite value as a number.
type boundJSON struct {
	Tokens         int           `json:"tokens"`
	Timesteps      int           `json:"timesteps"`
	Nats           jsonobj.Float `json:"nats"`
	NatsStdErr     jsonobj.Float `json:"nats_stderr"`
	NatsPerToken   jsonobj.Float `json:"nats_per_token"`
	StdErr         jsonobj.Float `json:"stderr"`
	Perplexity     jsonobj.Float `json:"perplexity"`
	PerplexityLow  jsonobj.Float `json:"perplexity_low"`
	PerplexityHigh jsonobj.Float `json:"perplexity_high"`
}

// MarshalJSON writes the bound as a JSON object whose non-finite numbers are
// the strings "+Inf", "-Inf" or "NaN". A type that embeds Bound inherits this
// method and with it writes only the bound: give it its own MarshalJSON, as
// EvaluateResult has.
func (b Bound) MarshalJSON() ([]byte, error) {
	type f = jsonobj.Float
	return json.Marshal(boundJSON{Tokens: b.Tokens, Timesteps: b.Timesteps, Nats: f(b.Nats), NatsStdErr: f(b.NatsStdErr),
		NatsPerToken: f(b.NatsPerToken), StdErr: f(b.StdErr), Perplexity: f(b.Perplexity),
		PerplexityLow: f(b.PerplexityLow), PerplexityHigh: f(b.PerplexityHigh)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (b *Bound) UnmarshalJSON(data []byte) error {
	var j boundJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	*b = Bound{Tokens: j.Tokens, Timesteps: j.Timesteps, Nats: float64(j.Nats), NatsStdErr: float64(j.NatsStdErr),
		NatsPerToken: float64(j.NatsPerToken), StdErr: float64(j.StdErr), Perplexity: float64(j.Perplexity),
		PerplexityLow: float64(j.PerplexityLow), PerplexityHigh: float64(j.PerplexityHigh)}
	return nil
}

// MarshalJSON writes the bound's fields and "windows".
func (r EvaluateResult) MarshalJSON() ([]byte, error) {
	b, err := r.Bound.MarshalJSON()
	if err != nil {
		return nil, err
	}
	w, err := json.Marshal(struct {
		Windows []Bound `json:"windows"`
	}{r.Windows})
	if err != nil {
		return nil, err
	}
	return jsonobj.Join(b, w)
}

// UnmarshalJSON reads what MarshalJSON writes.
func (r *EvaluateResult) UnmarshalJSON(data []byte) error {
	var w struct {
		Windows []Bound `json:"windows"`
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	if err := r.Bound.UnmarshalJSON(data); err != nil {
		return err
	}
	r.Windows = w.Windows
	return nil
}
