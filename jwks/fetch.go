package jwks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"go.uber.org/zap"

	"github.com/mcptoken/caddy-mcp-token/internal/remote"
	"github.com/mcptoken/caddy-mcp-token/verifiers"
)

func (c *Cache) fetchSet(ctx context.Context) error {
	c.mu.Lock()
	jwksURL := c.jwksURL
	c.mu.Unlock()
	if jwksURL == "" {
		u, err := c.discover(ctx)
		if err != nil {
			return err
		}
		c.mu.Lock()
		c.jwksURL = u
		c.mu.Unlock()
		jwksURL = u
	}
	body, err := c.get(ctx, jwksURL)
	if err != nil {
		return err
	}
	shown := remote.Redact(jwksURL)
	set, dropped, err := ParseSet(body, false)
	if err != nil {
		return fmt.Errorf("jwks from %s: %w", shown, err)
	}
	if set.Len() == 0 {
		return fmt.Errorf("jwks from %s has no usable key (%d dropped: %v)", shown, len(dropped), errors.Join(dropped...))
	}
	if len(dropped) > 0 {
		msg := errors.Join(dropped...).Error()
		c.mu.Lock()
		changed := msg != c.lastDropped
		c.lastDropped = msg
		c.mu.Unlock()
		if changed {
			c.opts.Logger.Warn("jwks keys not used", zap.String("source", shown), zap.Int("dropped", len(dropped)), zap.String("reasons", msg))
		}
	}
	set.keepUnchanged(c.set.Load())
	c.set.Store(set)
	return nil
}

// get fetches url: 200 only, body capped at MaxBytes. Errors name the URL
// redacted.
func (c *Cache) get(ctx context.Context, u string) ([]byte, error) {
	c.fetches.Add(1)
	shown := remote.Redact(u)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := c.opts.Client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching %s: %w", shown, remote.Cause(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		remote.Drain(resp)
		return nil, fmt.Errorf("fetching %s: status %d", shown, resp.StatusCode)
	}
	body, err := remote.ReadBody(resp, c.opts.MaxBytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", shown, err)
	}
	return body, nil
}

// discover finds jwks_uri in the issuer's metadata: RFC 8414 (well-known
// suffix inserted before the issuer's path), then OpenID Connect
// Discovery (suffix appended). The metadata's issuer must match exactly.
func (c *Cache) discover(ctx context.Context) (string, error) {
	iss := c.opts.Issuer
	u, err := url.Parse(iss)
	if err != nil {
		return "", err
	}
	path := strings.TrimSuffix(u.Path, "/")
	candidates := []string{
		u.Scheme + "://" + u.Host + "/.well-known/oauth-authorization-server" + path,
		strings.TrimSuffix(iss, "/") + "/.well-known/openid-configuration",
	}
	var errs []error
	for _, cand := range candidates {
		body, err := c.get(ctx, cand)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		var meta struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		shown := remote.Redact(cand)
		if err := json.Unmarshal(body, &meta); err != nil {
			errs = append(errs, fmt.Errorf("%s: not JSON metadata: %w", shown, err))
			continue
		}
		if meta.Issuer != iss {
			errs = append(errs, fmt.Errorf("%s: metadata issuer %q does not match %q", shown, remote.Redact(meta.Issuer), remote.Redact(iss)))
			continue
		}
		if err := verifiers.CheckURL(meta.JWKSURI, false); err != nil {
			errs = append(errs, fmt.Errorf("%s: jwks_uri: %w", shown, err))
			continue
		}
		return meta.JWKSURI, nil
	}
	return "", fmt.Errorf("discovering jwks_uri for %s: %w", remote.Redact(iss), errors.Join(errs...))
}
