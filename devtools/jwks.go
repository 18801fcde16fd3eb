package devtools

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
)

// JWKSServer serves a JWKS document on 127.0.0.1 for tests, counts its
// hits, and can be told to misbehave.
type JWKSServer struct {
	*httptest.Server
	mu    sync.Mutex
	keys  []*KeyPair
	extra []any
	fail  http.HandlerFunc
	hits  atomic.Int64
}

// NewJWKSServer starts a server publishing the public keys of keys.
func NewJWKSServer(keys ...*KeyPair) *JWKSServer {
	s := &JWKSServer{keys: keys}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// URL of the JWKS document.
func (s *JWKSServer) JWKSURL() string { return s.URL + "/.well-known/jwks.json" }

func (s *JWKSServer) serve(w http.ResponseWriter, r *http.Request) {
	s.hits.Add(1)
	s.mu.Lock()
	fail := s.fail
	s.mu.Unlock()
	if fail != nil {
		fail(w, r)
		return
	}
	doc, err := s.Document()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	_, _ = w.Write(doc)
}

// Document is the JWKS the server currently publishes.
func (s *JWKSServer) Document() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]any, 0, len(s.keys)+len(s.extra))
	for _, kp := range s.keys {
		jwk, err := kp.JWK()
		if err != nil {
			return nil, err
		}
		keys = append(keys, jwk)
	}
	keys = append(keys, s.extra...)
	return json.Marshal(map[string]any{"keys": keys})
}

// SetKeys replaces the published keys (a rotation).
func (s *JWKSServer) SetKeys(keys ...*KeyPair) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.keys = keys
}

// AddRaw publishes an extra JWK as given (for unsupported or bad keys).
func (s *JWKSServer) AddRaw(jwk any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.extra = append(s.extra, jwk)
}

// Fail makes every request answer with h; nil restores normal service.
func (s *JWKSServer) Fail(h http.HandlerFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail = h
}

// Hits is the number of requests served so far.
func (s *JWKSServer) Hits() int64 { return s.hits.Load() }
