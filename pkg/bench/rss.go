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

// clockTicks is the kernel's USER_HZ, the unit of /proc/PID/stat's times
// (100 on every Linux architecture Go supports).
const clockTicks = 100

// readCPU returns the CPU time (user + system) a process has used, from
// /proc/PID/stat. Linux only.
func readCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, fmt.Errorf("read CPU time: %w", err)
	}
	// The command name (field 2) is in parentheses and may hold spaces:
	// the fields counted from after its closing parenthesis.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("read CPU time: /proc/%d/stat has no command name", pid)
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3 (state): utime is field 14, stime 15
	if len(f) < 13 {
		return 0, fmt.Errorf("read CPU time: /proc/%d/stat has %d fields", pid, len(f)+2)
	}
	var ticks uint64
	for _, s := range f[11:13] {
		n, err := strconv.ParseUint(string(s), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("read CPU time: /proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// readCPUs sums readCPU over several processes.
func readCPUs(pids []int) (time.Duration, error) {
	var sum time.Duration
	for _, pid := range pids {
		cpu, err := readCPU(pid)
		if err != nil {
			return 0, err
		}
		sum += cpu
	}
	return sum, nil
}
