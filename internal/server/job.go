package server

import (
	"context"
	"strings"
	"time"

	"github.com/sedd-go/sedd/api"
	"github.com/sedd-go/sedd/sdk"
)

// job is one sampling request of either protocol, turned into the SDK's
// request, with what it takes to cut the answers out of the samples.
type job struct {
	m   *Model
	req sdk.SampleRequest
	// prefix and suffix count the tokens pinned at the ends; predict bounds
	// the tokens answered after the prompt (0: none).
	prefix, suffix, predict int
	stops                   []string
	// eos ends an answer at the end-of-text token (not when filling a gap,
	// where the suffix ends it).
	eos      string
	template bool
	start    time.Time
	queued   time.Duration
}

// answer is one sample's answer.
type answer struct {
	text   string
	reason string // "stop" or "length"
	tokens int    // of the answer
}

// newJob checks the settings of a request against the server's limits and
// makes its job: prompt and suffix are the texts at the ends, batch the
// samples (0: options.batch), predict the tokens to answer after the prompt
// (≤ 0: the rest of the length), field the request field that set it.
func (s *Server) newJob(m *Model, prompt, suffix, template string, o api.Options, batch, predict int, field string) (*job, error) {
	if batch == 0 {
		batch = o.Batch
	}
	maxLen := s.maxLength(m)
	switch {
	case o.Steps > s.cfg.MaxSteps:
		return nil, badRequest("options.steps", "options.steps must be ≤ %d on this server, got %d", s.cfg.MaxSteps, o.Steps)
	case batch > s.cfg.MaxSamples:
		return nil, badRequest("options.batch", "options.batch (OpenAI's n) must be ≤ %d on this server, got %d", s.cfg.MaxSamples, batch)
	case o.Length > maxLen:
		return nil, badRequest("options.length", "options.length must be ≤ %d on this server, got %d", maxLen, o.Length)
	}
	j := &job{m: m, stops: o.Stop, template: template != "", start: time.Now()}
	j.req = sdk.SampleRequest{
		Steps: o.Steps, Sampler: o.Sampler, EndTime: o.EndTime, Batch: batch, Length: o.Length,
		Temperature: o.Temperature, TopK: o.TopK, TopP: o.TopP, BlockOverlap: o.BlockOverlap, NoCache: o.NoCache,
		Threshold: o.Threshold, EntropyBudget: o.EntropyBudget,
		Prefix: prompt, Suffix: suffix, Template: template,
	}
	if o.Denoise != nil {
		j.req.NoDenoise = !*o.Denoise
	}
	if o.Seed != nil {
		j.req.Seed = *o.Seed
	} else {
		j.req.Seed = sdk.RandomSeed()
	}
	if j.template {
		return j, nil
	}
	for _, t := range []struct {
		text string
		n    *int
	}{{prompt, &j.prefix}, {suffix, &j.suffix}} {
		if t.text == "" {
			continue
		}
		toks, err := m.Model.Tokenize(t.text)
		if err != nil {
			return nil, err
		}
		*t.n = len(toks)
	}
	if predict > 0 {
		j.predict = predict
		if suffix != "" && o.Length == 0 {
			// The gap between prompt and suffix is exactly predict tokens.
			j.req.Length = j.prefix + predict + j.suffix
			if j.req.Length > maxLen {
				return nil, badRequest(field, "%s: the prompt (%d tokens), %d tokens and the suffix (%d) make %d, more than the %d this server samples; ask for fewer",
					field, j.prefix, predict, j.suffix, j.req.Length, maxLen)
			}
		}
	}
	if suffix == "" {
		j.eos = m.Model.Info().EOS
	}
	return j, nil
}

// answers cuts each sample's answer out: the tokens after the prompt and
// before the suffix, at most predict of them, ended before the first stop
// string or end-of-text token.
func (j *job) answers(res *sdk.SampleResult) []answer {
	out := make([]answer, len(res.Samples))
	for i, smp := range res.Samples {
		if j.template {
			out[i] = answer{text: smp.Text, reason: "length", tokens: len(smp.Tokens)}
			continue
		}
		toks := smp.Tokens
		if j.prefix+j.suffix <= len(toks) {
			toks = toks[j.prefix : len(toks)-j.suffix]
		}
		a := answer{reason: "length"}
		if j.predict > 0 && len(toks) > j.predict {
			toks = toks[:j.predict]
		}
		a.text, a.tokens = j.m.Model.Decode(toks, ""), len(toks)
		cut := -1
		for _, stop := range append(slicesClip(j.stops), j.eos) {
			if stop == "" {
				continue
			}
			if k := strings.Index(a.text, stop); k >= 0 && (cut < 0 || k < cut) {
				cut = k
			}
		}
		if cut >= 0 {
			a.text, a.reason = a.text[:cut], "stop"
			if t, err := j.m.Model.Tokenize(a.text); err == nil {
				a.tokens = len(t)
			}
		}
		out[i] = a
	}
	return out
}

// slicesClip returns s with no room to grow, so that append copies.
func slicesClip(s []string) []string { return s[:len(s):len(s)] }

// run samples the job: onStep (nil: none) sees every step but the last.
func (s *Server) runJob(ctx context.Context, j *job, onStep func(sdk.Step) error) (*sdk.SampleResult, error) {
	ctx, release, err := s.run(ctx, sampleMemory(j.m, j.req))
	if err != nil {
		return nil, err
	}
	defer release()
	j.queued = time.Since(j.start)
	if onStep == nil {
		return j.m.Model.Sample(ctx, j.req)
	}
	for step, err := range j.m.Model.Stream(ctx, j.req) {
		if err != nil {
			return nil, err
		}
		if step.Result != nil {
			return step.Result, nil
		}
		if err := onStep(step); err != nil {
			return nil, err
		}
	}
	return nil, context.Canceled
}

// settings are the settings a run used.
func settings(res *sdk.SampleResult) *api.Settings {
	st := api.SettingsOf(res)
	return &st
}

// metrics are ollama's counts and durations of a run.
func (j *job) metrics(res *sdk.SampleResult, a answer) api.Metrics {
	return api.Metrics{TotalDuration: time.Since(j.start).Nanoseconds(), PromptEvalCount: j.prefix + j.suffix,
		EvalCount: a.tokens, EvalDuration: res.Network.Nanoseconds()}
}

func samples(res *sdk.SampleResult) []api.Sample {
	out := make([]api.Sample, len(res.Samples))
	for i, smp := range res.Samples {
		out[i] = api.Sample{Text: smp.Text, Tokens: smp.Tokens}
	}
	return out
}

// stepSamples are the samples of a step, masks shown as mask.
func (j *job) stepSamples(st sdk.Step, mask string, tokens bool) []api.Sample {
	out := make([]api.Sample, len(st.Tokens))
	for i, t := range st.Tokens {
		out[i].Text = j.m.Model.Decode(t, mask)
		if tokens {
			out[i].Tokens = t
		}
	}
	return out
}
