package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// Cache is a namespace of values with an expiry, under hashed keys
// (<prefix><namespace>:<hex key>): the shared introspection cache is
// Cache("introspection").
type Cache struct {
	s  *Redis
	ns string
}

// Cache returns the namespace ns of the store.
func (s *Redis) Cache(ns string) *Cache { return &Cache{s: s, ns: s.prefix + ns + ":"} }

// Load returns the value under key; ok is false when there is none.
func (c *Cache) Load(ctx context.Context, key [sha256.Size]byte) ([]byte, bool, error) {
	ctx, cancel := c.s.call(ctx)
	defer cancel()
	v, err := c.s.client.Get(ctx, c.ns+hex.EncodeToString(key[:])).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("redis cache %s: %w", c.ns, err)
	}
	return v, true, nil
}

// Store puts value under key for ttl.
func (c *Cache) Store(ctx context.Context, key [sha256.Size]byte, value []byte, ttl time.Duration) error {
	ctx, cancel := c.s.call(ctx)
	defer cancel()
	if err := c.s.client.Set(ctx, c.ns+hex.EncodeToString(key[:]), value, max(ttl, time.Millisecond)).Err(); err != nil {
		return fmt.Errorf("redis cache %s: %w", c.ns, err)
	}
	return nil
}
