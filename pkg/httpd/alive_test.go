package httpd

import (
	"testing"
	"time"
)

// A waiting request is peeked at when its age doubles, at least once per
// aliveMaxGap.
func TestNextPeekAge(t *testing.T) {
	for _, c := range []struct{ age, want time.Duration }{
		{time.Second, 2 * time.Second},
		{40 * time.Second, 80 * time.Second},
		{100 * time.Second, 160 * time.Second},
		{9 * time.Minute, 10 * time.Minute},
	} {
		if got := time.Duration(nextPeekAge(int64(c.age))); got != c.want {
			t.Errorf("after a peek at %v: next at %v, want %v", c.age, got, c.want)
		}
	}
}
