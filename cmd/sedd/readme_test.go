package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/sedd-go/sedd/internal/cmdtest"
)

// The README's commands run as shown: every line of its sh blocks is run
// (sedd commands, from the repository's root, with the binary under test;
// curl against a sedd serve that the block started) or, where running it
// would install things, checked (the script exists and is executable). A
// line no rule knows fails the test, so a new kind of command in the README
// needs a rule here. Its Go block is compiled.

var repoRoot = cmdtest.Abs("../..")

// readmeBlocks returns the fenced blocks of the README with the given info
// string.
func readmeBlocks(t *testing.T, lang string) []string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	var cur *strings.Builder
	for line := range strings.SplitSeq(string(src), "\n") {
		switch {
		case cur == nil && line == "```"+lang:
			cur = &strings.Builder{}
		case cur != nil && line == "```":
			blocks = append(blocks, cur.String())
			cur = nil
		case cur != nil:
			cur.WriteString(line + "\n")
		}
	}
	if cur != nil {
		t.Fatalf("README.md: a ```%s block is not closed", lang)
	}
	return blocks
}

// shellWords splits a command line the way sh does for the README's simple
// lines: single and double quotes, a # that starts a word begins a comment,
// a trailing & is dropped (background).
func shellWords(t *testing.T, line string) (words []string, background bool) {
	t.Helper()
	var w strings.Builder
	inWord, quote := false, rune(0)
	flush := func() {
		if inWord {
			words = append(words, w.String())
			w.Reset()
			inWord = false
		}
	}
	for _, r := range line {
		switch {
		case quote != 0 && r == quote:
			quote = 0
		case quote != 0:
			w.WriteRune(r)
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			flush()
		case r == '#' && !inWord:
			flush()
			goto done
		default:
			w.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		t.Fatalf("README line %q: unclosed quote", line)
	}
	flush()
done:
	if n := len(words); n > 0 && words[n-1] == "&" {
		words, background = words[:n-1], true
	}
	return words, background
}

func TestReadmeCommands(t *testing.T) {
	needORT(t)
	blocks := readmeBlocks(t, "sh")
	if len(blocks) == 0 {
		t.Fatal("README.md has no sh block")
	}
	ran := 0
	for bi, block := range blocks {
		var server *serverProcess
		for line := range strings.SplitSeq(block, "\n") {
			words, background := shellWords(t, line)
			if len(words) == 0 {
				continue
			}
			name := fmt.Sprintf("block%d/%s", bi+1, strings.Join(words[:min(3, len(words))], "_"))
			switch {
			case strings.HasPrefix(words[0], "scripts/"):
				st, err := os.Stat(filepath.Join(repoRoot, words[0]))
				if err != nil || st.Mode()&0o111 == 0 {
					t.Errorf("%s: %s is not an executable script of the repository (%v)", name, words[0], err)
				}
			case words[0] == "go" && len(words) == 3 && (words[1] == "install" || words[1] == "build"):
				if st, err := os.Stat(filepath.Join(repoRoot, words[2])); err != nil || !st.IsDir() {
					t.Errorf("%s: %s is not a package directory of the repository", name, words[2])
				}
			case words[0] == "sedd" && len(words) > 1 && words[1] == "serve":
				if !background {
					t.Fatalf("%s: the README starts sedd serve in the foreground; its next lines could not run", name)
				}
				server = startServer(t, dropFlag(words[2:], "--addr")...)
				ran++
			case words[0] == "sedd":
				runReadmeSedd(t, name, words[1:])
				ran++
			case words[0] == "curl":
				if server == nil {
					t.Fatalf("%s: curl before any sedd serve in its block", name)
				}
				runReadmeCurl(t, name, words[1:], server.addr)
				ran++
			default:
				t.Errorf("%s: no rule checks README lines starting with %q: add one to readme_test.go", name, words[0])
			}
		}
	}
	if ran == 0 {
		t.Fatal("no README command ran")
	}
}

// dropFlag removes flag and its value from args.
func dropFlag(args []string, flag string) []string {
	var out []string
	for i := 0; i < len(args); i++ {
		switch {
		case args[i] == flag:
			i++
		case strings.HasPrefix(args[i], flag+"="):
		default:
			out = append(out, args[i])
		}
	}
	return out
}

func runReadmeSedd(t *testing.T, name string, args []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, command.Binary, args...)
	cmd.Dir = repoRoot
	cmd.Env = childEnv(t)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Errorf("%s: sedd %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
		return
	}
	if strings.TrimSpace(stdout.String()) == "" {
		t.Errorf("%s: sedd %s printed nothing on stdout", name, strings.Join(args, " "))
	}
}

var readmeHostPort = regexp.MustCompile(`^(https?://)?(localhost|127\.0\.0\.1):[0-9]+`)

// runReadmeCurl runs a README curl line with curl itself, pointed at the
// server the block started.
func runReadmeCurl(t *testing.T, name string, args []string, addr string) {
	t.Helper()
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skipf("%s: curl is not installed", name)
	}
	var rewritten []string
	for _, a := range args {
		rewritten = append(rewritten, readmeHostPort.ReplaceAllString(a, "http://"+addr))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, curl, append([]string{"--fail-with-body", "--show-error"}, rewritten...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("%s: curl %s: %v\n%s", name, strings.Join(rewritten, " "), err, out)
		return
	}
	if len(bytes.TrimSpace(out)) == 0 {
		t.Errorf("%s: curl %s answered nothing", name, strings.Join(rewritten, " "))
	}
}

// The README's Go blocks compile as the body of a main function: the SDK's in
// this module, ollama's client in compat/, the module that requires it.
func TestReadmeGoCompiles(t *testing.T) {
	blocks := readmeBlocks(t, "go")
	if len(blocks) == 0 {
		t.Fatal("README.md has no go block")
	}
	for i, b := range blocks {
		module, imports := repoRoot, "\t\"github.com/sedd-go/sedd/sdk\"\n"
		if strings.Contains(b, "ollama.") {
			module, imports = filepath.Join(repoRoot, "compat"), "\tollama \"github.com/ollama/ollama/api\"\n"
		}
		src := "package main\n\nimport (\n\t\"context\"\n\t\"fmt\"\n\t\"log\"\n\n" + imports + ")\n\n" +
			"var _ = log.Fatal\n\nfunc main() {\n\tctx := context.Background()\n\t_ = ctx\n" + b + "}\n"
		dir, err := os.MkdirTemp(module, ".readme-check-")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(dir)
		if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("go", "build", "-o", os.DevNull, "./"+filepath.Base(dir))
		cmd.Dir = module
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("README go block %d does not compile as main's body: %v\n%s\n%s", i+1, err, out, src)
		}
	}
}

// The README's Python block (OpenAI's client) runs against a sedd serve, its
// address changed to the server's.
func TestReadmePython(t *testing.T) {
	blocks := readmeBlocks(t, "python")
	if len(blocks) == 0 {
		t.Skip("README.md has no python block")
	}
	py := filepath.Join(repoRoot, ".venv", "bin", "python")
	if err := exec.Command(py, "-c", "import openai").Run(); err != nil {
		t.Skipf("no .venv with the openai package (scripts/setup.sh makes it): %v", err)
	}
	s := startServer(t)
	for i, b := range blocks {
		src := strings.ReplaceAll(b, "http://127.0.0.1:8080", "http://"+s.addr)
		if src == b {
			t.Fatalf("README python block %d names no http://127.0.0.1:8080 to point at the test's server", i+1)
		}
		file := filepath.Join(t.TempDir(), "readme.py")
		if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		out, err := exec.CommandContext(ctx, py, file).CombinedOutput()
		cancel()
		if err != nil || len(bytes.TrimSpace(out)) == 0 {
			t.Errorf("README python block %d: %v\n%s", i+1, err, out)
		}
	}
}
