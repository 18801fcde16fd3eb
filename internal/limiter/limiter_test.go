package limiter

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	l := New(10, time.Minute, 100)
	l.SetClock(func() time.Time { return now })
	for i := 0; i < 10; i++ {
		if limited, _ := l.Limited("a"); limited {
			t.Fatalf("limited after %d failures", i)
		}
		l.Fail("a")
	}
	limited, retry := l.Limited("a")
	if !limited || retry != time.Minute {
		t.Fatalf("11th attempt: limited=%v retry=%s", limited, retry)
	}
	if limited, _ := l.Limited("b"); limited {
		t.Fatal("another address is limited")
	}
	now = now.Add(45 * time.Second)
	if _, retry := l.Limited("a"); retry != 15*time.Second {
		t.Fatalf("retry after 45s: %s", retry)
	}
	now = now.Add(15 * time.Second)
	if limited, _ := l.Limited("a"); limited {
		t.Fatal("still limited after the window")
	}
	// A client that never fails is never limited.
	for i := 0; i < 1000; i++ {
		if limited, _ := l.Limited("good"); limited {
			t.Fatal("a client without failures was limited")
		}
	}
}

func TestLimiterBoundedMemory(t *testing.T) {
	const capacity = 10000
	l := New(10, time.Minute, capacity)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for i := 0; i < 100000; i++ {
		l.Fail(fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255))
		if l.Len() > capacity {
			t.Fatalf("%d addresses tracked, cap %d", l.Len(), capacity)
		}
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	if l.Len() != capacity {
		t.Fatalf("len %d", l.Len())
	}
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("100,000 distinct addresses: %d tracked (cap %d), heap grew %d KiB", l.Len(), capacity, grown/1024)
	if grown > 8<<20 {
		t.Fatalf("heap grew %d bytes for a %d-address limiter", grown, capacity)
	}
}

func TestLimiterStatus(t *testing.T) {
	now := time.Unix(1000, 0)
	l := New(2, time.Minute, 5)
	l.SetClock(func() time.Time { return now })
	for _, addr := range []string{"a", "a", "b"} {
		l.Fail(addr)
	}
	want := Status{Tracked: 2, Limited: 1, MaxAttempts: 2, Window: "1m0s", MaxAddresses: 5}
	if got := l.Status(); got != want {
		t.Fatalf("status: %+v, want %+v", got, want)
	}
	now = now.Add(time.Minute)
	if got := l.Status(); got.Limited != 0 || got.Tracked != 0 {
		t.Fatalf("after the window: %+v, want nothing tracked or limited", got)
	}
}

// TestLockedSurvivesFlood (issue 10 item 3): a flood of made-up addresses
// evicts counting addresses but never frees a locked one before its
// window ends.
func TestLockedSurvivesFlood(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	l := New(3, time.Minute, 100)
	l.SetClock(func() time.Time { return now })
	for i := 0; i < 3; i++ {
		l.Fail("198.51.100.7")
	}
	for i := 0; i < 10*100; i++ {
		l.Fail(fmt.Sprintf("10.0.%d.%d", i>>8, i&255))
	}
	if limited, retry := l.Limited("198.51.100.7"); !limited || retry != time.Minute {
		t.Fatalf("locked address after a flood of 1000 addresses: limited=%v retry=%s", limited, retry)
	}
	now = now.Add(time.Minute)
	if limited, _ := l.Limited("198.51.100.7"); limited {
		t.Fatal("still locked after its window")
	}
}

// TestLockedSetBounded: the locked set never grows past its cap; while it
// is full of unexpired locks, existing locks hold and a new one stays in
// the counting LRU; once locks end, new ones are taken again.
func TestLockedSetBounded(t *testing.T) {
	now := time.Unix(1_900_000_000, 0)
	const capacity = 50
	l := New(2, time.Minute, capacity)
	l.SetClock(func() time.Time { return now })
	addr := func(i int) string { return fmt.Sprintf("10.1.%d.%d", i>>8, i&255) }
	for i := 0; i < 3*capacity; i++ {
		l.Fail(addr(i))
		l.Fail(addr(i))
		if l.Len() > 2*capacity {
			t.Fatalf("%d addresses tracked, caps %d+%d", l.Len(), capacity, capacity)
		}
	}
	for i := 0; i < capacity; i++ {
		if limited, _ := l.Limited(addr(i)); !limited {
			t.Fatalf("lock %d was freed by later locks", i)
		}
	}
	now = now.Add(time.Minute)
	l.Fail("192.0.2.1")
	l.Fail("192.0.2.1")
	for i := 0; i < 1000; i++ { // flood the LRU: the new lock must hold
		l.Fail(fmt.Sprintf("10.2.%d.%d", i>>8, i&255))
	}
	if limited, _ := l.Limited("192.0.2.1"); !limited {
		t.Fatal("a lock taken after the old ones ended was not kept")
	}
}

func TestKey(t *testing.T) {
	cases := map[string]string{
		"203.0.113.9":                   "203.0.113.9",
		"::ffff:203.0.113.9":            "203.0.113.9",
		"2001:db8:1:2:3:4:5:6":          "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff:ffff:ffff:1": "2001:db8:1:2::/64",
		"2001:db8:1:3::1":               "2001:db8:1:3::/64",
		"fe80::1%eth0":                  "fe80::/64",
		"not-an-ip":                     "not-an-ip",
	}
	for in, want := range cases {
		if got := Key(in); got != want {
			t.Errorf("Key(%q) = %q, want %q", in, got, want)
		}
	}
}
