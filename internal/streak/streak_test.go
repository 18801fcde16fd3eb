package streak

import (
	"errors"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

func TestStreakLogsOncePerStreakAndKeepsState(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	now := time.Unix(1_900_000_000, 0)
	s := New(zap.New(core), "thing", func() time.Time { return now })
	if st := s.State(); st.Failures != 0 || !st.LastSuccess.IsZero() || st.LastError != "" {
		t.Fatalf("fresh state %+v", st)
	}
	for i := 0; i < 3; i++ {
		s.Failure(errors.New("boom"))
	}
	st := s.State()
	if st.Failures != 3 || st.LastError != "boom" || !st.LastErrorAt.Equal(now) {
		t.Fatalf("after 3 failures: %+v", st)
	}
	if n := logs.FilterMessage("thing failed").FilterLevelExact(zap.WarnLevel).Len(); n != 1 {
		t.Fatalf("%d warnings for one streak, want 1", n)
	}
	if n := logs.FilterMessage("thing failed").FilterLevelExact(zap.DebugLevel).Len(); n != 2 {
		t.Fatalf("%d debug lines, want 2", n)
	}
	now = now.Add(time.Minute)
	s.Success()
	s.Success()
	st = s.State()
	if st.Failures != 0 || !st.LastSuccess.Equal(now) || st.LastError != "boom" {
		t.Fatalf("after recovery: %+v", st)
	}
	if n := logs.FilterMessage("thing recovered").Len(); n != 1 {
		t.Fatalf("%d recovery lines, want 1", n)
	}
}
