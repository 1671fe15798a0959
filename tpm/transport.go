package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	"github.com/google/go-tpm/tpm2/transport/linuxtpm"

	"github.com/ggcore/ggcore/internal/keyspec"
)

const (
	// headerSize is the size of a TPM 2.0 command or response header:
	// tag (2 bytes), size (4 bytes), command or response code (4 bytes).
	headerSize = 10
	// maxResponse bounds a response's size. TPMs answer with at most a
	// few kilobytes (TPM_PT_MAX_RESPONSE_SIZE, 4 KiB on most parts).
	maxResponse = 64 << 10
	// commandTimeout bounds one command on a socket. RSA-3072 key
	// generation is the slowest command ggcore sends; real TPMs take up
	// to about a minute for it.
	commandTimeout = 3 * time.Minute
	// firstCommandTimeout bounds the first command after connecting.
	// swtpm accepts one client at a time: a second client connects but
	// is not served until the first one leaves, which would otherwise
	// look like a hang.
	firstCommandTimeout = 10 * time.Second
)

// openTransport connects to d and returns the transport. Connection
// failures wrap ErrUnreachable. A socket gets first to answer its first
// command.
func openTransport(d keyspec.TPMDevice, first time.Duration) (transport.TPMCloser, error) {
	switch d.Network {
	case keyspec.TPMNetworkUnix, keyspec.TPMNetworkTCP:
		c, err := net.DialTimeout(d.Network, d.Address, first)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
		}
		return newStream(c, first), nil
	case keyspec.TPMNetworkDevice:
		tr, err := linuxtpm.Open(d.Address)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnreachable, err)
		}
		return tr, nil
	}
	return nil, fmt.Errorf("unknown TPM network %q", d.Network)
}

// stream sends raw TPM 2.0 commands over a connected socket and reads
// raw responses, as swtpm's --server socket expects (type=unixio and
// type=tcp alike; no Microsoft-simulator framing). The connection stays
// open: swtpm serves one client at a time and keeps its state across
// commands. A stream is not safe for concurrent use; TPM serialises.
type stream struct {
	conn         net.Conn
	first        bool          // no command answered yet
	firstTimeout time.Duration // bound on the first command
	err          error         // sticky: the byte stream is out of step after a failure
}

func newStream(c net.Conn, first time.Duration) *stream {
	return &stream{conn: c, first: true, firstTimeout: first}
}

// Send implements transport.TPM.
func (s *stream) Send(cmd []byte) ([]byte, error) {
	if s.err != nil {
		return nil, s.err
	}
	rsp, err := s.send(cmd)
	if err != nil {
		// A half-written command or half-read response leaves the
		// stream unusable; say so on every later command.
		s.err = fmt.Errorf("connection broken by an earlier error: %w", err)
		s.conn.Close()
		return nil, err
	}
	return rsp, nil
}

func (s *stream) send(cmd []byte) ([]byte, error) {
	timeout := commandTimeout
	if s.first {
		timeout = s.firstTimeout
	}
	if err := s.conn.SetDeadline(time.Now().Add(timeout)); err != nil {
		return nil, err
	}
	if _, err := s.conn.Write(cmd); err != nil {
		return nil, fmt.Errorf("send command: %w", err)
	}
	var hdr [headerSize]byte
	if _, err := io.ReadFull(s.conn, hdr[:]); err != nil {
		if s.first && isTimeout(err) {
			return nil, fmt.Errorf("no answer within %v (swtpm serves one client at a time: is another process connected?): %w", timeout, err)
		}
		return nil, fmt.Errorf("read response header: %w", err)
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < headerSize || size > maxResponse {
		return nil, fmt.Errorf("response size %d out of range [%d, %d]", size, headerSize, maxResponse)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr[:])
	if _, err := io.ReadFull(s.conn, rsp[headerSize:]); err != nil {
		return nil, fmt.Errorf("read response body: %w", err)
	}
	s.first = false
	return rsp, nil
}

// Close implements io.Closer.
func (s *stream) Close() error {
	err := s.conn.Close()
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
