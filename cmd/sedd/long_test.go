package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sedd-go/sedd/internal/testlib"
)

// TestLongInputs: a prompt far longer than any model, given as a 100 KB
// argument, in a file, on standard input and as an infill template file,
// gets the model's "does not fit" refusal, never a crash; a 100 KB
// environment variable changes nothing (ONNX Runtime's telemetry, which the
// SDK turns off, crashed on command lines past about 28.5 KB).
func TestLongInputs(t *testing.T) {
	needORT(t)
	dir := t.TempDir()
	mb := strings.Repeat("the jury said ", (1<<20)/14)
	prompt := filepath.Join(dir, "prompt.txt")
	if err := os.WriteFile(prompt, []byte(mb+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	template := filepath.Join(dir, "template.txt")
	if err := os.WriteFile(template, []byte(mb+"[MASK:3]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	huge := filepath.Join(dir, "huge.txt")
	if err := os.WriteFile(huge, bytes.Repeat([]byte("x"), 17<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	arg := strings.Repeat("x", 100<<10)
	for _, tc := range []struct {
		name  string
		args  []string
		stdin string
		want  string
	}{
		{"100 KB --prefix", []string{"sample", "--model", tinyAbsorb, "--prefix", arg}, "", "the prefix takes 102400 tokens but the length is 32"},
		{"1 MB --prefix-file", []string{"sample", "--model", tinyAbsorb, "--prefix-file", prompt}, "", "but the length is 32"},
		{"1 MB prefix on stdin", []string{"sample", "--model", tinyAbsorb, "--prefix-file", "-"}, mb, "but the length is 32"},
		{"1 MB suffix on stdin", []string{"sample", "--model", tinyAbsorb, "--suffix-file", "-"}, mb, "but the length is 32"},
		{"1 MB --template-file", []string{"infill", "--model", tinyAbsorb, "--template-file", template}, "", "the template is at least"},
		{"1 MB template on stdin", []string{"infill", "--model", tinyAbsorb, "--template-file", "-"}, mb + "[MASK]", "the template is at least"},
		{"100 KB template argument", []string{"infill", "--model", tinyAbsorb, strings.Repeat("[MASK]", 100<<10/6)}, "", "the template is at least"},
		{"17 MB prompt file", []string{"sample", "--model", tinyAbsorb, "--prefix-file", huge}, "", "more than the 16777216 a text may have"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(command.Binary, tc.args...)
			cmd.Dir = t.TempDir()
			cmd.Env = childEnv(t)
			cmd.Stdin = strings.NewReader(tc.stdin)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			exit, ok := err.(*exec.ExitError)
			if !ok || exit.ExitCode() != exitUsage {
				t.Fatalf("exit %v, want status %d; stderr:\n%.2000s", err, exitUsage, stderr.String())
			}
			if !strings.HasPrefix(stderr.String(), "sedd: ") || !strings.Contains(stderr.String(), tc.want) {
				t.Fatalf("stderr %.500q does not mention %q", stderr.String(), tc.want)
			}
			if len(stderr.String()) > 2000 {
				t.Errorf("the message is %d bytes: it should not repeat the input", len(stderr.String()))
			}
		})
	}
	t.Run("100 KB environment variable", func(t *testing.T) {
		cmd := exec.Command(command.Binary, "sample", "--model", tinyAbsorb, "--steps", "2", "--seed", "1")
		cmd.Dir = t.TempDir()
		cmd.Env = append(childEnv(t), "SEDD_PADDING="+arg)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
	})
}

// TestLibraryLoadFailures points --ort-lib at files that are not a usable
// ONNX Runtime: stderr must hold only the sedd: line (ONNX Runtime printed
// its own refusal of an old library before), and nothing may crash (a
// truncated copy of the library used to die of SIGBUS).
func TestLibraryLoadFailures(t *testing.T) {
	needORT(t)
	real := testlib.ReadFile(t, command.ORTLib)
	dir := t.TempDir()
	truncated := filepath.Join(dir, "libonnxruntime.so")
	if err := os.WriteFile(truncated, real[:len(real)/3], 0o644); err != nil {
		t.Fatal(err)
	}
	text := filepath.Join(dir, "passwd")
	if err := os.WriteFile(text, []byte("root:x:0:0:root:/root:/bin/bash\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	libs := map[string]string{
		"missing": filepath.Join(dir, "none.so"), "a directory": dir, "truncated": truncated, "text": text,
	}
	for _, p := range []string{"/lib/x86_64-linux-gnu/libc.so.6", "/lib/aarch64-linux-gnu/libc.so.6"} {
		if _, err := os.Stat(p); err == nil {
			libs["libc"] = p
		}
	}
	// A stand-in for an old ONNX Runtime: it reports version 1.16.3 and, like
	// the real one, prints to stderr when asked for an API it lacks.
	if cc, err := exec.LookPath("cc"); err == nil {
		src := filepath.Join(dir, "old.c")
		os.WriteFile(src, []byte(`#include <stdio.h>
typedef struct { const void *(*get_api)(unsigned); const char *(*version)(void); } base;
static const void *get_api(unsigned v) { fprintf(stderr, "The requested API version [%u] is not available", v); return 0; }
static const char *version(void) { return "1.16.3"; }
static const base b = { get_api, version };
const base *OrtGetApiBase(void) { return &b; }
`), 0o644)
		old := filepath.Join(dir, "libold.so")
		if out, err := exec.Command(cc, "-shared", "-fPIC", "-o", old, src).CombinedOutput(); err == nil {
			libs["ONNX Runtime 1.16.3"] = old
		} else {
			t.Logf("no stand-in for an old ONNX Runtime (cc failed: %v %s)", err, out)
		}
	}
	for name, lib := range libs {
		t.Run(name, func(t *testing.T) {
			r := sedd(t, "sample", "--model", tinyAbsorb, "--steps", "2", "--ort-lib", lib)
			if r.Code != exitRuntime {
				t.Fatalf("exit %d, want %d; stderr:\n%s", r.Code, exitRuntime, r.Stderr)
			}
			if name == "ONNX Runtime 1.16.3" && !strings.Contains(r.Stderr, "1.16.3; this SDK needs 1.24 or newer") {
				t.Errorf("stderr %q does not say the library is too old", r.Stderr)
			}
			for _, line := range strings.Split(strings.TrimSuffix(r.Stderr, "\n"), "\n") {
				if !strings.HasPrefix(line, "sedd: ") {
					t.Errorf("stderr line %q is not sedd's", line)
				}
			}
		})
	}
}
