package server

import (
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus metrics, in a registry of its own.
type metrics struct {
	reg      *prometheus.Registry
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// fillBuckets are the upper bounds of the batch-fill histogram (rows of a
// pass over the most it may hold).
var fillBuckets = []float64{0.125, 0.25, 0.5, 0.75, 0.999, 1}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sedd_requests_total", Help: "HTTP requests answered, by endpoint and status code (499: the client went away).",
		}, []string{"endpoint", "code"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "sedd_errors_total", Help: "Requests that ended in an error, by endpoint and kind (bad_request, not_found, queue_full, timeout, canceled, closed, internal).",
		}, []string{"endpoint", "kind"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "sedd_request_duration_seconds", Help: "Time from a request's arrival to its last byte, by endpoint.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 16),
		}, []string{"endpoint"}),
	}
	m.reg.MustRegister(m.requests, m.errors, m.duration,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sedd_requests_running", Help: "Requests holding one of the server's slots (--max-active).",
		}, func() float64 { return float64(len(s.slots)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "sedd_requests_queued", Help: "Requests waiting for a slot (at most --max-queue; past it, 429).",
		}, func() float64 { return float64(s.queued.Load()) }),
		&passCollector{s: s},
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// observe counts one answered request.
func (m *metrics) observe(endpoint string, status int, kind string, d time.Duration) {
	m.requests.WithLabelValues(endpoint, strconv.Itoa(status)).Inc()
	if kind != "" {
		m.errors.WithLabelValues(endpoint, kind).Inc()
	}
	m.duration.WithLabelValues(endpoint).Observe(d.Seconds())
}

// passCollector exports each model's sdk.BatchStats at scrape time.
type passCollector struct{ s *Server }

var (
	descPasses = prometheus.NewDesc("sedd_network_passes_total",
		"Forward passes of the score network.", []string{"model"}, nil)
	descRows = prometheus.NewDesc("sedd_network_rows_total",
		"Rows (sequences) in those passes.", []string{"model"}, nil)
	descCalls = prometheus.NewDesc("sedd_network_calls_total",
		"Score requests of calls (a sampling step, an evaluation batch) those passes served; more than the passes when requests share them.", []string{"model"}, nil)
	descNetwork = prometheus.NewDesc("sedd_network_seconds_total",
		"Time spent in forward passes.", []string{"model"}, nil)
	descQueueRows = prometheus.NewDesc("sedd_batch_queue_rows",
		"Rows waiting for the next forward pass (cross-request batching).", []string{"model"}, nil)
	descQueueCalls = prometheus.NewDesc("sedd_batch_queue_calls",
		"Score requests waiting for the next forward pass (cross-request batching).", []string{"model"}, nil)
	descFill = prometheus.NewDesc("sedd_batch_fill",
		"Rows of a forward pass over the most a pass may hold (cross-request batching only).", []string{"model"}, nil)
	descMaxRows = prometheus.NewDesc("sedd_batch_max_rows",
		"The most rows a forward pass may hold (0: batching off).", []string{"model"}, nil)
)

func (c *passCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descPasses, descRows, descCalls, descNetwork, descQueueRows, descQueueCalls, descFill, descMaxRows} {
		ch <- d
	}
}

func (c *passCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.s.models {
		st := m.Model.BatchStats()
		name := m.Name
		ch <- prometheus.MustNewConstMetric(descPasses, prometheus.CounterValue, float64(st.Passes), name)
		ch <- prometheus.MustNewConstMetric(descRows, prometheus.CounterValue, float64(st.Rows), name)
		ch <- prometheus.MustNewConstMetric(descCalls, prometheus.CounterValue, float64(st.Calls), name)
		ch <- prometheus.MustNewConstMetric(descNetwork, prometheus.CounterValue, st.Network.Seconds(), name)
		ch <- prometheus.MustNewConstMetric(descQueueRows, prometheus.GaugeValue, float64(st.QueuedRows), name)
		ch <- prometheus.MustNewConstMetric(descQueueCalls, prometheus.GaugeValue, float64(st.QueuedCalls), name)
		ch <- prometheus.MustNewConstMetric(descMaxRows, prometheus.GaugeValue, float64(st.MaxRows), name)
		if st.MaxRows == 0 {
			continue
		}
		buckets := make(map[float64]uint64, len(fillBuckets))
		var count uint64
		var sum float64
		for k, n := range st.RowsPerPass {
			if n == 0 {
				continue
			}
			fill := float64(k) / float64(st.MaxRows)
			count += n
			sum += fill * float64(n)
			for _, ub := range fillBuckets {
				if fill <= ub {
					buckets[ub] += n
				}
			}
		}
		ch <- prometheus.MustNewConstHistogram(descFill, count, sum, buckets, name)
	}
}
