package onnxrt

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestCheckLibraryFile refuses, before anything loads them, files that would
// crash the process or cannot be ONNX Runtime: truncated copies of the real
// library (loading one dies of SIGBUS), another machine's library, text,
// directories and executables.
func TestCheckLibraryFile(t *testing.T) {
	lib := needLibrary(t)
	if err := checkLibraryFile(lib.Path); err != nil {
		t.Fatalf("the real library: %v", err)
	}
	real, err := os.ReadFile(lib.Path)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	otherMachine := append([]byte(nil), real...)
	otherMachine[18], otherMachine[19] = 0xb7, 0 // e_machine: EM_AARCH64, little-endian
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, want string
	}{
		{"cut to 100 KB", write("a.so", real[:100<<10]), "truncated"},
		{"cut to a quarter", write("b.so", real[:len(real)/4]), "truncated"},
		{"last byte missing", write("c.so", real[:len(real)-1]), "truncated"},
		{"another machine's library", write("d.so", otherMachine), "built for EM_AARCH64"},
		{"text", write("e.so", []byte("version https://git-lfs.github.com/spec/v1\n")), "not an ELF"},
		{"empty", write("f.so", nil), "not an ELF"},
		{"a directory", dir, "not a regular file"},
		{"an executable", self, "not a shared library"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkLibraryFile(tc.path)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("checkLibraryFile = %v, want an error mentioning %q", err, tc.want)
			}
			if tc.path == dir {
				return
			}
			// Through Acquire the refusal is a *LibraryError matching
			// ErrLibraryLoad, and the process is still alive to see it.
			if References() != 0 {
				t.Skip("an environment is loaded by another test")
			}
			_, err = Acquire(tc.path)
			var le *LibraryError
			if !errors.Is(err, ErrLibraryLoad) || !errors.As(err, &le) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Acquire = %v, want ErrLibraryLoad mentioning %q", err, tc.want)
			}
		})
	}
}

func TestLibraryVersion(t *testing.T) {
	lib := needLibrary(t)
	v, err := libraryVersion(lib.Path)
	if err != nil || !versionAtLeast(v, MinVersion) {
		t.Fatalf("libraryVersion(%s) = %q, %v", lib.Path, v, err)
	}
	libc := "/lib/x86_64-linux-gnu/libc.so.6"
	if _, err := os.Stat(libc); err == nil {
		if _, err := libraryVersion(libc); err == nil || !strings.Contains(err.Error(), "OrtGetApiBase") {
			t.Errorf("libraryVersion(libc) = %v, want no OrtGetApiBase", err)
		}
	}
	for _, tc := range []struct {
		v, min string
		ok     bool
	}{
		{"1.30.0", "1.24", true}, {"1.24.1", "1.24", true}, {"1.24", "1.24", true}, {"1.16.3", "1.24", false},
		{"2.0.0", "1.24", true}, {"1.9.0", "1.24", false}, {"1.100.0", "1.24", true}, {"1.24.0-dev.2026", "1.24", true},
	} {
		if got := versionAtLeast(tc.v, tc.min); got != tc.ok {
			t.Errorf("versionAtLeast(%q, %q) = %v", tc.v, tc.min, got)
		}
	}
}

// TestEnvironmentWithHugeCommandLine creates the environment in a child
// process whose command line and environment hold 100 KB each, with its
// temporary and cache directories of its own: it must neither crash (ONNX
// Runtime's telemetry reads the command line recursively and overflows the
// stack past about 28.5 KB) nor leave files behind (telemetry's
// mat-debug-PID.log and event database).
func TestEnvironmentWithHugeCommandLine(t *testing.T) {
	lib := needLibrary(t)
	if os.Getenv("SEDD_ENV_CHILD") == "1" {
		env, err := Acquire(lib.Path)
		if err != nil {
			t.Fatal(err)
		}
		if err := env.Release(); err != nil {
			t.Fatal(err)
		}
		return
	}
	// Unset, and set to 0 by the user: the SDK turns telemetry off either
	// way (a library has no business sending it, and with it on the
	// environment dies of SIGSEGV).
	for _, telemetry := range []string{"", "0", "false"} {
		tmp, home := t.TempDir(), t.TempDir()
		pad := strings.Repeat("x", 100<<10)
		cmd := exec.Command(os.Args[0], "-test.run", "^TestEnvironmentWithHugeCommandLine$", "-test.count=1", pad)
		cmd.Env = append(os.Environ(), "SEDD_ENV_CHILD=1", "TMPDIR="+tmp, "HOME="+home, "XDG_CACHE_HOME="+filepath.Join(home, "cache"),
			EnvLibraryPath+"="+lib.Path, "SEDD_PADDING="+pad)
		cmd.Env = without(cmd.Env, EnvDisableTelemetry)
		if telemetry != "" {
			cmd.Env = append(cmd.Env, EnvDisableTelemetry+"="+telemetry)
		}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("child with a 100 KB command line and %s=%q: %v\n%s", EnvDisableTelemetry, telemetry, err, out)
		}
		leftBehind(t, tmp, home)
	}
}

// leftBehind fails t for every file under the directories.
func leftBehind(t *testing.T, dirs ...string) {
	t.Helper()
	for _, d := range dirs {
		var left []string
		filepath.Walk(d, func(p string, info os.FileInfo, err error) error {
			if err == nil && p != d {
				left = append(left, p)
			}
			return nil
		})
		if len(left) > 0 {
			t.Errorf("creating the environment left files behind: %v", left)
		}
	}
}

// without returns env without the variable name.
func without(env []string, name string) []string {
	var out []string
	for _, kv := range env {
		if !strings.HasPrefix(kv, name+"=") {
			out = append(out, kv)
		}
	}
	return out
}
