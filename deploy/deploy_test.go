// Package deploy holds no code: its test checks the container image's
// Dockerfile and the Kubernetes manifests against the repository and against
// the Kubernetes API's own types, and runs the container's command line.
package deploy

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/yaml"

	"github.com/sedd-go/sedd/internal/testlib"
)

func TestMain(m *testing.M) { testlib.Main(m) }

// manifests decodes kubernetes.yaml strictly (unknown or misplaced fields
// fail) into the API's types.
func manifests(t *testing.T) (*appsv1.Deployment, *corev1.Service) {
	t.Helper()
	var dep *appsv1.Deployment
	var svc *corev1.Service
	for i, doc := range strings.Split(string(testlib.ReadFile(t, "kubernetes.yaml")), "\n---\n") {
		var meta struct {
			Kind string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &meta); err != nil {
			t.Fatalf("document %d: %v", i, err)
		}
		switch meta.Kind {
		case "Deployment":
			dep = &appsv1.Deployment{}
			if err := yaml.UnmarshalStrict([]byte(doc), dep); err != nil {
				t.Fatalf("the Deployment: %v", err)
			}
		case "Service":
			svc = &corev1.Service{}
			if err := yaml.UnmarshalStrict([]byte(doc), svc); err != nil {
				t.Fatalf("the Service: %v", err)
			}
		default:
			t.Fatalf("document %d: unexpected kind %q", i, meta.Kind)
		}
	}
	if dep == nil || svc == nil {
		t.Fatal("kubernetes.yaml needs a Deployment and a Service")
	}
	return dep, svc
}

// dockerfile is what the test reads from the Dockerfile.
type dockerfile struct {
	text       string
	entrypoint []string
	expose     string
}

func readDockerfile(t *testing.T) dockerfile {
	t.Helper()
	d := dockerfile{text: string(testlib.ReadFile(t, "../Dockerfile"))}
	sc := bufio.NewScanner(strings.NewReader(d.text))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "ENTRYPOINT "); ok {
			if err := json.Unmarshal([]byte(rest), &d.entrypoint); err != nil {
				t.Fatalf("ENTRYPOINT is not an exec-form JSON array: %v", err)
			}
		}
		if rest, ok := strings.CutPrefix(line, "EXPOSE "); ok {
			d.expose = strings.TrimSpace(rest)
		}
	}
	if len(d.entrypoint) < 2 || d.expose == "" {
		t.Fatalf("Dockerfile: entrypoint %q, expose %q", d.entrypoint, d.expose)
	}
	return d
}

func TestManifestsAgree(t *testing.T) {
	dep, svc := manifests(t)
	df := readDockerfile(t)
	pod := dep.Spec.Template
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	for k, v := range dep.Spec.Selector.MatchLabels {
		if pod.Labels[k] != v || svc.Spec.Selector[k] != v {
			t.Errorf("label %s=%s: the pod has %q, the Service selects %q", k, v, pod.Labels[k], svc.Spec.Selector[k])
		}
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	if fmt.Sprint(ports["http"]) != df.expose || !strings.HasSuffix(df.entrypoint[len(df.entrypoint)-1], ":"+df.expose) {
		t.Errorf("container port %d, Dockerfile EXPOSE %s, entry point %q", ports["http"], df.expose, df.entrypoint)
	}
	for _, sp := range svc.Spec.Ports {
		if sp.TargetPort.Type == intstr.String && ports[sp.TargetPort.StrVal] == 0 {
			t.Errorf("the Service targets port %q, which the container does not name", sp.TargetPort.StrVal)
		}
	}
	for name, p := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe, "startup": c.StartupProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/api/health" || ports[p.HTTPGet.Port.StrVal] == 0 {
			t.Errorf("%s probe %+v: want GET /api/health on a named container port", name, p)
		}
	}
	drain := 30 * time.Second
	for i, a := range c.Args {
		if a == "--drain" && i+1 < len(c.Args) {
			d, err := time.ParseDuration(c.Args[i+1])
			if err != nil {
				t.Fatal(err)
			}
			drain = d
		}
	}
	pause := time.Duration(0)
	if ps := c.Lifecycle.PreStop; ps != nil && ps.Sleep != nil {
		pause = time.Duration(ps.Sleep.Seconds) * time.Second
	}
	if g := pod.Spec.TerminationGracePeriodSeconds; g == nil || time.Duration(*g)*time.Second <= drain+pause {
		t.Errorf("terminationGracePeriodSeconds %v is not longer than the drain %v plus the preStop pause %v", g, drain, pause)
	}
}

// TestDockerfileStages checks the image's build against the repository:
// the Go version, the ONNX Runtime library where the install script puts
// it, and the library next to the binary (where the SDK looks first).
func TestDockerfileStages(t *testing.T) {
	df := readDockerfile(t)
	gomod := string(testlib.ReadFile(t, "../go.mod"))
	goVersion := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindStringSubmatch(gomod)
	if goVersion == nil || !strings.Contains(df.text, "FROM golang:"+goVersion[1]+"-") {
		t.Errorf("the build stage's Go is not go.mod's %v", goVersion)
	}
	script := string(testlib.ReadFile(t, "../scripts/install-onnxruntime.sh"))
	if !strings.Contains(script, `dest="$root/third_party/onnxruntime"`) || !strings.Contains(script, `lib="$dest/libonnxruntime.so"`) ||
		!strings.Contains(df.text, "COPY --from=onnxruntime /src/third_party/onnxruntime/libonnxruntime.so ") {
		t.Error("the image does not copy the library from where scripts/install-onnxruntime.sh puts it")
	}
	bin := df.entrypoint[0]
	if !strings.Contains(df.text, "/out/sedd "+bin+"\n") || !strings.Contains(df.text, " "+filepath.Dir(bin)+"/libonnxruntime.so\n") ||
		df.entrypoint[1] != "serve" {
		t.Errorf("entry point %q: want the sedd binary, with libonnxruntime.so beside it, running serve", df.entrypoint)
	}
	for _, ignored := range []string{".git", "third_party", "bin"} {
		if !strings.Contains(string(testlib.ReadFile(t, "../.dockerignore")), ignored+"\n") {
			t.Errorf(".dockerignore does not leave out %s", ignored)
		}
	}
}

// TestContainerCommandLine runs the container's command (the Dockerfile's
// entry point with the Deployment's arguments, on a free loopback port),
// checks that the probes' path answers 200, and that SIGTERM ends it within
// the grace period.
func TestContainerCommandLine(t *testing.T) {
	if testlib.Path() == "" {
		t.Skip("no ONNX Runtime library: run scripts/install-onnxruntime.sh")
	}
	dep, _ := manifests(t)
	df := readDockerfile(t)
	bin := filepath.Join(t.TempDir(), "sedd")
	build := exec.Command("go", "build", "-o", bin, "./cmd/sedd")
	build.Dir = ".."
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatal(err)
	}
	args := append([]string{}, df.entrypoint[1:]...)
	args[len(args)-1] = "127.0.0.1:0" // the value of --addr
	c := dep.Spec.Template.Spec.Containers[0]
	args = append(args, c.Args...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "ORT_DISABLE_TELEMETRY=1")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		re := regexp.MustCompile(`"msg":"listening","addr":"([^"]+)"`)
		for sc.Scan() {
			if m := re.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	var a string
	select {
	case a = <-addr:
	case <-time.After(60 * time.Second):
		t.Fatalf("%s %q did not listen within 60 s", bin, args)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+a+c.ReadinessProbe.HTTPGet.Path, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("readiness probe: %d", resp.StatusCode)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	grace := time.Duration(*dep.Spec.Template.Spec.TerminationGracePeriodSeconds) * time.Second
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(grace):
		t.Fatalf("still running %v after SIGTERM", grace)
	}
}
