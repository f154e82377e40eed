package onnxrt

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	ort "github.com/yalue/onnxruntime_go"
)

// The one process-wide ONNX Runtime environment. onnxruntime_go keeps it in
// package-level state, so this package reference-counts it: the first Acquire
// loads the library and creates the environment, the last Release destroys it
// and unloads the library.
var global struct {
	mu      sync.Mutex
	refs    int
	lib     Library
	version string
}

// Env is one reference to the process-wide ONNX Runtime environment. Sessions
// and scorers hold their own references, so user code needs an Env only to
// query the library or keep it loaded between sessions. Env is safe for
// concurrent use; Release is idempotent.
type Env struct {
	lib      Library
	version  string
	released atomic.Bool
}

// Acquire returns a reference to the process-wide environment, creating it
// (and loading the library found by FindLibrary(libraryPath)) when no other
// reference exists. An explicit libraryPath that differs from the library
// already loaded is refused with ErrLibraryConflict: one process runs one ONNX
// Runtime. Every successful Acquire must be paired with a Release.
func Acquire(libraryPath string) (*Env, error) {
	global.mu.Lock()
	defer global.mu.Unlock()
	if global.refs > 0 {
		if libraryPath != "" {
			want, err := FindLibrary(libraryPath)
			if err != nil {
				return nil, err
			}
			if !sameFile(want.Path, global.lib.Path) {
				return nil, fmt.Errorf("%w: %s is loaded, %s was asked for", ErrLibraryConflict, global.lib.Path, want.Path)
			}
		}
		global.refs++
		return &Env{lib: global.lib, version: global.version}, nil
	}
	lib, err := FindLibrary(libraryPath)
	if err != nil {
		return nil, err
	}
	if err := checkLibrary(lib.Path); err != nil {
		return nil, &LibraryError{Err: ErrLibraryLoad, Path: lib.Path, Cause: err}
	}
	disableTelemetry()
	ort.SetSharedLibraryPath(lib.Path)
	// ONNX Runtime's default logger writes to stderr, and onnxruntime_go
	// (v1.27) offers no way to pass a logging callback: only fatal
	// messages, which end the process anyway, are left to it. Every error
	// it would have logged is also the message of the status it returns,
	// which reaches the caller as the error (and the SDK's logger where the
	// SDK logs it), so stderr holds nothing of ONNX Runtime's own.
	if err := ort.InitializeEnvironment(ort.WithLogLevelFatal()); err != nil {
		return nil, &LibraryError{Err: ErrLibraryLoad, Path: lib.Path, Cause: err}
	}
	// Belt and braces: the environment variable above is what keeps
	// CreateEnv from reading the command line; this stops the events.
	_ = ort.DisableTelemetry()
	global.refs, global.lib, global.version = 1, lib, ort.GetVersion()
	return &Env{lib: lib, version: global.version}, nil
}

// checkLibrary refuses a library file that would crash or litter the
// process when loaded: one that is not a complete ELF shared object for this
// machine (a truncated copy kills the process with SIGBUS), and one older
// than MinVersion (onnxruntime_go would ask it for an API version it does
// not serve, and it prints its refusal to stderr).
func checkLibrary(path string) error {
	if err := checkLibraryFile(path); err != nil {
		return err
	}
	v, err := libraryVersion(path)
	if err != nil {
		return err
	}
	if v != "" && !versionAtLeast(v, MinVersion) {
		return fmt.Errorf("it is ONNX Runtime %s; this SDK needs %s or newer", v, MinVersion)
	}
	return nil
}

// EnvDisableTelemetry is ONNX Runtime's switch for its telemetry. The SDK
// sets it to 1 for the process before creating the environment, whatever it
// was set to: with telemetry on, ONNX Runtime 1.30's Linux build reads the
// process's command line when the environment is created, recursing once per
// piece of it, so that a command line of about 28.5 KB or more overflows the
// stack and kills the process with SIGSEGV (reproduced in C against the same
// library: testdata/envrepro); it also writes an empty mat-debug-PID.log into
// the temporary directory per process, grows an event database under the
// user's cache directory and looks up a telemetry host. A library must not
// do any of that, and a user's ORT_DISABLE_TELEMETRY=0 is overridden rather
// than obeyed into a crash (docs/ERRORS.md).
const EnvDisableTelemetry = "ORT_DISABLE_TELEMETRY"

// disableTelemetry sets EnvDisableTelemetry=1 for the process.
func disableTelemetry() {
	if os.Getenv(EnvDisableTelemetry) != "1" {
		os.Setenv(EnvDisableTelemetry, "1")
	}
}

// Release drops this reference; the last one destroys the environment and
// unloads the library. Calls after the first return nil.
func (e *Env) Release() error {
	if e == nil || !e.released.CompareAndSwap(false, true) {
		return nil
	}
	global.mu.Lock()
	defer global.mu.Unlock()
	global.refs--
	if global.refs > 0 {
		return nil
	}
	global.lib, global.version = Library{}, ""
	if err := ort.DestroyEnvironment(); err != nil {
		return fmt.Errorf("runtime: destroying the ONNX Runtime environment: %w", err)
	}
	return nil
}

// Library returns the library this environment loaded.
func (e *Env) Library() Library { return e.lib }

// Version returns the ONNX Runtime version string the library reports, for
// example "1.30.0".
func (e *Env) Version() string { return e.version }

// References returns the number of live references to the process-wide
// environment (0 when it is not loaded).
func References() int {
	global.mu.Lock()
	defer global.mu.Unlock()
	return global.refs
}

// sameFile reports whether two paths name the same file (through symbolic
// links, for example libonnxruntime.so → libonnxruntime.so.1.30.0).
func sameFile(a, b string) bool {
	if a == b {
		return true
	}
	sa, err := os.Stat(a)
	if err != nil {
		return false
	}
	sb, err := os.Stat(b)
	return err == nil && os.SameFile(sa, sb)
}
