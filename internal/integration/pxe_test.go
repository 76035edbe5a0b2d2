package integration

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vswitch/vswitch/internal/guestlab"
	"github.com/vswitch/vswitch/internal/l2"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Issue 5, test 6: network boot over the switch. A namespace on the same
// switch serves DHCP and TFTP (dnsmasq); a legacy guest (tulip, no option
// ROM) boots Debian's ipxe.lkrn, a synthetic guest its virtio NIC's iPXE
// ROM; both fetch the lab kernel and initrd over TFTP through vswitch and
// print the marker. No QEMU user networking anywhere.
func TestGuestsNetworkBoot(t *testing.T) { onBothPaths(t, guestsNetworkBoot) }

func guestsNetworkBoot(t *testing.T, newSwitch func(string) testSwitch) {
	lab := guestlab.Build(t)
	sw := newSwitch("sw-pxe")
	server := sw.station(t, "pxe-server", "10.89.0.1/24", l2.PortConfig{MAC: vmMAC(0x80), SpoofGuard: true})
	root := t.TempDir()
	for _, f := range []string{lab.BzImage, lab.Initrd} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(root, filepath.Base(f)), b, 0o644)
	}
	script := "#!ipxe\nkernel tftp://10.89.0.1/vmlinuz " + guestlab.Cmdline(guestlab.Guest{Cmd: "echo booted from the network; exit 0"}) +
		"\ninitrd tftp://10.89.0.1/initrd.gz\nboot\n"
	os.WriteFile(filepath.Join(root, "boot.ipxe"), []byte(script), 0o644)
	log := &syncBuffer{}
	dns := exec.Command("ip", "netns", "exec", server.ns.Name, "dnsmasq", "--no-daemon", "--port=0", "--user=root", "--group=root",
		"--interface=eth0", "--bind-interfaces", "--dhcp-range=10.89.0.50,10.89.0.99,255.255.255.0,5m",
		"--dhcp-leasefile="+filepath.Join(root, "leases"), "--enable-tftp", "--tftp-root="+root,
		"--dhcp-boot=boot.ipxe", "--log-dhcp", "--log-facility=-", "--pid-file=")
	dns.Stdout, dns.Stderr = log, log
	if err := dns.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dns.Process.Kill(); dns.Wait() })

	legMAC, synMAC := vmMAC(0x81), vmMAC(0x82)
	legNIC, legNS := sw.guest(t, "legacy", guestlab.Legacy, legMAC, l2.PortConfig{})
	synNIC, synNS := sw.guest(t, "synthetic", guestlab.Synthetic, synMAC, l2.PortConfig{})
	guests := []*guestlab.Run{
		lab.Start(t, guestlab.Guest{Name: "legacy-pxe", Boot: guestlab.BootIPXE, NIC: legNIC, Netns: legNS}),
		lab.Start(t, guestlab.Guest{Name: "synthetic-pxe", Boot: guestlab.BootROM, NIC: synNIC, Netns: synNS}),
	}
	start := time.Now()
	for _, g := range guests {
		rc, err := g.Wait(4 * time.Minute)
		if err != nil || rc != 0 {
			t.Fatalf("guest %s: rc %d, %v\ndnsmasq:\n%s", g.Guest.Name, rc, err, log.String())
		}
		if !strings.Contains(g.Console(), "booted from the network") {
			t.Fatalf("guest %s did not run the network-booted kernel's command; console:\n%s", g.Guest.Name, g.Console())
		}
	}
	t.Logf("both guests network-booted in %v", time.Since(start).Round(time.Millisecond))
	if n := strings.Count(log.String(), "vmlinuz"); n < 2 {
		t.Fatalf("dnsmasq did not serve the kernel to both guests:\n%s", log.String())
	}
}
