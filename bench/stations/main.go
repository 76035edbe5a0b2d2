// Command stations fills a switch's MAC table for bench/compare's scale
// row: from an interface (the workload end of an adapter whose spoofing
// guard is off) it sends one frame from each of n distinct station
// addresses, addressed to the interface's own MAC, which the switch holds
// as the port's static entry: each frame makes one learned entry and
// then goes nowhere (a frame to the port it came from is filtered).
//
//	ip netns exec NS stations -dev eth0 -n 1000000
package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

func main() {
	dev := flag.String("dev", "eth0", "the interface to send from")
	n := flag.Int("n", 1000000, "distinct source addresses")
	flag.Parse()
	if err := run(*dev, *n); err != nil {
		fmt.Fprintln(os.Stderr, "stations:", err)
		os.Exit(1)
	}
}

func run(dev string, n int) error {
	ifi, err := net.InterfaceByName(dev)
	if err != nil {
		return err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, 0) // send only: no protocol, nothing received
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	to := &unix.SockaddrLinklayer{Ifindex: ifi.Index}
	f := make([]byte, 60)
	copy(f, ifi.HardwareAddr)
	f[6], f[7] = 0x06, 0x5b // locally administered unicast sources: 06:5b + a 32-bit number
	binary.BigEndian.PutUint16(f[12:], 0x88b5)
	start := time.Now()
	for i := range n {
		binary.BigEndian.PutUint32(f[8:], uint32(i))
		for {
			err := unix.Sendto(fd, f, 0, to)
			if err == nil {
				break
			}
			if err != unix.ENOBUFS && err != unix.EAGAIN {
				return fmt.Errorf("frame %d: %w", i, err)
			}
			time.Sleep(time.Millisecond) // the device's queue is full: let it drain
		}
	}
	fmt.Printf("%d stations sent from %s in %.2f s\n", n, dev, time.Since(start).Seconds())
	return nil
}
