package mcptoken

import (
	"errors"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/mcptoken/caddy-mcp-token/introspection"
	"github.com/mcptoken/caddy-mcp-token/jwks"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

const metricsNamespace = "caddy_mcp_token"

// metrics are this module's Prometheus metrics in one config's registry
// (Caddy serves them on /metrics). Handlers of one config share them.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newMetrics(reg *prometheus.Registry) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "requests_total",
			Help: "Requests judged by mcp_token, by verifier (jwt, introspection, static, none) and outcome reason (accepted, expired, bad_signature, bad_audience, insufficient_scope, rate_limited, unavailable, ...).",
		}, []string{"verifier", "reason"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: metricsNamespace, Name: "verification_duration_seconds",
			Help:    "Time spent verifying a bearer token, by verifier.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 10},
		}, []string{"verifier"}),
	}
	var err error
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	if _, err := register[prometheus.Collector](reg, poolCollector{}); err != nil {
		return nil, err
	}
	return m, nil
}

// register adds c to reg, or returns the collector already there.
func register[C prometheus.Collector](reg *prometheus.Registry, c C) (C, error) {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing, nil
			}
		}
		return c, err
	}
	return c, nil
}

// observe records one request's outcome; verified says whether a verifier
// ran (and took d).
func (m *metrics) observe(kind string, err error, verified bool, d time.Duration) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(kind, verifiers.Classify(err).Reason).Inc()
	if verified {
		m.duration.WithLabelValues(kind).Observe(d.Seconds())
	}
}

// poolCollector reports the shared JWKS caches and introspection clients,
// which live across configs, from their own counters.
type poolCollector struct{}

var (
	descJWKSRefreshes = prometheus.NewDesc(metricsNamespace+"_jwks_refreshes_total",
		"JWKS key-set refreshes by result (success, failure).", []string{"result"}, nil)
	descJWKSFetches = prometheus.NewDesc(metricsNamespace+"_jwks_http_requests_total",
		"HTTP requests made for JWKS documents and discovery metadata.", nil, nil)
	descIntroCalls = prometheus.NewDesc(metricsNamespace+"_introspection_calls_total",
		"Token introspection requests sent, by result (success, failure).", []string{"result"}, nil)
	descIntroHits = prometheus.NewDesc(metricsNamespace+"_introspection_cache_hits_total",
		"Token verifications answered from the introspection cache.", nil, nil)
)

func (poolCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descJWKSRefreshes
	ch <- descJWKSFetches
	ch <- descIntroCalls
	ch <- descIntroHits
}

func (poolCollector) Collect(ch chan<- prometheus.Metric) {
	var refreshes, failures, fetches, calls, callFailures, hits int64
	rangePool(jwksPool, func(c *jwks.Cache) {
		s := c.Stats()
		refreshes, failures, fetches = refreshes+s.Refreshes, failures+s.Failures, fetches+s.Fetches
	})
	rangePool(introspectionPool, func(c *introspection.Client) {
		s := c.Stats()
		calls, callFailures, hits = calls+s.Calls, callFailures+s.Failures, hits+s.CacheHits
	})
	counter := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(descJWKSRefreshes, refreshes-failures, "success")
	counter(descJWKSRefreshes, failures, "failure")
	counter(descJWKSFetches, fetches)
	counter(descIntroCalls, calls-callFailures, "success")
	counter(descIntroCalls, callFailures, "failure")
	counter(descIntroHits, hits)
}

// provisionMetrics attaches the config's registry.
func (c *core) provisionMetrics(ctx caddy.Context) error {
	reg := ctx.GetMetricsRegistry()
	if reg == nil {
		return nil
	}
	m, err := newMetrics(reg)
	if err != nil {
		return err
	}
	c.metrics = m
	return nil
}
