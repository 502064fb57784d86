package connlimit

import (
	"log/slog"
	"net"
	"sync"
	"time"
)

// Listener is a net.Listener that refuses a client's connections over Max.
type Listener struct {
	net.Listener
	max    int
	logger *slog.Logger

	mu     sync.Mutex
	open   map[string]int       // open connections per IP
	logged map[string]time.Time // last refusal logged per IP
}

// Wrap caps ln at max connections per client IP (max <= 0: no cap).
func Wrap(ln net.Listener, max int, logger *slog.Logger) net.Listener {
	if max <= 0 {
		return ln
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Listener{Listener: ln, max: max, logger: logger, open: map[string]int{}, logged: map[string]time.Time{}}
}

// Accept returns the next connection within the cap; those over it are
// closed here.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		ip := hostOf(c.RemoteAddr())
		l.mu.Lock()
		n := l.open[ip]
		if n >= l.max {
			now := time.Now()
			log := now.Sub(l.logged[ip]) >= time.Minute
			if log {
				l.logged[ip] = now
			}
			l.mu.Unlock()
			if log {
				l.logger.Warn("connection refused: too many from one client (-http-max-conns-per-client)",
					"client", ip, "open", n, "max", l.max, "addr", l.Addr().String())
			}
			c.Close()
			continue
		}
		l.open[ip] = n + 1
		l.mu.Unlock()
		return &conn{Conn: c, l: l, ip: ip}, nil
	}
}

// Open is how many connections ip holds open now.
func (l *Listener) Open(ip string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open[ip]
}

func (l *Listener) release(ip string) {
	l.mu.Lock()
	if l.open[ip] <= 1 {
		delete(l.open, ip)
	} else {
		l.open[ip]--
	}
	l.mu.Unlock()
}

type conn struct {
	net.Conn
	l    *Listener
	ip   string
	once sync.Once
}

// NetConn is the connection under the cap's bookkeeping: writes may go
// straight to it (pkg/httpd writes a response's head and body in one
// writev, which a wrapper hides).
func (c *conn) NetConn() net.Conn { return c.Conn }

func (c *conn) Close() error {
	c.once.Do(func() { c.l.release(c.ip) })
	return c.Conn.Close()
}

func hostOf(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}
