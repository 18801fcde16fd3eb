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
	if got := l.Status(); got.Limited != 0 || got.Tracked != 2 {
		t.Fatalf("after the window: %+v, want 0 limited of 2 tracked", got)
	}
}
