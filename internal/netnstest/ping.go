package netnstest

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/vswitch/vswitch/internal/offload"
)

// Ping sends ICMP echo requests to an IPv4 address from inside the
// namespace, one a second-tenth for up to timeout, and reports whether a
// reply came back. The first request may go unanswered while ARP resolves.
func (n *NS) Ping(t testing.TB, dst string, timeout time.Duration) error {
	t.Helper()
	ip := net.ParseIP(dst).To4()
	if ip == nil {
		t.Fatalf("ping %q: not an IPv4 address", dst)
	}
	c := n.ListenPacket(t, "ip4:icmp", "0.0.0.0")
	defer c.Close()
	id := uint16(seq.Add(1))
	deadline := time.Now().Add(timeout)
	buf := make([]byte, 1500)
	for s := uint16(1); time.Now().Before(deadline); s++ {
		if _, err := c.WriteTo(echoRequest(id, s), &net.IPAddr{IP: ip}); err != nil {
			return fmt.Errorf("ping %s from %s: %w", dst, n, err)
		}
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		for {
			m, from, err := c.ReadFrom(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				return fmt.Errorf("ping %s from %s: %w", dst, n, err)
			}
			// A raw ip4:icmp socket delivers the ICMP message without the IP header.
			if m >= 8 && buf[0] == 0 && binary.BigEndian.Uint16(buf[4:]) == id &&
				from.(*net.IPAddr).IP.Equal(ip) {
				return nil
			}
		}
	}
	return fmt.Errorf("ping %s from %s: no reply within %v", dst, n, timeout)
}

func echoRequest(id, seq uint16) []byte {
	b := make([]byte, 8+32)
	b[0] = 8 // echo request
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], "vswitch netnstest ping payload..")
	binary.BigEndian.PutUint16(b[2:], offload.Checksum(b))
	return b
}
