package server

import (
	"testing"
	"time"
)

func TestEffectiveWait(t *testing.T) {
	tests := []struct {
		asked, base time.Duration
	}{
		{0, 5 * time.Minute}, // default
		{300 * time.Millisecond, 300 * time.Millisecond},
		{10 * time.Minute, 10 * time.Minute},
		{time.Hour, 10 * time.Minute}, // capped
	}
	for _, tc := range tests {
		var sawJitter bool
		for i := 0; i < 200; i++ {
			got := effectiveWait(tc.asked)
			if got < tc.base || got > tc.base+tc.base/16 {
				t.Fatalf("effectiveWait(%s) = %s, want within [%s, %s]", tc.asked, got, tc.base, tc.base+tc.base/16)
			}
			sawJitter = sawJitter || got != tc.base
		}
		if !sawJitter {
			t.Errorf("effectiveWait(%s) never added jitter in 200 tries", tc.asked)
		}
	}
}
