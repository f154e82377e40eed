// Package api is the wire format of `sedd serve`, the types its server
// decodes and encodes, and a small Go client over them (Client).
//
// The server speaks two protocols over the same models: ollama's (/api/...),
// which it extends with SEDD's settings and answers, and OpenAI's
// (/v1/...). A setting has one name from end to end: the field of
// sdk.SampleRequest (TopK), the JSON key here (top_k, its words joined by
// "_") and the command line's flag (--top-k, joined by "-"); sdk.FieldError's
// JSONName and FlagName apply the rule. A value means the same in every
// layer: temperature 0 and top_p 0 are greedy (the most likely token), as
// in ollama and OpenAI, and a setting left out takes the SDK's default.
//
// Fields of ollama's or OpenAI's requests that have no meaning for a SEDD
// model (images, tools, format, keep_alive, penalties, ...) are not
// declared here: the server accepts and ignores them (it names them in the
// X-Sedd-Ignored header of its answer). The compatibility table in
// internal/server/README.md lists, per endpoint, what is honoured, ignored
// and refused.
package api

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/sedd-go/sedd/sdk"
)

// OllamaVersion is the version of ollama's API this one follows, which
// GET /api/version reports: clients compare it with the version they need.
const OllamaVersion = "0.17.4"

// Options are SEDD's sampling settings, each named as sdk.SampleRequest's
// field, and the ollama options that have a meaning here (NumPredict, Stop).
// A field left out takes the SDK's default.
type Options struct {
	// Steps is the number of sampling steps (0: the SDK's default).
	Steps int `json:"steps,omitempty"`
	// Sampler names the step rule (sdk.SampleRequest.Sampler); the SDK
	// checks the name.
	Sampler string `json:"sampler,omitempty"`
	// Seed makes the run reproducible; left out, the server draws one and
	// reports it.
	Seed *uint64 `json:"seed,omitempty"`
	// Batch is the number of samples (OpenAI's n).
	Batch int `json:"batch,omitempty"`
	// Length is the sequence length in tokens, prompt and suffix included
	// (0: the trained length, or what NumPredict asks for).
	Length int `json:"length,omitempty"`
	// Denoise (default true) runs the final denoising step.
	Denoise *bool `json:"denoise,omitempty"`
	// EndTime is the last diffusion time of the grid.
	EndTime float64 `json:"end_time,omitempty"`
	// Temperature, TopK and TopP reshape the token a mask unmasks to: left
	// out they change nothing; temperature 0 or top_p 0 is greedy.
	Temperature *float64 `json:"temperature,omitempty"`
	TopK        int      `json:"top_k,omitempty"`
	TopP        *float64 `json:"top_p,omitempty"`
	// Threshold and EntropyBudget are the knobs of the confidence and
	// entropy-bounded samplers (sdk.SampleRequest); left out or 0: the SDK's
	// default for that sampler.
	Threshold     float64 `json:"threshold,omitempty"`
	EntropyBudget float64 `json:"entropy_budget,omitempty"`
	// BlockOverlap samples a Length above the trained one in blocks.
	BlockOverlap int `json:"block_overlap,omitempty"`
	// NoCache turns off the reuse of network outputs on a
	// time-independent model (for measuring; same tokens).
	NoCache bool `json:"no_cache,omitempty"`
	// NumPredict is ollama's length of the answer: at most this many tokens
	// after the prompt. With a suffix, exactly this many tokens fill the
	// gap. Absent, 0 or negative: the rest of the model's length.
	NumPredict int `json:"num_predict,omitempty"`
	// Stop ends the answer before the first of these strings.
	Stop Stop `json:"stop,omitempty"`
}

// Stop is a list of stop strings; in JSON a list or, as OpenAI allows, one
// string.
type Stop []string

// UnmarshalJSON reads a string or a list of strings.
func (s *Stop) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*s = Stop{one}
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return fmt.Errorf("stop must be a string or a list of strings")
	}
	*s = list
	return nil
}

// GenerateRequest is the body of POST /api/generate (ollama's generate).
// Prompt is the text every sample starts with and Suffix the text it ends
// with: the model fills the gap. Infill is a template with [MASK] and
// [MASK:n] spans to fill instead.
type GenerateRequest struct {
	Model  string `json:"model,omitempty"`
	Prompt string `json:"prompt,omitempty"`
	Suffix string `json:"suffix,omitempty"`
	// System, unless Raw, comes before the prompt, a blank line between.
	System string `json:"system,omitempty"`
	Raw    bool   `json:"raw,omitempty"`
	Infill string `json:"infill,omitempty"`
	// Stream (default true) answers with one NDJSON line per step and the
	// result last; false answers with the result only.
	Stream *bool `json:"stream,omitempty"`
	// Mask is how a masked position shows in a streamed step's samples
	// (default "_"); StreamTokens adds the token ids to every step.
	Mask         *string `json:"mask,omitempty"`
	StreamTokens bool    `json:"stream_tokens,omitempty"`
	Options      Options `json:"options"`
}

// Sample is one generated or partly generated sequence, prompt and suffix
// included.
type Sample struct {
	Text   string  `json:"text"`
	Tokens []int64 `json:"tokens,omitempty"`
}

// Settings are the settings a run used, defaults filled in (as
// sdk.SampleResult reports them).
type Settings struct {
	Steps        int     `json:"steps"`
	NetworkCalls int     `json:"network_calls"`
	Sampler      string  `json:"sampler"`
	Denoise      bool    `json:"denoise"`
	EndTime      float64 `json:"end_time"`
	Seed         uint64  `json:"seed"`
	Length       int     `json:"length"`
	Temperature  float64 `json:"temperature"`
	TopK         int     `json:"top_k"`
	TopP         float64 `json:"top_p"`
	BlockOverlap int     `json:"block_overlap"`
	// Threshold and EntropyBudget are reported only for their sampler.
	Threshold     float64 `json:"threshold,omitempty"`
	EntropyBudget float64 `json:"entropy_budget,omitempty"`
}

// SettingsOf returns the settings res reports, as the server answers them
// and `sedd sample --json` writes them.
func SettingsOf(res *sdk.SampleResult) Settings {
	return Settings{Steps: res.Steps, NetworkCalls: res.NetworkCalls, Sampler: res.Sampler, Denoise: res.Denoise,
		EndTime: res.EndTime, Seed: res.Seed, Length: res.Length, Temperature: res.Temperature, TopK: res.TopK,
		TopP: res.TopP, BlockOverlap: res.BlockOverlap, Threshold: res.Threshold, EntropyBudget: res.EntropyBudget}
}

// Metrics are ollama's counts and durations (nanoseconds): the prompt's
// tokens (suffix included) and the answer's.
type Metrics struct {
	TotalDuration      int64 `json:"total_duration,omitempty"`
	LoadDuration       int64 `json:"load_duration,omitempty"`
	PromptEvalCount    int   `json:"prompt_eval_count,omitempty"`
	PromptEvalDuration int64 `json:"prompt_eval_duration,omitempty"`
	EvalCount          int   `json:"eval_count,omitempty"`
	EvalDuration       int64 `json:"eval_duration,omitempty"`
}

// GenerateStep is a line of a generate stream before the last: Done false,
// Response "" (so that a client that concatenates the responses, as
// ollama's do, gets the answer once), and the step: its index, the steps of
// the run, the diffusion time, the positions still masked and the samples
// (masks shown as the request's Mask). It decodes into a GenerateResponse.
type GenerateStep struct {
	Model     string   `json:"model"`
	CreatedAt string   `json:"created_at"`
	Response  string   `json:"response"`
	Done      bool     `json:"done"`
	Step      int      `json:"step"`
	Steps     int      `json:"steps"`
	T         float64  `json:"t"`
	Masked    int      `json:"masked"`
	Samples   []Sample `json:"samples"`
}

// GenerateResponse is the answer of POST /api/generate, the last line of its
// stream (Done true), or a GenerateStep decoded (Done false, Step and
// Settings.Steps set).
//
// Response is the generated text of the first sample: after the prompt and
// before the suffix, ended by a stop string, the end-of-text token (without
// a suffix) or NumPredict tokens. DoneReason is "stop" when a stop string or
// the end-of-text token ended it, else "length".
type GenerateResponse struct {
	Model      string   `json:"model"`
	CreatedAt  string   `json:"created_at"`
	Response   string   `json:"response"`
	Done       bool     `json:"done"`
	DoneReason string   `json:"done_reason,omitempty"`
	Samples    []Sample `json:"samples"`
	Step       int      `json:"step,omitempty"`
	T          *float64 `json:"t,omitempty"`
	Masked     *int     `json:"masked,omitempty"`
	*Settings
	Metrics
	QueueDuration   int64 `json:"queue_duration,omitempty"`
	NetworkDuration int64 `json:"network_duration,omitempty"`
}

// Message is one message of a chat.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// ChatRequest is the body of POST /api/chat (ollama's chat). A SEDD model
// is a base model: the messages are rendered as plain text (RenderChat) and
// the answer is sampled after it, ended by the next turn.
type ChatRequest struct {
	Model    string    `json:"model,omitempty"`
	Messages []Message `json:"messages"`
	Stream   *bool     `json:"stream,omitempty"`
	Options  Options   `json:"options"`
}

// ChatStep is a line of a chat stream before the last: an empty message
// of the assistant and the step.
type ChatStep struct {
	Model     string  `json:"model"`
	CreatedAt string  `json:"created_at"`
	Message   Message `json:"message"`
	Done      bool    `json:"done"`
	Step      int     `json:"step"`
	Steps     int     `json:"steps"`
}

// ChatResponse is the answer of POST /api/chat, or a line of its stream: as
// GenerateResponse, with the answer in Message. A request without messages
// (ollama's clients load a model so) answers at once, DoneReason "load".
type ChatResponse struct {
	Model      string   `json:"model"`
	CreatedAt  string   `json:"created_at"`
	Message    Message  `json:"message"`
	Done       bool     `json:"done"`
	DoneReason string   `json:"done_reason,omitempty"`
	Step       int      `json:"step,omitempty"`
	Samples    []Sample `json:"samples,omitempty"`
	*Settings
	Metrics
}

// EvaluateRequest is the body of POST /api/evaluate: Text, or Documents.
type EvaluateRequest struct {
	Model     string          `json:"model,omitempty"`
	Text      string          `json:"text,omitempty"`
	Documents []string        `json:"documents,omitempty"`
	Options   EvaluateOptions `json:"options"`
}

// EvaluateOptions are the likelihood estimator's settings, named as
// sdk.EvaluateRequest's fields.
type EvaluateOptions struct {
	Timesteps int     `json:"timesteps,omitempty"`
	Sampling  string  `json:"sampling,omitempty"`
	Seed      uint64  `json:"seed,omitempty"`
	Length    int     `json:"length,omitempty"`
	MinTime   float64 `json:"min_time,omitempty"`
	BatchSize int     `json:"batch_size,omitempty"`
	DropLast  bool    `json:"drop_last,omitempty"`
}

// ModelDetails are ollama's details of a model, and SEDD's.
type ModelDetails struct {
	ParentModel       string   `json:"parent_model"`
	Format            string   `json:"format"`
	Family            string   `json:"family"`
	Families          []string `json:"families"`
	ParameterSize     string   `json:"parameter_size"`
	QuantizationLevel string   `json:"quantization_level"`
	ContextLength     int      `json:"context_length,omitempty"`
	Graph             string   `json:"graph"`
	Noise             string   `json:"noise"`
	Tokens            int      `json:"tokens"`
	Length            int      `json:"length"`
}

// ListModel is one entry of GET /api/tags and GET /api/ps.
type ListModel struct {
	Name         string       `json:"name"`
	Model        string       `json:"model"`
	ModifiedAt   time.Time    `json:"modified_at"`
	Size         int64        `json:"size"`
	Digest       string       `json:"digest"`
	Details      ModelDetails `json:"details"`
	Capabilities []string     `json:"capabilities,omitempty"`
	// ExpiresAt (GET /api/ps) is the zero time: a model is loaded as long
	// as the server runs. SizeVRAM is 0: the models run on the CPU.
	ExpiresAt     *time.Time `json:"expires_at,omitempty"`
	SizeVRAM      *int64     `json:"size_vram,omitempty"`
	ContextLength int        `json:"context_length,omitempty"`
}

// ListResponse is the answer of GET /api/tags and GET /api/ps.
type ListResponse struct {
	Models []ListModel `json:"models"`
}

// ShowRequest is the body of POST /api/show. Name is ollama's former name
// of Model.
type ShowRequest struct {
	Model string `json:"model,omitempty"`
	Name  string `json:"name,omitempty"`
}

// ShowResponse describes one model and how it runs here.
type ShowResponse struct {
	Details      ModelDetails   `json:"details"`
	ModelInfo    sdk.Info       `json:"model_info"`
	Capabilities []string       `json:"capabilities"`
	ModifiedAt   time.Time      `json:"modified_at"`
	Batching     sdk.BatchStats `json:"batching"`
}

// VersionResponse is the answer of GET /api/version.
type VersionResponse struct {
	Version string `json:"version"`
}

// Health is the answer of GET /api/health.
type Health struct {
	Status string   `json:"status"`
	Models []string `json:"models"`
}

// ErrorResponse is the body of every error of /api/...: the message, the
// request field at fault when there is one (its JSON name), and the request
// id the logs carry.
type ErrorResponse struct {
	Error     string `json:"error"`
	Field     string `json:"field,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

// ParseTime reads a CreatedAt.
func ParseTime(s string) (time.Time, error) { return time.Parse(time.RFC3339Nano, s) }

// EvaluateResponse is the likelihood bound of the text and of each window.
type EvaluateResponse struct {
	Model     string `json:"model"`
	CreatedAt string `json:"created_at"`
	sdk.Bound
	Windows       []sdk.Bound `json:"windows"`
	TotalDuration int64       `json:"total_duration"`
}
