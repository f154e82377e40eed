package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"
)

// benchLoadCommand drives a `sedd serve` with many concurrent clients over
// loopback, once with cross-request batching and once without, and reports
// throughput, latency, batch fill and the server's resident memory.
func benchLoadCommand() *cli.Command {
	return &cli.Command{
		Name:  "load",
		Usage: "load-test sedd serve over loopback, with cross-request batching and without",
		Description: "For each mode, starts SEDD serve --addr 127.0.0.1:0 --batching=MODE --max-active CLIENTS " +
			"SERVER-ARGS (--server-args, then every argument after --), sends one warm-up request, then runs --clients clients that each send generate " +
			"requests (stream false, --steps steps, a seed of their own) one after another until --requests " +
			"have been answered or --time-limit has passed, and stops the server with SIGTERM. The server's " +
			"resident set (VmRSS) is sampled every 250 ms, its CPU time (user + system) read before and after; " +
			"batch fill and network time come from its /metrics. On a machine shared with other work, a server " +
			"running many threads takes a larger share of the CPU than one running few, so throughput is " +
			"also reported per second of the server's own CPU time.",
		ArgsUsage: "[-- SERVER-ARGS...]",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "sedd", Value: "bin/sedd", Usage: "the sedd `BINARY` to serve with"},
			&cli.StringFlag{Name: "server-args", Usage: "more arguments for sedd serve, split as a shell splits words: spaces separate, quotes ('...', \"...\") and backslashes keep a path with spaces whole (e.g. \"--threads 2 --max-batch 16\"); arguments after -- follow them unchanged"},
			&cli.StringFlag{Name: "modes", Value: "on,off", Usage: "batching modes to run, in order (on, off), e.g. on,off,on,off"},
			&cli.IntFlag{Name: "clients", Value: 64, Usage: "concurrent clients"},
			&cli.IntFlag{Name: "requests", Value: 256, Usage: "requests answered per mode"},
			&cli.IntFlag{Name: "steps", Value: 16, Usage: "sampling steps per request"},
			&cli.DurationFlag{Name: "time-limit", Value: 10 * time.Minute, Usage: "longest one mode may run"},
			&cli.StringFlag{Name: "out", Usage: "append one JSON object per mode to `FILE`"},
		},
		Action: benchLoad,
	}
}

// loadRow is the outcome of one mode.
type loadRow struct {
	Batching       bool    `json:"batching"`
	ServerArgs     string  `json:"server_args"`
	Clients        int     `json:"clients"`
	Steps          int     `json:"steps"`
	Requests       int     `json:"requests"`
	Failed         int     `json:"failed"`
	WallS          float64 `json:"wall_s"`
	SamplesPerS    float64 `json:"samples_per_s"`
	P50S           float64 `json:"p50_s"`
	P99S           float64 `json:"p99_s"`
	Passes         float64 `json:"passes"`
	Rows           float64 `json:"rows"`
	Calls          float64 `json:"calls"`
	MaxRows        float64 `json:"max_rows"`
	MeanFill       float64 `json:"mean_fill"`
	NetworkS       float64 `json:"network_s"`
	CPUS           float64 `json:"server_cpu_s"`
	SamplesPerCPUS float64 `json:"samples_per_cpu_s"`
	RSSStartMiB    float64 `json:"rss_start_mib"`
	RSSFirstMiB    float64 `json:"rss_first_half_median_mib"`
	RSSSecondMiB   float64 `json:"rss_second_half_median_mib"`
	RSSMaxMiB      float64 `json:"rss_max_mib"`
	Date           string  `json:"date"`
}

func benchLoad(c *cli.Context) error {
	clients, requests, steps := c.Int("clients"), c.Int("requests"), c.Int("steps")
	if clients < 1 || requests < 1 || steps < 1 {
		return usagef("--clients, --requests and --steps must be ≥ 1")
	}
	var modes []bool
	for _, m := range strings.Split(c.String("modes"), ",") {
		switch strings.TrimSpace(m) {
		case "on":
			modes = append(modes, true)
		case "off":
			modes = append(modes, false)
		default:
			return usagef("--modes: %q is not on or off", m)
		}
	}
	serverArgs, err := splitWords(c.String("server-args"))
	if err != nil {
		return usagef("--server-args: %v", err)
	}
	serverArgs = append(serverArgs, c.Args().Slice()...)
	stdout, stderr := c.App.Writer, c.App.ErrWriter
	var rows []loadRow
	for _, batching := range modes {
		fmt.Fprintf(stderr, "batching %v: %d clients, %d requests of %d steps\n", batching, clients, requests, steps)
		row, err := runLoad(c.Context, c.String("sedd"), serverArgs, batching,
			clients, requests, steps, c.Duration("time-limit"))
		if err != nil {
			return err
		}
		rows = append(rows, row)
		if path := c.String("out"); path != "" {
			if err := appendJSON(path, row); err != nil {
				return err
			}
		}
	}
	tw := tabwriter.NewWriter(stdout, 2, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "batching\trequests\tfailed\twall s\tsamples/s\tserver CPU s\tsamples/CPU s\tp50 s\tp99 s\tpasses\tcalls/pass\tmean fill\tnetwork s\tRSS start MiB\t1st half\t2nd half\tmax\t")
	for _, r := range rows {
		fill := "-"
		if r.MaxRows > 0 {
			fill = fmt.Sprintf("%.2f of %.0f", r.MeanFill, r.MaxRows)
		}
		fmt.Fprintf(tw, "%v\t%d\t%d\t%.1f\t%.3f\t%.1f\t%.4f\t%.2f\t%.2f\t%.0f\t%.1f\t%s\t%.1f\t%.0f\t%.0f\t%.0f\t%.0f\t\n",
			r.Batching, r.Requests, r.Failed, r.WallS, r.SamplesPerS, r.CPUS, r.SamplesPerCPUS, r.P50S, r.P99S, r.Passes, r.Calls/r.Passes, fill,
			r.NetworkS, r.RSSStartMiB, r.RSSFirstMiB, r.RSSSecondMiB, r.RSSMaxMiB)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var on, off, onCPU, offCPU []float64
	for _, r := range rows {
		if r.Batching {
			on, onCPU = append(on, r.SamplesPerS), append(onCPU, r.SamplesPerCPUS)
		} else {
			off, offCPU = append(off, r.SamplesPerS), append(offCPU, r.SamplesPerCPUS)
		}
	}
	if len(on) > 0 && len(off) > 0 {
		fmt.Fprintf(stdout, "throughput with batching / without: %.2f× per second of wall time, %.2f× per second of the server's CPU time (mean of %d and %d runs)\n",
			mean(on)/mean(off), mean(onCPU)/mean(offCPU), len(on), len(off))
	}
	return nil
}

func mean(v []float64) float64 {
	s := 0.0
	for _, x := range v {
		s += x
	}
	return s / float64(len(v))
}

func appendJSON(path string, v any) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if err := json.NewEncoder(f).Encode(v); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// runLoad runs one mode against a fresh server.
func runLoad(ctx context.Context, bin string, extra []string, batching bool, clients, requests, steps int, limit time.Duration) (loadRow, error) {
	row := loadRow{Batching: batching, ServerArgs: strings.Join(extra, " "), Clients: clients, Steps: steps,
		Date: time.Now().UTC().Format(time.RFC3339)}
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--batching=" + strconv.FormatBool(batching),
		"--max-active", strconv.Itoa(clients), "--max-queue", strconv.Itoa(clients)}, extra...)
	srv, err := startServe(ctx, bin, args)
	if err != nil {
		return row, err
	}
	defer srv.stop()
	base := "http://" + srv.addr
	body := func(seed int) string {
		return fmt.Sprintf(`{"stream":false,"options":{"steps":%d,"seed":%d}}`, steps, seed)
	}
	if _, err := postGenerate(ctx, base, body(0)); err != nil {
		return row, fmt.Errorf("warm-up request: %w", err)
	}
	before, err := scrape(ctx, base)
	if err != nil {
		return row, err
	}
	pid := srv.cmd.Process.Pid
	cpuBefore := cpuSeconds(pid)
	rss := newRSSSampler(pid)
	row.RSSStartMiB = rss.sample()
	stopRSS := make(chan struct{})
	var rssDone sync.WaitGroup
	rssDone.Go(func() {
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stopRSS:
				return
			case <-t.C:
				rss.sample()
			}
		}
	})

	lctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var mu sync.Mutex
	var latencies []float64
	failed, next := 0, 0
	start := time.Now()
	var wg sync.WaitGroup
	for range clients {
		wg.Go(func() {
			for {
				mu.Lock()
				if next >= requests || lctx.Err() != nil {
					mu.Unlock()
					return
				}
				next++
				seed := next
				mu.Unlock()
				t0 := time.Now()
				_, err := postGenerate(lctx, base, body(seed))
				d := time.Since(t0).Seconds()
				mu.Lock()
				if err != nil {
					if lctx.Err() == nil {
						failed++
						fmt.Fprintf(os.Stderr, "request %d: %v\n", seed, err)
					}
				} else {
					latencies = append(latencies, d)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	row.WallS = time.Since(start).Seconds()
	row.CPUS = cpuSeconds(pid) - cpuBefore
	close(stopRSS)
	rssDone.Wait()
	after, err := scrape(ctx, base)
	if err != nil {
		return row, err
	}
	row.Requests, row.Failed = len(latencies), failed
	row.SamplesPerS = float64(len(latencies)) / row.WallS
	if row.CPUS > 0 {
		row.SamplesPerCPUS = float64(len(latencies)) / row.CPUS
	}
	slices.Sort(latencies)
	row.P50S, row.P99S = quantile(latencies, 0.5), quantile(latencies, 0.99)
	row.Passes = after["sedd_network_passes_total"] - before["sedd_network_passes_total"]
	row.Rows = after["sedd_network_rows_total"] - before["sedd_network_rows_total"]
	row.Calls = after["sedd_network_calls_total"] - before["sedd_network_calls_total"]
	row.NetworkS = after["sedd_network_seconds_total"] - before["sedd_network_seconds_total"]
	row.MaxRows = after["sedd_batch_max_rows"]
	if row.MaxRows > 0 && row.Passes > 0 {
		row.MeanFill = row.Rows / row.Passes / row.MaxRows
	}
	row.RSSFirstMiB, row.RSSSecondMiB, row.RSSMaxMiB = rss.summary()
	if lctx.Err() != nil && len(latencies) < requests {
		fmt.Fprintf(os.Stderr, "time limit: %d of %d requests answered in %v\n", len(latencies), requests, limit)
	}
	return row, nil
}

// quantile of sorted values, by linear interpolation.
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	pos := q * float64(len(sorted)-1)
	i := int(pos)
	if i+1 >= len(sorted) {
		return sorted[len(sorted)-1]
	}
	return sorted[i] + (pos-float64(i))*(sorted[i+1]-sorted[i])
}

// serveProcess is a running sedd serve.
type serveProcess struct {
	cmd  *exec.Cmd
	addr string
	done chan error
}

var listeningRE = regexp.MustCompile(`"msg":"listening","addr":"([^"]+)"`)

// startServe starts bin with args and waits for its "listening" log line.
func startServe(ctx context.Context, bin string, args []string) (*serveProcess, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "ORT_DISABLE_TELEMETRY=1")
	pipe, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", bin, err)
	}
	p := &serveProcess{cmd: cmd, done: make(chan error, 1)}
	addr := make(chan string, 1)
	go func() {
		br := bufio.NewReader(pipe)
		var tail []string
		for {
			line, err := br.ReadString('\n')
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				addr <- m[1]
			} else if strings.Contains(line, `"level":"ERROR"`) || strings.Contains(line, `"level":"WARN"`) || !strings.HasPrefix(line, "{") {
				tail = append(tail, line)
			}
			if err != nil {
				werr := cmd.Wait()
				if werr != nil && len(tail) > 0 {
					werr = fmt.Errorf("%w: %s", werr, strings.Join(tail, ""))
				}
				p.done <- werr
				return
			}
		}
	}()
	select {
	case p.addr = <-addr:
		return p, nil
	case err := <-p.done:
		return nil, fmt.Errorf("%s exited before listening: %v", bin, err)
	case <-time.After(2 * time.Minute):
		cmd.Process.Kill()
		return nil, errors.New("sedd serve did not listen within 2 minutes")
	}
}

// stop sends SIGTERM and waits for the drain.
func (p *serveProcess) stop() {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func postGenerate(ctx context.Context, base, body string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/api/generate", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("status %d: %s", resp.StatusCode, data)
	}
	return data, nil
}

// scrape reads the server's /metrics into name → value, summing over label
// sets (one model here).
func scrape(ctx context.Context, base string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") || line == "" {
			continue
		}
		name, rest, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		name, _, _ = strings.Cut(name, "{")
		v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
		if err == nil {
			out[name] += v
		}
	}
	return out, sc.Err()
}

// cpuSeconds returns the user and system CPU time a process has used
// (/proc/PID/stat, in USER_HZ = 100 ticks a second), or 0 when it cannot be
// read.
func cpuSeconds(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := strings.LastIndexByte(string(data), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return (utime + stime) / 100
}

// rssSampler records a process's resident set size over time.
type rssSampler struct {
	pid     int
	mu      sync.Mutex
	samples []float64 // MiB
}

func newRSSSampler(pid int) *rssSampler { return &rssSampler{pid: pid} }

// sample reads VmRSS now, in MiB (0 when it cannot).
func (r *rssSampler) sample() float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", r.pid))
	if err != nil {
		return 0
	}
	for l := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(rest)
			if kb, err := strconv.ParseFloat(f[0], 64); err == nil {
				mib := kb / 1024
				r.mu.Lock()
				r.samples = append(r.samples, mib)
				r.mu.Unlock()
				return mib
			}
		}
	}
	return 0
}

// summary returns the median of the first and of the second half of the
// samples, and their maximum.
func (r *rssSampler) summary() (first, second, peak float64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := len(r.samples)
	if n == 0 {
		return 0, 0, 0
	}
	median := func(v []float64) float64 {
		v = slices.Clone(v)
		slices.Sort(v)
		return quantile(v, 0.5)
	}
	return median(r.samples[:max(1, n/2)]), median(r.samples[n/2:]), slices.Max(r.samples)
}

// splitWords splits s into words as a POSIX shell does for a plain command line
// without expansions: unquoted blanks separate words, '...' keeps everything
// literally, "..." keeps everything but lets a backslash escape \ and ", and an
// unquoted backslash keeps the next character. So a --server-args naming a
// model directory whose path holds a space can say so.
func splitWords(s string) ([]string, error) {
	var words []string
	var cur strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case ch == ' ' || ch == '\t' || ch == '\n':
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		case ch == '\\':
			if i+1 == len(s) {
				return nil, fmt.Errorf("a backslash ends %q", s)
			}
			i++
			cur.WriteByte(s[i])
			inWord = true
		case ch == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, fmt.Errorf("unclosed ' in %q", s)
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case ch == '"':
			closed := false
			for i++; i < len(s); i++ {
				if s[i] == '"' {
					closed = true
					break
				}
				if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '"' || s[i+1] == '\\') {
					i++
				}
				cur.WriteByte(s[i])
			}
			if !closed {
				return nil, fmt.Errorf("unclosed \" in %q", s)
			}
			inWord = true
		default:
			cur.WriteByte(ch)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	return words, nil
}
