package e2e

import (
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vswitch/vswitch/internal/client"
	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/netnstest"
)

// BenchmarkJoin measures what a QEMU socket adapter costs on each data
// path, through the product: a "VM" on a qemu-stream adapter (this
// process, speaking QEMU's stream framing as QEMU does) pings a namespace
// adapter on the same private switch. On the userspace core its frames go
// socket → core → TAP; on the kernel data path socket → core → join (a
// veth the core reads and writes with AF_PACKET) → eBPF program → veth,
// and the reply back the same way. ns/op is one echo request and its
// reply. bench/join runs it.
func BenchmarkJoin(b *testing.B) {
	netnstest.RequireRoot(b)
	p := startProduct(b, "--bpf-dir", "")
	for i, dp := range []string{"userspace", "kernel"} {
		j := newJoinPeer(b, p, i, dp)
		b.Run(dp, func(b *testing.B) {
			for seq := range b.N {
				j.ping(b, uint16(seq))
			}
		})
	}
}

// joinPeer is the socket "VM" of one switch and the namespace it pings.
type joinPeer struct {
	conn     net.Conn
	src, dst frame.MAC
	srcIP    [4]byte
	dstIP    [4]byte
	buf      []byte
}

func newJoinPeer(b *testing.B, p *product, i int, datapath string) *joinPeer {
	sw, q, n := "j"+datapath[:1], "q"+datapath[:1], "n"+datapath[:1]
	p.must("switch", "add", sw, "--type", "private", "--datapath", datapath)
	ns := netnstest.New(b)
	ns.NoIPv6(b)
	sock := filepath.Join(p.dir, q+".sock")
	p.must("vm", "add", n)
	p.must("adapter", "add", n+"/eth0", "--switch", sw, "--netns", ns.Name)
	p.must("vm", "add", q)
	p.must("adapter", "add", q+"/eth0", "--switch", sw, "--qemu-stream", "--socket-path", sock)
	j := &joinPeer{srcIP: [4]byte{10, 93, byte(i), 1}, dstIP: [4]byte{10, 93, byte(i), 2}, buf: make([]byte, 65536)}
	st, err := client.New(p.sock()).State()
	if err != nil {
		b.Fatal(err)
	}
	j.src, j.dst = st.Config.Adapter(q, "eth0").MAC, st.Config.Adapter(n, "eth0").MAC
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if ns.Do(func() error { _, err := net.InterfaceByName("eth0"); return err }) == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("adapter %s/eth0 did not come up in %s:\n%s", n, ns, p.log)
		}
	}
	ns.AddAddr(b, "eth0", fmt.Sprintf("10.93.%d.2/24", i))
	// The socket VM answers no ARP: the namespace knows its MAC.
	if out, err := exec.Command("ip", "-n", ns.Name, "neigh", "replace", fmt.Sprintf("10.93.%d.1", i),
		"lladdr", j.src.String(), "dev", "eth0", "nud", "permanent").CombinedOutput(); err != nil {
		b.Fatalf("static neighbour: %v %s", err, out)
	}
	for deadline := time.Now().Add(10 * time.Second); j.conn == nil; time.Sleep(20 * time.Millisecond) {
		j.conn, _ = net.Dial("unix", sock)
		if j.conn == nil && time.Now().After(deadline) {
			b.Fatalf("QEMU socket %s: nobody listens:\n%s", sock, p.log)
		}
	}
	b.Cleanup(func() { j.conn.Close() })
	for seq := range 3 { // the first echo may wait for the namespace's routes
		j.ping(b, uint16(60000+seq))
	}
	return j
}

// ping sends one ICMP echo request and reads frames until its reply.
func (j *joinPeer) ping(b *testing.B, seq uint16) {
	f := j.echo(seq)
	msg := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(f)), uint32(len(f)))
	if _, err := j.conn.Write(append(msg, f...)); err != nil {
		b.Fatal(err)
	}
	j.conn.SetReadDeadline(time.Now().Add(2 * time.Second))
	for {
		if _, err := io.ReadFull(j.conn, j.buf[:4]); err != nil {
			b.Fatalf("echo %d: no reply: %v", seq, err)
		}
		n := int(binary.BigEndian.Uint32(j.buf[:4]))
		if _, err := io.ReadFull(j.conn, j.buf[:n]); err != nil {
			b.Fatal(err)
		}
		r := j.buf[:n]
		// Ethernet, IPv4 (20 bytes), ICMP echo reply (type 0) with our sequence number.
		if n >= 42 && binary.BigEndian.Uint16(r[12:]) == 0x0800 && r[23] == 1 && r[34] == 0 && binary.BigEndian.Uint16(r[40:]) == seq {
			return
		}
	}
}

// echo is an ICMP echo request from the socket VM to the namespace.
func (j *joinPeer) echo(seq uint16) []byte {
	f := make([]byte, 14+20+8+56)
	copy(f[0:], j.dst[:])
	copy(f[6:], j.src[:])
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0], ip[8], ip[9] = 0x45, 64, 1
	binary.BigEndian.PutUint16(ip[2:], uint16(len(f)-14))
	copy(ip[12:], j.srcIP[:])
	copy(ip[16:], j.dstIP[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip))
	icmp := f[34:]
	icmp[0] = 8
	binary.BigEndian.PutUint16(icmp[4:], uint16(os.Getpid()))
	binary.BigEndian.PutUint16(icmp[6:], seq)
	binary.BigEndian.PutUint16(icmp[2:], checksum(icmp))
	return f
}

// checksum is the Internet checksum of b.
func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
