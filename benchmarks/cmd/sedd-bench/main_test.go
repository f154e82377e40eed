package main

import (
	"strings"
	"testing"

	"github.com/sedd-go/sedd/internal/cmdline"
	"github.com/sedd-go/sedd/internal/cmdtest"
)

// The tests build sedd-bench once and drive it as a subprocess, from a
// directory outside the repository, the way a user would.
var command *cmdtest.Command

// Committed fixture models.
var (
	tinyAbsorb = cmdtest.Abs("../../../sdk/testdata/tiny-absorb")
	shippedAR  = cmdtest.Abs("../../../models/brown-sedd-small-ar")
)

const (
	exitRuntime     = cmdline.ExitRuntime
	exitUsage       = cmdline.ExitUsage
	exitInterrupted = cmdline.ExitInterrupted
)

func TestMain(m *testing.M) { cmdtest.Main(m, "sedd-bench", &command) }

func needORT(t *testing.T) { t.Helper(); command.NeedORT(t) }

// sedd runs the command with args from a fresh directory outside the
// repository, with a private cache directory and no SEDD_MODEL.
func sedd(t *testing.T, args ...string) cmdtest.Result {
	t.Helper()
	return command.Run(t, args...)
}

func childEnv(t *testing.T) []string { return command.Env(t) }

// TestVerifyEvaluator checks the built-in twin and a committed copy of it.
func TestVerifyEvaluator(t *testing.T) {
	needORT(t)
	for _, args := range [][]string{{"verify", "--threads", "2"}, {"verify", "--threads", "2", shippedAR}} {
		r := sedd(t, args...).OK(t)
		if !stringsContains(r.Stdout, "logits err", ": ok", "evaluator") {
			t.Errorf("verify output:\n%s", r.Stdout)
		}
	}
	r := sedd(t, "verify", "--json", "--threads", "2", shippedAR).OK(t)
	if !stringsContains(r.Stdout, `"kind": "causal-lm"`, `"rel_logits"`, `"ok": true`) {
		t.Errorf("verify --json:\n%s", r.Stdout)
	}
	if r := sedd(t, "verify", tinyAbsorb); r.Code != exitRuntime || !stringsContains(r.Stderr, "causal-lm") {
		t.Errorf("verify of a SEDD model: exit %d, %q", r.Code, r.Stderr)
	}
}

// stringsContains reports whether s holds every one of subs.
func stringsContains(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
