package api

import (
	"encoding/json"
	"fmt"
)

// OpenAI's completions and chat completions (/v1/...). SEDD's settings are
// extra fields of the body, named as in Options; OpenAI's own fields win
// where both name one setting (n over batch, max_tokens over num_predict).

// StreamOptions are OpenAI's stream_options.
type StreamOptions struct {
	IncludeUsage bool `json:"include_usage,omitempty"`
}

// Prompt is a completion's prompt: in JSON a string, or a list of one
// string (a list of several, or of tokens, is refused: one prompt per
// request).
type Prompt string

// UnmarshalJSON reads a string or a list of one string.
func (p *Prompt) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*p = Prompt(one)
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return fmt.Errorf("prompt must be a string (a list of tokens is not taken)")
	}
	if len(list) != 1 {
		return fmt.Errorf("prompt must be one string, got a list of %d; send one request per prompt", len(list))
	}
	*p = Prompt(list[0])
	return nil
}

// CompletionRequest is the body of POST /v1/completions. The model fills the
// gap between Prompt and Suffix.
type CompletionRequest struct {
	Model  string `json:"model"`
	Prompt Prompt `json:"prompt"`
	Suffix string `json:"suffix,omitempty"`
	// MaxTokens bounds the tokens generated after the prompt; with a
	// suffix, exactly this many fill the gap. Absent: the rest of the
	// model's length.
	MaxTokens *int `json:"max_tokens,omitempty"`
	// N is the number of choices (samples), 1 by default.
	N             *int           `json:"n,omitempty"`
	Echo          bool           `json:"echo,omitempty"`
	Stream        bool           `json:"stream,omitempty"`
	StreamOptions *StreamOptions `json:"stream_options,omitempty"`
	// Logprobs is refused when set: the model has no per-token
	// probabilities of the left-to-right kind.
	Logprobs *int `json:"logprobs,omitempty"`
	Options
}

// Usage counts the tokens of the prompt (suffix included) and of the
// completions.
type Usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// CompletionChoice is one completion.
type CompletionChoice struct {
	Text         string  `json:"text"`
	Index        int     `json:"index"`
	Logprobs     *string `json:"logprobs"`
	FinishReason *string `json:"finish_reason"`
}

// CompletionResponse is the answer of POST /v1/completions, or one event of
// its stream (Usage then only on the last, when asked for).
type CompletionResponse struct {
	ID                string             `json:"id"`
	Object            string             `json:"object"`
	Created           int64              `json:"created"`
	Model             string             `json:"model"`
	SystemFingerprint string             `json:"system_fingerprint"`
	Choices           []CompletionChoice `json:"choices"`
	Usage             *Usage             `json:"usage,omitempty"`
	// Settings are SEDD's, the seed included.
	Settings *Settings `json:"sedd,omitempty"`
}

// ChatCompletionRequest is the body of POST /v1/chat/completions.
type ChatCompletionRequest struct {
	Model    string        `json:"model"`
	Messages []ChatMessage `json:"messages"`
	// MaxCompletionTokens is OpenAI's newer name of MaxTokens.
	MaxTokens           *int           `json:"max_tokens,omitempty"`
	MaxCompletionTokens *int           `json:"max_completion_tokens,omitempty"`
	N                   *int           `json:"n,omitempty"`
	Stream              bool           `json:"stream,omitempty"`
	StreamOptions       *StreamOptions `json:"stream_options,omitempty"`
	Logprobs            bool           `json:"logprobs,omitempty"`
	Options
}

// ChatMessage is an OpenAI message: its content a string, or a list of
// parts of which the text ones are read.
type ChatMessage struct {
	Role    string      `json:"role"`
	Content ChatContent `json:"content"`
}

// ChatContent is a message's text.
type ChatContent string

// UnmarshalJSON reads a string, null, or a list of parts (the text of the
// "text" parts, joined).
func (c *ChatContent) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*c = ""
		return nil
	}
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*c = ChatContent(one)
		return nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(b, &parts); err != nil {
		return fmt.Errorf("content must be a string or a list of parts")
	}
	s := ""
	for _, p := range parts {
		if p.Type == "text" {
			s += p.Text
		}
	}
	*c = ChatContent(s)
	return nil
}

// ChatCompletionMessage is the answer's message, or a stream's delta.
type ChatCompletionMessage struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

// ChatCompletionChoice is one answer: Message, or Delta in a stream.
type ChatCompletionChoice struct {
	Index        int                    `json:"index"`
	Message      *ChatCompletionMessage `json:"message,omitempty"`
	Delta        *ChatCompletionMessage `json:"delta,omitempty"`
	Logprobs     *string                `json:"logprobs"`
	FinishReason *string                `json:"finish_reason"`
}

// ChatCompletionResponse is the answer of POST /v1/chat/completions, or one
// event of its stream ("chat.completion.chunk").
type ChatCompletionResponse struct {
	ID                string                 `json:"id"`
	Object            string                 `json:"object"`
	Created           int64                  `json:"created"`
	Model             string                 `json:"model"`
	SystemFingerprint string                 `json:"system_fingerprint"`
	Choices           []ChatCompletionChoice `json:"choices"`
	Usage             *Usage                 `json:"usage,omitempty"`
	Settings          *Settings              `json:"sedd,omitempty"`
}

// OpenAIModel is one model of GET /v1/models.
type OpenAIModel struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// OpenAIModelList is the answer of GET /v1/models.
type OpenAIModelList struct {
	Object string        `json:"object"`
	Data   []OpenAIModel `json:"data"`
}

// OpenAIError is the body of every error of /v1/...: OpenAI's error object.
type OpenAIError struct {
	Error OpenAIErrorDetail `json:"error"`
}

// OpenAIErrorDetail says what went wrong: Param is the request field at
// fault, Code the kind of error.
type OpenAIErrorDetail struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}
