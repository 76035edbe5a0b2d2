package netnstest

import (
	"encoding/binary"
	"net"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Raw is an AF_PACKET socket on one link of a namespace, for sending
// hand-made frames and capturing what arrives. The kernel strips 802.1Q
// tags on receive; Recv puts them back from PACKET_AUXDATA, so a test sees
// the frame as it was on the wire.
type Raw struct {
	fd int
}

// Raw opens a raw socket bound to link; it ignores its own transmissions.
func (n *NS) Raw(t testing.TB, link string) *Raw {
	t.Helper()
	var fd int
	err := n.Do(func() error {
		ifi, err := net.InterfaceByName(link)
		if err != nil {
			return err
		}
		all := uint16(unix.ETH_P_ALL)<<8 | uint16(unix.ETH_P_ALL)>>8
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(all)); err != nil {
			return err
		}
		for _, o := range []int{unix.PACKET_AUXDATA, unix.PACKET_IGNORE_OUTGOING} {
			if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, o, 1); err != nil {
				return err
			}
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: all, Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatalf("raw socket on %s in %s: %v", link, n, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return &Raw{fd: fd}
}

// Send transmits a frame as it is, tag included.
func (r *Raw) Send(t testing.TB, f []byte) {
	t.Helper()
	if _, err := unix.Write(r.fd, f); err != nil {
		t.Fatalf("raw send: %v", err)
	}
}

// Recv returns the next frame within timeout, with its 802.1Q tag (if any)
// back in place, or nil.
func (r *Raw) Recv(timeout time.Duration) []byte {
	deadline := time.Now().Add(timeout)
	buf, oob := make([]byte, 70000), make([]byte, 256)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil
		}
		fds := []unix.PollFd{{Fd: int32(r.fd), Events: unix.POLLIN}}
		if n, _ := unix.Poll(fds, int(left.Milliseconds())+1); n <= 0 {
			continue
		}
		n, oobn, _, _, err := unix.Recvmsg(r.fd, buf, oob, unix.MSG_DONTWAIT)
		if err != nil {
			continue
		}
		f := append([]byte(nil), buf[:n]...)
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		for _, m := range msgs {
			if m.Header.Level != unix.SOL_PACKET || m.Header.Type != unix.PACKET_AUXDATA ||
				len(m.Data) < int(unsafe.Sizeof(unix.TpacketAuxdata{})) {
				continue
			}
			aux := (*unix.TpacketAuxdata)(unsafe.Pointer(&m.Data[0]))
			if aux.Status&unix.TP_STATUS_VLAN_VALID != 0 && len(f) >= 12 {
				tpid := uint16(0x8100)
				if aux.Status&unix.TP_STATUS_VLAN_TPID_VALID != 0 && aux.Vlan_tpid != 0 {
					tpid = aux.Vlan_tpid
				}
				tag := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, tpid), aux.Vlan_tci)
				f = append(f[:12], append(tag, f[12:]...)...)
			}
		}
		return f
	}
}

// RecvAll collects the frames that arrive within d.
func (r *Raw) RecvAll(d time.Duration) [][]byte {
	var out [][]byte
	deadline := time.Now().Add(d)
	for {
		f := r.Recv(time.Until(deadline))
		if f == nil {
			return out
		}
		out = append(out, f)
	}
}
