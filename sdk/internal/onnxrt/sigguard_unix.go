//go:build unix

package onnxrt

/*
#include <signal.h>
#include <string.h>

#define SEDD_NSIG 65

static struct sigaction sedd_saved[SEDD_NSIG];
static int sedd_recorded[SEDD_NSIG];

static void *sedd_handler_of(const struct sigaction *sa) {
	return (sa->sa_flags & SA_SIGINFO) ? (void *)sa->sa_sigaction : (void *)sa->sa_handler;
}

// sedd_sig_record remembers every signal whose handler is the Go runtime's
// (the one on SIGURG, which Go always handles, installed with SA_ONSTACK),
// adding to what earlier calls remembered: a handler that a CUDA library
// replaced just before a second session is set up is still repaired.
static int sedd_sig_record(void) {
	struct sigaction urg;
	if (sigaction(SIGURG, NULL, &urg) != 0 || !(urg.sa_flags & SA_ONSTACK)) return -1;
	void *go = sedd_handler_of(&urg);
	int n = 0;
	for (int s = 1; s < SEDD_NSIG; s++) {
		struct sigaction cur;
		if (s == SIGKILL || s == SIGSTOP || sigaction(s, NULL, &cur) != 0) continue;
		if (sedd_handler_of(&cur) == go && (cur.sa_flags & SA_ONSTACK)) {
			sedd_saved[s] = cur;
			sedd_recorded[s] = 1;
		}
		n += sedd_recorded[s];
	}
	return n;
}

// sedd_sig_repair puts the Go runtime's handler back on each recorded signal
// whose handler a C library has replaced (a function other than Go's, or
// Go's without SA_ONSTACK). A signal the Go program itself set to SIG_DFL or
// SIG_IGN since (signal.Reset, signal.Ignore) is left alone. It writes the
// repaired signals to out and returns their number.
static int sedd_sig_repair(int *out, int max) {
	int n = 0;
	for (int s = 1; s < SEDD_NSIG; s++) {
		struct sigaction cur;
		if (!sedd_recorded[s] || sigaction(s, NULL, &cur) != 0) continue;
		void *h = sedd_handler_of(&cur);
		if (h == (void *)SIG_DFL || h == (void *)SIG_IGN) continue;
		if (h == sedd_handler_of(&sedd_saved[s]) && (cur.sa_flags & SA_ONSTACK)) continue;
		if (sigaction(s, &sedd_saved[s], NULL) == 0) {
			if (n < max) out[n] = s;
			n++;
		}
	}
	return n;
}

// For tests: install a handler the way issue 140's C code does, without
// SA_ONSTACK, and tell whether it is the one installed.
static volatile sig_atomic_t sedd_foreign_hits;
static void sedd_foreign(int sig) { (void)sig; sedd_foreign_hits++; }
static int sedd_sig_install_foreign(int sig) {
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = sedd_foreign;
	sigemptyset(&sa.sa_mask);
	return sigaction(sig, &sa, NULL);
}
static int sedd_sig_is_foreign(int sig) {
	struct sigaction cur;
	return sigaction(sig, NULL, &cur) == 0 && sedd_handler_of(&cur) == (void *)sedd_foreign;
}
*/
import "C"

import (
	"sync"
	"syscall"
)

// The CUDA provider, or the CUDA libraries below it, may install signal
// handlers without SA_ONSTACK (onnxruntime_go issue 140): the next such
// signal then crashes a Go program ("non-Go code set up signal handler
// without SA_ONSTACK flag") or never reaches os/signal, so Ctrl-C no longer
// works. Around everything that sets CUDA up or runs on it, signalGuard
// records which signals carry the Go runtime's handler and puts it back
// where a C library replaced it.
var signalGuard struct {
	mu       sync.Mutex
	recorded bool
}

// recordGoSignals remembers which signals the Go runtime handles, before a
// CUDA session is set up. It reports false when Go's handler cannot be
// identified (then repairGoSignals does nothing).
func recordGoSignals() bool {
	signalGuard.mu.Lock()
	defer signalGuard.mu.Unlock()
	signalGuard.recorded = C.sedd_sig_record() > 0
	return signalGuard.recorded
}

// repairGoSignals puts the Go runtime's handler back on each recorded signal
// whose handler C code replaced since, and returns those signals.
func repairGoSignals() []syscall.Signal {
	signalGuard.mu.Lock()
	defer signalGuard.mu.Unlock()
	if !signalGuard.recorded {
		return nil
	}
	var out [C.SEDD_NSIG]C.int
	n := int(C.sedd_sig_repair(&out[0], C.int(len(out))))
	sigs := make([]syscall.Signal, 0, n)
	for _, s := range out[:min(n, len(out))] {
		sigs = append(sigs, syscall.Signal(s))
	}
	return sigs
}

// installForeignHandler and hasForeignHandler are for tests: they do what
// issue 140's C libraries do.
func installForeignHandler(sig syscall.Signal) error {
	if C.sedd_sig_install_foreign(C.int(sig)) != 0 {
		return syscall.EINVAL
	}
	return nil
}

func hasForeignHandler(sig syscall.Signal) bool { return C.sedd_sig_is_foreign(C.int(sig)) != 0 }
