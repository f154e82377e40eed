//go:build unix

package onnxrt

import (
	"context"
	"os"
	"os/signal"
	"slices"
	"syscall"
	"testing"
	"time"
)

// TestSignalGuardRestoresGoHandler does what issue 140's C libraries do,
// installing a handler without SA_ONSTACK over Go's, and checks that
// repairGoSignals puts Go's back so that the signal reaches signal.Notify.
func TestSignalGuardRestoresGoHandler(t *testing.T) {
	got := make(chan os.Signal, 1)
	signal.Notify(got, syscall.SIGUSR1)
	defer signal.Stop(got)
	if !recordGoSignals() {
		t.Fatal("the Go runtime's signal handler was not identified")
	}
	if err := installForeignHandler(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if !hasForeignHandler(syscall.SIGUSR1) {
		t.Fatal("the foreign handler did not replace Go's")
	}
	fixed := repairGoSignals()
	if !slices.Contains(fixed, syscall.SIGUSR1) || hasForeignHandler(syscall.SIGUSR1) {
		t.Fatalf("repairGoSignals() = %v, foreign handler still there: %v", fixed, hasForeignHandler(syscall.SIGUSR1))
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("SIGUSR1 did not reach signal.Notify after the repair")
	}
	if again := repairGoSignals(); len(again) != 0 {
		t.Errorf("a second repair changed %v: nothing was left to repair", again)
	}
}

// TestSignalGuardLeavesTheProgramsChoices checks that signals the program
// itself ignores or resets after the record are not given Go's handler back.
func TestSignalGuardLeavesTheProgramsChoices(t *testing.T) {
	if !recordGoSignals() {
		t.Fatal("the Go runtime's signal handler was not identified")
	}
	signal.Ignore(syscall.SIGUSR2)
	defer signal.Reset(syscall.SIGUSR2)
	if fixed := repairGoSignals(); slices.Contains(fixed, syscall.SIGUSR2) {
		t.Errorf("repairGoSignals() = %v: it undid signal.Ignore(SIGUSR2)", fixed)
	}
}

// TestSessionRepairsSignalsAfterForward wires the guard through a session
// asked for CUDA (on a CPU build it falls back, and the guard still runs): a
// handler installed over Go's between forward passes, as issue 140 saw CUDA
// do during batches, is gone after the next pass, and the session says so.
func TestSessionRepairsSignalsAfterForward(t *testing.T) {
	needLibrary(t)
	m, cases := fixture(t, fixtures[0])
	s, err := Open(fixtures[0], m, WithCUDA(0), WithCPUFallback(), WithIntraOpThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got := make(chan os.Signal, 1)
	signal.Notify(got, syscall.SIGUSR1)
	defer signal.Stop(got)
	sc := newScorer(t, s)
	c := cases[0]
	if _, err := sc.Score(context.Background(), c.Indices, c.Sigma, c.Batch, c.Length); err != nil {
		t.Fatal(err)
	}
	if r := s.RestoredSignals(); len(r) != 0 {
		t.Fatalf("RestoredSignals() = %v before anything replaced a handler", r)
	}
	if err := installForeignHandler(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if _, err := sc.Score(context.Background(), c.Indices, c.Sigma, c.Batch, c.Length); err != nil {
		t.Fatal(err)
	}
	if hasForeignHandler(syscall.SIGUSR1) {
		t.Fatal("the foreign SIGUSR1 handler is still installed after a forward pass")
	}
	if r := s.RestoredSignals(); !slices.Contains(r, syscall.SIGUSR1.String()) {
		t.Errorf("RestoredSignals() = %v, want %q", r, syscall.SIGUSR1.String())
	}
	if err := syscall.Kill(os.Getpid(), syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	select {
	case <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("SIGUSR1 did not reach signal.Notify after the pass")
	}
}

// TestCPUSessionLeavesSignalsAlone checks that a session that never asked
// for CUDA does not touch signal handlers.
func TestCPUSessionLeavesSignalsAlone(t *testing.T) {
	needLibrary(t)
	m, cases := fixture(t, fixtures[0])
	s, err := Open(fixtures[0], m, WithIntraOpThreads(1))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	recordGoSignals()
	if err := installForeignHandler(syscall.SIGUSR2); err != nil {
		t.Fatal(err)
	}
	defer signal.Reset(syscall.SIGUSR2)
	defer repairGoSignals()
	c := cases[0]
	if _, err := newScorer(t, s).Score(context.Background(), c.Indices, c.Sigma, c.Batch, c.Length); err != nil {
		t.Fatal(err)
	}
	if !hasForeignHandler(syscall.SIGUSR2) || len(s.RestoredSignals()) != 0 {
		t.Errorf("a CPU session changed signal handlers: foreign still there %v, restored %v",
			hasForeignHandler(syscall.SIGUSR2), s.RestoredSignals())
	}
}
