// Package guestlab boots the test guest that lab/build-guest.sh builds (the
// Debian kernel and busybox) under QEMU, for end-to-end tests with real
// guest network stacks and drivers: virtio-net for a synthetic adapter,
// the emulated DEC 21143 (tulip) for a legacy one. A guest configures eth0
// (and VLAN sub-interfaces) from its kernel command line, runs one command,
// prints its exit code on the serial console and powers off.
package guestlab

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/qemuargs"
)

// Lab is a built guest.
type Lab struct {
	Kernel, Initrd string
	BzImage        string // the compressed kernel, for network boot
}

// DefaultDir is where the lab is cached between runs.
const DefaultDir = "/var/cache/vswitch-lab"

// Build builds (or finds cached) the guest; it needs root the first time
// (apt-get), and skips the test when that is not possible.
func Build(t testing.TB) Lab {
	t.Helper()
	dir := os.Getenv("VSWITCH_LAB")
	if dir == "" {
		dir = DefaultDir
	}
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "lab", "build-guest.sh")
	if os.Geteuid() != 0 {
		if _, err := os.Stat(filepath.Join(dir, "stamp")); err != nil {
			t.Skip("skipped: the guest lab is not built and building it needs root (apt-get); CI runs as root")
		}
	}
	out, err := exec.Command("bash", script, dir).CombinedOutput()
	if err != nil {
		t.Fatalf("lab/build-guest.sh: %v\n%s", err, out)
	}
	return Lab{Kernel: filepath.Join(dir, "vmlinux"), Initrd: filepath.Join(dir, "initrd.gz"), BzImage: filepath.Join(dir, "vmlinuz")}
}

// Adapter types, as vswitch's config names them.
const (
	Synthetic = config.Synthetic // virtio-net
	Legacy    = config.Legacy    // QEMU's tulip (DEC 21143)
)

// NIC is one guest adapter: on a QEMU "-netdev stream" unix socket, or on
// a TAP that QEMU opens itself ("-netdev tap,ifname=...").
type NIC struct {
	Type   config.AdapterType
	MAC    frame.MAC
	Socket string
	TAP    string
}

// Guest says how to boot one guest.
type Guest struct {
	Name  string
	IP    string // eth0's address, e.g. "10.0.0.1/24"
	VLANs string // e.g. "10:10.0.10.1/24,20:10.0.20.1/24"
	Cmd   string // shell command run after setup
	NIC   NIC
	// Netns runs QEMU inside this network namespace (ip netns name), where
	// a TAP NIC is created.
	Netns string
	// Boot is how the guest boots: "" the lab kernel directly; BootIPXE
	// ipxe.lkrn, which network-boots through any NIC iPXE drives (a
	// legacy tulip adapter has no option ROM); BootROM the NIC's own
	// option ROM (a synthetic adapter's virtio iPXE ROM).
	Boot string
}

// Network boot modes of Guest.Boot.
const (
	BootIPXE = "ipxe.lkrn"
	BootROM  = "rom"
)

// Args returns QEMU's arguments for g.
func (l Lab) Args(g Guest) []string {
	cmdline := Cmdline(g)
	args := []string{"-machine", "q35,accel=tcg", "-m", "256", "-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio"}
	switch g.Boot {
	case BootIPXE:
		args = append(args, "-kernel", qemuargs.IPXELkrn)
	case BootROM:
		args = append(args, "-boot", "order=n")
	default:
		args = append(args, "-kernel", l.Kernel, "-initrd", l.Initrd, "-append", cmdline)
	}
	// The NIC is wired as vswitch wires a VM's adapter (qemuargs); only a
	// guest booting from the NIC's own ROM keeps it.
	a := config.Adapter{VM: g.Name, Name: "eth0", MAC: g.NIC.MAC, Type: g.NIC.Type,
		Attachment: config.Attachment{Kind: config.AttachQEMUStream}}
	if g.NIC.TAP != "" {
		a.Attachment = config.Attachment{Kind: config.AttachTAP, Device: g.NIC.TAP}
	}
	nic, err := qemuargs.Args(a, g.NIC.Socket, g.Boot == BootROM)
	if err != nil {
		panic(err) // both attachments are for QEMU
	}
	return append(args, nic...)
}

// Cmdline is the kernel command line a guest's lab kernel gets (for
// network boot scripts that pass it themselves).
func Cmdline(g Guest) string {
	c := "console=ttyS0 quiet panic=-1"
	if g.IP != "" {
		c += " vs.ip=" + g.IP
	}
	if g.VLANs != "" {
		c += " vs.vlans=" + g.VLANs
	}
	if g.Cmd != "" {
		c += " vs.cmd=" + base64.StdEncoding.EncodeToString([]byte(g.Cmd))
	}
	return c
}

// Run is a booted guest.
type Run struct {
	Guest   Guest
	cmd     *exec.Cmd
	mu      sync.Mutex
	console bytes.Buffer
	done    chan struct{} // closed when QEMU has exited
}

type lockedWriter struct{ r *Run }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.r.mu.Lock()
	defer w.r.mu.Unlock()
	return w.r.console.Write(b)
}

// Start boots g; the QEMU process is ended (by its PID) when the test ends.
func (l Lab) Start(t testing.TB, g Guest) *Run {
	t.Helper()
	r := &Run{Guest: g, done: make(chan struct{})}
	r.cmd = exec.Command("qemu-system-x86_64", l.Args(g)...)
	if g.Netns != "" {
		r.cmd = exec.Command("ip", append([]string{"netns", "exec", g.Netns, "qemu-system-x86_64"}, l.Args(g)...)...)
	}
	r.cmd.Stdout, r.cmd.Stderr = lockedWriter{r}, lockedWriter{r}
	if err := r.cmd.Start(); err != nil {
		t.Fatalf("start QEMU for %s: %v", g.Name, err)
	}
	go func() {
		r.cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			r.cmd.Process.Kill()
			<-r.done
		}
	})
	return r
}

// Console returns what the guest printed so far.
func (r *Run) Console() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.console.String()
}

var resultRE = regexp.MustCompile(`VSWITCH-RESULT rc=(\d+)`)

// Wait waits for the guest to power off and returns its command's exit code.
func (r *Run) Wait(timeout time.Duration) (int, error) {
	select {
	case <-r.done:
	case <-time.After(timeout):
		r.cmd.Process.Kill()
		return -1, fmt.Errorf("guest %s did not finish within %v; console:\n%s", r.Guest.Name, timeout, r.Console())
	}
	m := resultRE.FindStringSubmatch(r.Console())
	if m == nil {
		return -1, fmt.Errorf("guest %s printed no result; console:\n%s", r.Guest.Name, r.Console())
	}
	rc, _ := strconv.Atoi(m[1])
	return rc, nil
}

var driverRE = regexp.MustCompile(`VSWITCH-DRIVER eth0 (\S+)`)

// Driver returns the kernel driver bound to the guest's eth0.
func (r *Run) Driver() string {
	if m := driverRE.FindStringSubmatch(r.Console()); m != nil {
		return m[1]
	}
	return ""
}
