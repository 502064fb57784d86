package checks

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/kvxproject/kvx/pkg/agent/config"
)

// grpcProbe is a gRPC health check (grpc.health.v1.Health/Check) over the
// standard library's HTTP/2 client: the request and answer are each one
// small protobuf message, encoded here by hand, so no gRPC dependency.
type grpcProbe struct {
	target  string // as configured, for messages
	url     string
	service string
	client  *http.Client
}

// The serving statuses of grpc.health.v1.HealthCheckResponse.
var grpcServingStatus = map[uint64]string{0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}

func newGRPCProbe(d *config.Check, timeout time.Duration) *grpcProbe {
	addr, service, _ := strings.Cut(d.GRPC, "/")
	var protos http.Protocols
	scheme := "http"
	tr := &http.Transport{DisableKeepAlives: true}
	if d.GRPCUseTLS {
		scheme = "https"
		protos.SetHTTP2(true)
		tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: d.TLSSkipVerify, ServerName: d.TLSServerName} //nolint:gosec // the check's own tls_skip_verify
	} else {
		protos.SetUnencryptedHTTP2(true)
	}
	tr.Protocols = &protos
	return &grpcProbe{
		target:  d.GRPC,
		url:     scheme + "://" + addr + "/grpc.health.v1.Health/Check",
		service: service,
		client:  &http.Client{Transport: tr, Timeout: timeout},
	}
}

func (p *grpcProbe) probe(ctx context.Context) (string, string) {
	status, err := p.check(ctx)
	if err != nil {
		return config.StatusCritical, err.Error()
	}
	if status != "SERVING" {
		return config.StatusCritical, fmt.Sprintf("gRPC %s serving status: %s", p.target, status)
	}
	return config.StatusPassing, fmt.Sprintf("gRPC check %s: success", p.target)
}

func (p *grpcProbe) check(ctx context.Context) (string, error) {
	// HealthCheckRequest{service: field 1, string}, in a gRPC frame:
	// 1 byte not-compressed, 4 bytes length, the message.
	var msg []byte
	if p.service != "" {
		msg = binary.AppendUvarint([]byte{0x0a}, uint64(len(p.service)))
		msg = append(msg, p.service...)
	}
	frame := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
	frame = append(frame, msg...)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(frame))
	if err != nil {
		return "", fmt.Errorf("gRPC %s: %w", p.target, err)
	}
	req.Header.Set("Content-Type", "application/grpc")
	req.Header.Set("TE", "trailers")
	resp, err := p.client.Do(req)
	if err != nil {
		return "", fmt.Errorf("gRPC %s: %w", p.target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return "", fmt.Errorf("gRPC %s: read answer: %w", p.target, err)
	}
	code := resp.Trailer.Get("Grpc-Status")
	if code == "" {
		code = resp.Header.Get("Grpc-Status") // a trailers-only answer
	}
	if resp.StatusCode != http.StatusOK || code != "0" {
		m := resp.Trailer.Get("Grpc-Message") + resp.Header.Get("Grpc-Message")
		return "", fmt.Errorf("gRPC %s: HTTP %d, grpc-status %q %s", p.target, resp.StatusCode, code, m)
	}
	return parseHealthResponse(body)
}

// parseHealthResponse reads HealthCheckResponse{status: field 1, enum}
// out of one gRPC frame.
func parseHealthResponse(frame []byte) (string, error) {
	if len(frame) < 5 || frame[0] != 0 || int(binary.BigEndian.Uint32(frame[1:5])) != len(frame)-5 {
		return "", errors.New("gRPC health: malformed answer frame")
	}
	msg := frame[5:]
	status := uint64(0) // proto3: absent means 0, UNKNOWN
	for len(msg) > 0 {
		key, n := binary.Uvarint(msg)
		if n <= 0 {
			return "", errors.New("gRPC health: malformed answer")
		}
		msg = msg[n:]
		switch key & 7 {
		case 0: // varint
			v, n := binary.Uvarint(msg)
			if n <= 0 {
				return "", errors.New("gRPC health: malformed answer")
			}
			msg = msg[n:]
			if key>>3 == 1 {
				status = v
			}
		case 2: // length-delimited: skip
			l, n := binary.Uvarint(msg)
			if n <= 0 || uint64(len(msg)-n) < l {
				return "", errors.New("gRPC health: malformed answer")
			}
			msg = msg[n+int(l):]
		default:
			return "", errors.New("gRPC health: unexpected field in answer")
		}
	}
	if s, ok := grpcServingStatus[status]; ok {
		return s, nil
	}
	return fmt.Sprintf("status %d", status), nil
}
