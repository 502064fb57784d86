package bench

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"time"
)

// readRSS returns the resident set of a process on this machine, in bytes,
// from /proc/PID/status (VmRSS). Linux only.
func readRSS(pid int) (uint64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, fmt.Errorf("read resident memory: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		rest, ok := bytes.CutPrefix(sc.Bytes(), []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest) // "12848 kB"
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, fmt.Errorf("read resident memory: VmRSS line %q", sc.Text())
		}
		kb, err := strconv.ParseUint(string(f[0]), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("read resident memory: VmRSS line %q: %w", sc.Text(), err)
		}
		return kb * 1024, nil
	}
	return 0, errors.New("read resident memory: no VmRSS in /proc status (a kernel thread, or not Linux?)")
}

// rssSampler samples a process's resident set until stopped.
type rssSampler struct {
	done      chan struct{}
	wg        sync.WaitGroup
	peak, end uint64
}

func (s *rssSampler) start(pid int, every time.Duration) {
	s.done = make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		sample := func() {
			if v, err := readRSS(pid); err == nil {
				s.end = v
				s.peak = max(s.peak, v)
			}
		}
		for {
			sample()
			select {
			case <-s.done:
				sample()
				return
			case <-t.C:
			}
		}
	}()
}

// stop takes a last sample and returns the peak and that last one.
func (s *rssSampler) stop() (peak, end uint64) {
	close(s.done)
	s.wg.Wait()
	return s.peak, s.end
}
