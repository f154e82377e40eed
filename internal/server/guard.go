package server

import (
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sedd-go/sedd/api"
	"github.com/sedd-go/sedd/sdk"
)

// The doors of the server, in front of every endpoint: which web pages may
// call it (Origin), under which names it may be reached on a loopback
// address (Host), what a POST body must be (JSON), how many connections one
// client holds, and what /api/show tells about the machine.

// defaultOrigins are the origins a browser may call the server from without
// configuration, as ollama allows them: pages served from this machine, and
// the schemes of desktop and editor shells.
var defaultOrigins = []string{
	"http://localhost", "https://localhost", "http://localhost:*", "https://localhost:*",
	"http://127.0.0.1", "https://127.0.0.1", "http://127.0.0.1:*", "https://127.0.0.1:*",
	"http://[::1]", "https://[::1]", "http://[::1]:*", "https://[::1]:*",
	"http://0.0.0.0", "https://0.0.0.0", "http://0.0.0.0:*", "https://0.0.0.0:*",
	"app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*",
}

// allowedOrigin reports whether a request's Origin header names an origin
// the server answers: none (not a browser, or a same-origin GET), or one
// matching a pattern ("*" matches any run of characters).
func (s *Server) allowedOrigin(origin string) bool {
	if origin == "" {
		return true
	}
	origin = strings.ToLower(origin)
	for _, p := range s.origins {
		if wildcard(strings.ToLower(p), origin) {
			return true
		}
	}
	return false
}

// wildcard matches s against p, where each "*" in p stands for any run of
// characters (slashes included, unlike path.Match).
func wildcard(p, s string) bool {
	parts := strings.Split(p, "*")
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for i, part := range parts[1:] {
		if i == len(parts)-2 {
			return strings.HasSuffix(s, part)
		}
		j := strings.Index(s, part)
		if j < 0 {
			return false
		}
		s = s[j+len(part):]
	}
	return s == ""
}

// guard refuses what no endpoint should serve: a request from a web page of
// an origin not allowed (403), and a POST whose body is declared as anything
// but JSON (415: the content types a page may send without asking first,
// text/plain, multipart and forms, included; curl's default form type is let
// through only without an Origin header, that is not from a browser). It answers the CORS preflight of allowed
// origins and marks their answers readable by them.
func (s *Server) guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if !s.allowedOrigin(origin) {
			s.refuse(w, r, &apiError{status: http.StatusForbidden, kind: "forbidden",
				msg: fmt.Sprintf("requests from the web origin %q are not allowed; start the server with --origins %q (or SEDD_ORIGINS) to allow it", origin, origin)})
			return
		}
		if origin != "" {
			w.Header().Set("Access-Control-Allow-Origin", origin)
			w.Header().Add("Vary", "Origin")
			if r.Method == http.MethodOptions {
				w.Header().Set("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
				w.Header().Set("Access-Control-Allow-Headers", "Content-Type, Authorization, X-Request-Id")
				w.Header().Set("Access-Control-Max-Age", "600")
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		if r.Method == http.MethodPost {
			if ct := r.Header.Get("Content-Type"); ct != "" && !isJSON(ct) && !(origin == "" && isCurlDefault(ct)) {
				s.refuse(w, r, &apiError{status: http.StatusUnsupportedMediaType, kind: "bad_request",
					msg: fmt.Sprintf("the body is declared as %q; send JSON with Content-Type: application/json (curl: -H 'Content-Type: application/json')", ct)})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// isCurlDefault reports whether a Content-Type is the form type curl -d
// declares: accepted from clients that are not browsers (no Origin header),
// so that `curl -d '{...}'` works as it does with ollama.
func isCurlDefault(ct string) bool {
	t, _, err := mime.ParseMediaType(ct)
	return err == nil && t == "application/x-www-form-urlencoded"
}

// isJSON reports whether a Content-Type header declares JSON:
// application/json, or a type ending in +json, with any parameters.
func isJSON(ct string) bool {
	t, _, err := mime.ParseMediaType(ct)
	return err == nil && (t == "application/json" || strings.HasPrefix(t, "application/") && strings.HasSuffix(t, "+json"))
}

// refuse answers a request the doors turn away, with a request id, and logs
// and counts it like any other answer.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, e *apiError) {
	id := requestID(r)
	w.Header().Set("X-Request-Id", id)
	writeError(w, r.WithContext(withRequestID(r.Context(), id)), e)
	s.metrics.observe("refused", e.status, e.kind, 0)
	s.log.Warn("request", "request_id", id, "method", r.Method, "path", r.URL.Path, "status", e.status,
		"host", r.Host, "origin", r.Header.Get("Origin"), "error", e.msg)
}

// hostCheck refuses, on a server listening on a loopback address, requests
// whose Host header names another machine: a web page that had its own name
// resolve to 127.0.0.1 (DNS rebinding) could otherwise read the answers.
func (s *Server) hostCheck(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.allowedHost(r.Host) {
			s.refuse(w, r, &apiError{status: http.StatusForbidden, kind: "forbidden",
				msg: fmt.Sprintf("the Host %q is not this server's name; start the server with --allowed-hosts to allow it", r.Host)})
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (s *Server) allowedHost(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	host = strings.ToLower(strings.TrimSuffix(strings.Trim(host, "[]"), "."))
	if addr, err := netip.ParseAddr(host); err == nil {
		addr = addr.Unmap()
		return addr.IsLoopback() || addr.IsPrivate() || addr.IsUnspecified() || addr.IsLinkLocalUnicast()
	}
	if host == "" || host == "localhost" {
		return true
	}
	if name, err := os.Hostname(); err == nil && host == strings.ToLower(name) {
		return true
	}
	for _, tld := range []string{".localhost", ".local", ".internal"} {
		if strings.HasSuffix(host, tld) {
			return true
		}
	}
	for _, h := range s.cfg.AllowedHosts {
		if h = strings.ToLower(h); h == "*" || h == host || wildcard(h, host) {
			return true
		}
	}
	return false
}

// isLoopback reports whether a listener's address is a loopback one.
func isLoopback(a net.Addr) bool {
	tcp, ok := a.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// limitPerClient bounds the connections one client address holds at once:
// past max, a new connection is answered 429 with Retry-After and closed.
func limitPerClient(ln net.Listener, max int, retry time.Duration, log *slog.Logger) net.Listener {
	return &perClient{Listener: ln, max: max, retry: retry, log: log, open: map[string]int{}}
}

type perClient struct {
	net.Listener
	max   int
	retry time.Duration
	log   *slog.Logger
	mu    sync.Mutex
	open  map[string]int
}

func (l *perClient) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := c.RemoteAddr().String()
		if h, _, err := net.SplitHostPort(ip); err == nil {
			ip = h
		}
		l.mu.Lock()
		n := l.open[ip]
		if n < l.max {
			l.open[ip] = n + 1
		}
		l.mu.Unlock()
		if n < l.max {
			return &countedConn{Conn: c, l: l, ip: ip}, nil
		}
		l.log.Warn("connection refused: too many from one client", "client", ip, "open", n, "max", l.max)
		go l.turnAway(c)
	}
}

// turnAway answers a connection over the limit without reading it.
func (l *perClient) turnAway(c net.Conn) {
	defer c.Close()
	body := fmt.Sprintf(`{"error":"this client holds %d connections, the most one client may; close some or retry later"}`+"\n", l.max)
	_ = c.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = fmt.Fprintf(c, "HTTP/1.1 429 Too Many Requests\r\nContent-Type: application/json\r\nRetry-After: %d\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		max(1, int(l.retry/time.Second)), len(body), body)
}

type countedConn struct {
	net.Conn
	l    *perClient
	ip   string
	once sync.Once
}

func (c *countedConn) Close() error {
	c.once.Do(func() {
		c.l.mu.Lock()
		if c.l.open[c.ip]--; c.l.open[c.ip] <= 0 {
			delete(c.l.open, c.ip)
		}
		c.l.mu.Unlock()
	})
	return c.Conn.Close()
}

// memoryBudget admits requests by the SDK's memory estimate: the estimates
// of the requests running add up to at most the budget.
type memoryBudget struct {
	mu      sync.Mutex
	budget  int64
	used    int64
	changed chan struct{} // closed and replaced whenever memory is given back
}

func (b *memoryBudget) init(budget int64) {
	b.budget, b.changed = budget, make(chan struct{})
}

// take reserves need bytes if they fit now; otherwise it returns a channel
// that is closed when memory is given back.
func (b *memoryBudget) take(need int64) (bool, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.used+need <= b.budget {
		b.used += need
		return true, nil
	}
	return false, b.changed
}

func (b *memoryBudget) give(need int64) {
	b.mu.Lock()
	b.used -= need
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

// inUse returns the memory estimate of the requests running.
func (b *memoryBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}

// overBudget is the answer to a request that alone needs more than the
// server's memory budget.
func (s *Server) overBudget(need int64) *apiError {
	return &apiError{status: http.StatusServiceUnavailable, kind: "over_budget",
		msg: fmt.Sprintf("the request needs about %s of memory, more than this server's budget of %s for all requests at once; ask for fewer samples (options.batch, options.batch_size) or a shorter options.length",
			gib(need), gib(s.cfg.MemoryBudget))}
}

// gib writes a size in MiB below 1 GiB, else in GiB.
func gib(n int64) string {
	if n < 1<<30 {
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
	}
	return strconv.FormatFloat(float64(n)/(1<<30), 'f', 2, 64) + " GiB"
}

// sampleMemory and evalMemory are the SDK's estimates for a request.
func sampleMemory(m *Model, req sdk.SampleRequest) int64 {
	return m.Model.RequestMemory(req.Batch, req.Length)
}

func evalMemory(m *Model, o api.EvaluateOptions) int64 {
	rows := o.BatchSize
	if rows == 0 {
		rows = 4 // the SDK's default (sdk.EvaluateRequest.BatchSize)
	}
	return m.Model.RequestMemory(rows, o.Length)
}

// shownInfo is what /api/show tells of a model: without DisclosePaths, the
// local paths (the model's directory, the library's) are cut to their base
// names and the notes that could hold one are left out.
func (s *Server) shownInfo(info sdk.Info) sdk.Info {
	if s.cfg.DisclosePaths {
		return info
	}
	info.Dir = filepath.Base(info.Dir)
	info.LibraryPath = filepath.Base(info.LibraryPath)
	info.LibraryReason = ""
	if state, _, cut := strings.Cut(info.GraphCache, ":"); cut {
		info.GraphCache = state
	}
	return info
}
