package mcptoken

import (
	"errors"
	"sync"

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
	// label sets resolved once: accepted requests and durations by kind
	accepted  map[string]prometheus.Counter
	durations map[string]prometheus.Observer
	// the verified-token cache
	cacheHits, cacheMisses prometheus.Counter
}

// verifierKinds are the values of the verifier label.
var verifierKinds = []string{verifiers.KindJWT, verifiers.KindStatic, verifiers.KindIntrospection, verifiers.KindNone}

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
	hits := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: metricsNamespace, Name: "token_cache_hits_total",
		Help: "Requests whose token was found in the verified-token cache (no signature check).",
	})
	misses := prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: metricsNamespace, Name: "token_cache_misses_total",
		Help: "Requests whose token was not in the verified-token cache (verified, then cached if accepted).",
	})
	entries := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: metricsNamespace, Name: "token_cache_entries",
		Help: "Tokens held by the verified-token caches in use.",
	}, liveTokenCaches.entries)
	var err error
	if m.requests, err = register(reg, m.requests); err != nil {
		return nil, err
	}
	if m.duration, err = register(reg, m.duration); err != nil {
		return nil, err
	}
	if m.cacheHits, err = register[prometheus.Counter](reg, hits); err != nil {
		return nil, err
	}
	if m.cacheMisses, err = register[prometheus.Counter](reg, misses); err != nil {
		return nil, err
	}
	if _, err := register[prometheus.Collector](reg, entries); err != nil {
		return nil, err
	}
	if _, err := register[prometheus.Collector](reg, poolCollector{}); err != nil {
		return nil, err
	}
	m.accepted = make(map[string]prometheus.Counter, len(verifierKinds))
	m.durations = make(map[string]prometheus.Observer, len(verifierKinds))
	for _, kind := range verifierKinds {
		m.accepted[kind] = m.requests.WithLabelValues(kind, verifiers.Accepted.Reason)
		m.durations[kind] = m.duration.WithLabelValues(kind)
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

// observe records one request's outcome: its reason, the time a verifier
// took (when one ran), and whether the token cache answered.
func (m *metrics) observe(out outcome) {
	if m == nil {
		return
	}
	if c := m.accepted[out.kind]; c != nil && out.err == nil {
		c.Inc()
	} else {
		m.requests.WithLabelValues(out.kind, verifiers.Classify(out.err).Reason).Inc()
	}
	if out.took > 0 {
		if o := m.durations[out.kind]; o != nil {
			o.Observe(out.took.Seconds())
		} else {
			m.duration.WithLabelValues(out.kind).Observe(out.took.Seconds())
		}
	}
	switch out.cache {
	case cacheHit:
		m.cacheHits.Inc()
	case cacheMiss:
		m.cacheMisses.Inc()
	}
}

// tokenCaches is the set of verified-token caches in use, for the size
// gauge.
type tokenCaches struct{ m sync.Map }

var liveTokenCaches tokenCaches

func (t *tokenCaches) add(c *verifiers.TokenCache) {
	if c != nil {
		t.m.Store(c, struct{}{})
	}
}

func (t *tokenCaches) remove(c *verifiers.TokenCache) {
	if c != nil {
		t.m.Delete(c)
	}
}

func (t *tokenCaches) entries() float64 {
	n := 0
	t.m.Range(func(k, _ any) bool {
		n += k.(*verifiers.TokenCache).Stats().Len
		return true
	})
	return float64(n)
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
