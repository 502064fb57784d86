package checks

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/kvxproject/kvx/pkg/agent/config"
)

// tcpProbe is a TCP check: passing when a connection opens.
type tcpProbe struct {
	addr    string
	timeout time.Duration
}

func (p *tcpProbe) probe(ctx context.Context) (string, string) {
	d := net.Dialer{Timeout: p.timeout}
	conn, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return config.StatusCritical, err.Error()
	}
	_ = conn.Close()
	return config.StatusPassing, fmt.Sprintf("TCP connect %s: Success", p.addr)
}
