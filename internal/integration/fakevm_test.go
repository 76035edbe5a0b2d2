package integration

import (
	"encoding/binary"
	"net"

	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/offload"
)

// fakeVM is the smallest IPv4 host that answers ARP for its address and
// ICMP echo requests to it: enough for a real namespace to ping it.
type fakeVM struct {
	mac frame.MAC
	ip  net.IP // 4 bytes
}

// answer returns the reply to an incoming frame, or nil.
func (v *fakeVM) answer(in []byte) []byte {
	e := frame.Ethernet(in)
	if e.Check() != nil || e.Tagged() {
		return nil
	}
	p := in[frame.HeaderLen:]
	switch e.EtherType() {
	case 0x0806: // ARP request for our address
		if len(p) < 28 || binary.BigEndian.Uint16(p[6:]) != 1 || !net.IP(p[24:28]).Equal(v.ip) {
			return nil
		}
		out := v.eth(e.Src(), 0x0806)
		arp := append([]byte{}, p[:8]...)
		binary.BigEndian.PutUint16(arp[6:], 2) // reply
		arp = append(arp, v.mac[:]...)
		arp = append(arp, v.ip...)
		arp = append(arp, p[8:18]...) // the asker's MAC and IP
		return append(out, arp...)
	case 0x0800: // ICMP echo request to us
		if len(p) < 20 || p[9] != 1 || !net.IP(p[16:20]).Equal(v.ip) {
			return nil
		}
		ihl := int(p[0]&0x0f) * 4
		if len(p) < ihl+8 || p[ihl] != 8 {
			return nil
		}
		ip := append([]byte{}, p[:ihl]...)
		copy(ip[16:20], p[12:16])
		copy(ip[12:16], v.ip)
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:], offload.Checksum(ip))
		icmp := append([]byte{}, p[ihl:binary.BigEndian.Uint16(p[2:])]...)
		icmp[0], icmp[2], icmp[3] = 0, 0, 0
		binary.BigEndian.PutUint16(icmp[2:], offload.Checksum(icmp))
		return append(append(v.eth(e.Src(), 0x0800), ip...), icmp...)
	}
	return nil
}

func (v *fakeVM) eth(dst frame.MAC, etherType uint16) []byte {
	b := append(append([]byte{}, dst[:]...), v.mac[:]...)
	return binary.BigEndian.AppendUint16(b, etherType)
}

// udpTo builds a UDP datagram from the VM (port 9) to dstIP:port at dstMAC.
func (v *fakeVM) udpTo(dstMAC frame.MAC, dstIP net.IP, port uint16, payload string) []byte {
	ip := []byte{0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0}
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	ip = append(append(ip, v.ip...), dstIP.To4()...)
	binary.BigEndian.PutUint16(ip[10:], offload.Checksum(ip))
	udp := make([]byte, 8)
	binary.BigEndian.PutUint16(udp[0:], 9)
	binary.BigEndian.PutUint16(udp[2:], port)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	return append(append(append(v.eth(dstMAC, 0x0800), ip...), udp...), payload...)
}
