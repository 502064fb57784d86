package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The coordination benchmarks run real kvx processes (the binary given as
// Bin): kvx lock contenders, and kvx watch processes. Their commands write
// nanosecond timestamps (date +%s%N) that the figures are computed from.

// LockOptions configure RunLock.
type LockOptions struct {
	Bin       string // the kvx binary
	Addr      string
	Handovers int
	Spares    int           // contenders waiting besides the holder
	Hold      time.Duration // how long each holder's command runs
	Prefix    string        // the lock prefix
	Dir       string        // scratch directory for the commands' log
}

// LockResult is the handover time: from the holder's command exiting to
// the next holder's command starting.
type LockResult struct {
	Handovers          int
	P50, P90, P99, Max time.Duration
}

func (r LockResult) String() string {
	return fmt.Sprintf("lock handover (holder's command exits -> spare's command starts): %d handovers  p50 %v  p90 %v  p99 %v  max %v",
		r.Handovers, r.P50, r.P90, r.P99, r.Max)
}

// RunLock keeps 1+Spares kvx lock processes contending for one lock, each
// running a command that logs its start and end and holds for o.Hold, and
// starts a new contender each time one exits, until o.Handovers handovers
// were seen.
func RunLock(ctx context.Context, o LockOptions) (LockResult, error) {
	log := filepath.Join(o.Dir, "lock.log")
	job := fmt.Sprintf("echo S $(date +%%s%%N) >> %s; sleep %.3f; echo E $(date +%%s%%N) >> %s", log, o.Hold.Seconds(), log)
	runs := o.Handovers + 1
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, 1+o.Spares)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	for range runs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			out, err := exec.CommandContext(ctx, o.Bin, "lock", "-http-addr", o.Addr, o.Prefix, job).CombinedOutput()
			if err != nil && ctx.Err() == nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = fmt.Errorf("kvx lock: %v: %s", err, out)
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return LockResult{}, firstErr
	}
	lines, err := readStamps(log)
	if err != nil {
		return LockResult{}, err
	}
	var lats []time.Duration
	for i := 1; i < len(lines); i++ {
		if lines[i-1].kind == "E" && lines[i].kind == "S" {
			lats = append(lats, time.Duration(lines[i].ns-lines[i-1].ns))
		} else if lines[i-1].kind == lines[i].kind {
			return LockResult{}, fmt.Errorf("two holders at once: line %d of %s", i+1, log)
		}
	}
	if len(lats) == 0 {
		return LockResult{}, errors.New("no handover seen")
	}
	r := LockResult{Handovers: len(lats)}
	r.P50, r.P90, r.P99, r.Max = percentiles(lats)
	return r, nil
}

type stamp struct {
	kind string
	ns   int64
}

func readStamps(path string) ([]stamp, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []stamp
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		kind, v, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		ns, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: bad line %q", path, sc.Text())
		}
		out = append(out, stamp{kind, ns})
	}
	return out, sc.Err()
}

// EventOptions configure RunEvent.
type EventOptions struct {
	Bin      string
	Addr     string
	Watchers int
	Events   int
	Name     string
	Dir      string
}

// EventResult is the time from firing an event to each watch's handler
// starting.
type EventResult struct {
	Watchers, Events, Seen int
	P50, P90, P99, Max     time.Duration
}

func (r EventResult) String() string {
	return fmt.Sprintf("event fire -> handler start, %d kvx watch processes, %d events: %d handler starts  p50 %v  p90 %v  p99 %v  max %v",
		r.Watchers, r.Events, r.Seen, r.P50, r.P90, r.P99, r.Max)
}

// RunEvent starts o.Watchers kvx watch -type event processes whose handler
// logs its start time, fires a warm-up event and waits until every handler
// ran it, then fires o.Events events one after the other, each once every
// handler ran the previous one.
func RunEvent(ctx context.Context, o EventOptions) (EventResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var procs []*exec.Cmd
	defer func() {
		cancel()
		for _, p := range procs {
			_ = p.Wait()
		}
	}()
	file := func(i int) string { return filepath.Join(o.Dir, "watch-"+strconv.Itoa(i)) }
	for i := range o.Watchers {
		// The handler drains its stdin and logs when it started.
		handler := fmt.Sprintf("echo S $(date +%%s%%N) >> %s; cat > /dev/null", file(i))
		p := exec.CommandContext(ctx, o.Bin, "watch", "-http-addr", o.Addr, "-log-level", "error", "-type", "event", "-name", o.Name, handler)
		if err := p.Start(); err != nil {
			return EventResult{}, err
		}
		procs = append(procs, p)
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	fire := func() (time.Time, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+o.Addr+"/v1/event/fire/"+o.Name, nil)
		t0 := time.Now()
		resp, err := hc.Do(req)
		if err != nil {
			return t0, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return t0, fmt.Errorf("fire: %s", resp.Status)
		}
		return t0, nil
	}
	waitAll := func(n int) error {
		deadline := time.Now().Add(2 * time.Minute)
		for i := 0; i < o.Watchers; {
			lines, _ := readStamps(file(i))
			if len(lines) >= n {
				i++
				continue
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("watch %d ran its handler %d times, want %d", i, len(lines), n)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(10 * time.Millisecond):
			}
		}
		return nil
	}
	if _, err := fire(); err != nil {
		return EventResult{}, err
	}
	if err := waitAll(1); err != nil {
		return EventResult{}, err
	}
	var fired []time.Time
	for e := range o.Events {
		t0, err := fire()
		if err != nil {
			return EventResult{}, err
		}
		fired = append(fired, t0)
		if err := waitAll(e + 2); err != nil {
			return EventResult{}, err
		}
	}
	var lats []time.Duration
	for i := range o.Watchers {
		lines, err := readStamps(file(i))
		if err != nil {
			return EventResult{}, err
		}
		for e, t0 := range fired {
			lats = append(lats, time.Duration(lines[e+1].ns-t0.UnixNano()))
		}
	}
	r := EventResult{Watchers: o.Watchers, Events: o.Events, Seen: len(lats)}
	r.P50, r.P90, r.P99, r.Max = percentiles(lats)
	return r, nil
}
