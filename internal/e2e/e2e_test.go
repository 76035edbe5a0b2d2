package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vswitch/vswitch/internal/api"
	"github.com/vswitch/vswitch/internal/guestlab"
	"github.com/vswitch/vswitch/internal/hostnet"
	"github.com/vswitch/vswitch/internal/netnstest"
)

// bins builds vswitchd and vswitchctl once per test binary run.
func bins(t testing.TB) (vswitchd, vswitchctl string) {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir, "../../cmd/vswitchd", "../../cmd/vswitchctl")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return filepath.Join(dir, "vswitchd"), filepath.Join(dir, "vswitchctl")
}

// product is a running vswitchd (in its own namespace) and a vswitchctl.
type product struct {
	t          testing.TB
	daemonNS   *netnstest.NS
	vswitchd   string
	vswitchctl string
	dir        string
	cmd        *exec.Cmd
	log        *logBuffer
	args       []string // more vswitchd flags
}

// logBuffer is the daemon's output: written by exec's copier while tests
// read it.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (p *product) start() {
	p.t.Helper()
	p.log = &logBuffer{}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", p.daemonNS.Name, p.vswitchd,
		"--store", filepath.Join(p.dir, "vswitch.db"), "--socket", p.sock()}, p.args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if code, _, _ := p.ctl("switch", "ls"); code == 0 {
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("vswitchd did not come up:\n%s", p.log)
		}
	}
}

func (p *product) sock() string { return filepath.Join(p.dir, "vswitchd.sock") }

// stopVMs ends the QEMUs that the daemon started and a failed test left
// running: those whose PID file is in the daemon's vm directory and whose
// command line names it.
func (p *product) stopVMs() {
	files, _ := filepath.Glob(filepath.Join(p.dir, "vm", "*.pid"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid <= 0 {
			continue
		}
		if cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); bytes.Contains(cmd, []byte(f)) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// kill9 ends the daemon the hard way (it started it, by PID).
func (p *product) kill9() {
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.cmd.Wait()
	p.cmd = nil
}

func (p *product) ctl(args ...string) (int, string, string) {
	var o, e bytes.Buffer
	cmd := exec.Command(p.vswitchctl, append([]string{"--socket", p.sock()}, args...)...)
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		p.t.Fatal(err)
	}
	return code, o.String(), e.String()
}

func (p *product) must(args ...string) string {
	p.t.Helper()
	code, out, errOut := p.ctl(args...)
	if code != 0 {
		p.t.Fatalf("vswitchctl %s: exit %d\n%s%s\ndaemon log:\n%s", strings.Join(args, " "), code, out, errOut, p.log)
	}
	return out
}

// waitExited waits (up to 2 minutes) for a VM that vswitchd runs to exit,
// as vswitchctl -o json vm ls reports it.
func (p *product) waitExited(name string) api.VMStatus {
	p.t.Helper()
	var st api.VMStatus
	for deadline := time.Now().Add(2 * time.Minute); st.State != "exited" && time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		st = p.vmStatus(name)
	}
	return st
}

// vmStatus is a VM's row of vswitchctl -o json vm ls.
func (p *product) vmStatus(name string) api.VMStatus {
	p.t.Helper()
	var all []api.VMStatus
	json.Unmarshal([]byte(p.must("-o", "json", "vm", "ls")), &all)
	for _, v := range all {
		if v.Name == name {
			return v
		}
	}
	return api.VMStatus{}
}

type vm struct {
	ns *netnstest.NS
	ip string
}

// matrix pings every pair at once and returns who reaches whom as text.
func matrix(t *testing.T, vms map[string]vm, names []string) string {
	type pair struct{ from, to string }
	var pairs []pair
	for _, from := range names {
		for _, to := range names {
			if from != to {
				pairs = append(pairs, pair{from, to})
			}
		}
	}
	ok := make([]bool, len(pairs))
	var wg sync.WaitGroup
	for i, pr := range pairs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok[i] = vms[pr.from].ns.Ping(t, vms[pr.to].ip, 2*time.Second) == nil
		}()
	}
	wg.Wait()
	var b strings.Builder
	for i, pr := range pairs {
		fmt.Fprintf(&b, "%s→%s %v\n", pr.from, pr.to, ok[i])
	}
	return b.String()
}

func TestProductEndToEnd(t *testing.T) { productEndToEnd(t, "userspace") }

// TestProductEndToEndKernel is the same product, every switch on the
// kernel data path: the eBPF program on veth, TAP and NIC ports, the QEMU
// stream adapter through the join to a core of its own.
func TestProductEndToEndKernel(t *testing.T) { productEndToEnd(t, "kernel") }

func productEndToEnd(t *testing.T, datapath string) {
	netnstest.RequireRoot(t)
	vswitchd, vswitchctl := bins(t)
	p := &product{t: t, daemonNS: netnstest.New(t), vswitchd: vswitchd, vswitchctl: vswitchctl, dir: t.TempDir()}
	lan := netnstest.New(t) // the physical LAN
	netnstest.Veth(t, p.daemonNS, "nic0", lan, "eth0")
	lan.AddAddr(t, "eth0", "10.70.0.100/24")
	// The daemon's host: nic0 has addresses and a route of its own, which the
	// external switch's host adapter takes over and gives back.
	p.daemonNS.AddAddr(t, "nic0", "10.70.0.200/24")
	if err := p.daemonNS.Do(func() error {
		_, dst, _ := net.ParseCIDR("203.0.113.0/24")
		nic, err := netlink.LinkByName("nic0")
		if err != nil {
			return err
		}
		return netlink.RouteAdd(&netlink.Route{LinkIndex: nic.Attrs().Index, Dst: dst, Gw: net.ParseIP("10.70.0.100"), Priority: 77})
	}); err != nil {
		t.Fatal(err)
	}
	mover := &hostnet.Mover{Namespace: p.daemonNS.Name}
	hostBefore, err := mover.Snapshot("nic0")
	if err != nil {
		t.Fatal(err)
	}
	vms := map[string]vm{}
	for name, ip := range map[string]string{"a": "10.70.0.1", "b": "10.70.0.2", "c": "10.70.0.3", "d": "10.70.0.4", "e": "10.70.0.5"} {
		vms[name] = vm{ns: netnstest.New(t), ip: ip}
	}
	vms["lan"] = vm{ns: lan, ip: "10.70.0.100"}
	vms["host"] = vm{ns: p.daemonNS, ip: "10.70.0.200"}
	t.Cleanup(func() {
		if p.cmd != nil {
			p.kill9()
		}
		p.stopVMs()
	})
	p.start()

	// A user who is not root is told that the API socket is root's, not
	// that vswitchd is down.
	binDir, err := os.MkdirTemp("", "vswitchctl-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(binDir) })
	ctlBin, _ := os.ReadFile(vswitchctl)
	if err := errors.Join(os.Chmod(binDir, 0o755), os.WriteFile(filepath.Join(binDir, "vswitchctl"), ctlBin, 0o755)); err != nil {
		t.Fatal(err)
	}
	var denied bytes.Buffer
	asNobody := exec.Command(filepath.Join(binDir, "vswitchctl"), "--socket", p.sock(), "switch", "ls")
	asNobody.Stderr = &denied
	asNobody.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if err := asNobody.Run(); asNobody.ProcessState == nil || asNobody.ProcessState.ExitCode() != 4 || !strings.Contains(denied.String(), "permission denied") {
		t.Fatalf("vswitchctl as a user who is not root: %v\n%s", err, &denied)
	}

	if out := p.must("switch", "add", "ext0", "--type", "external", "--uplink", "nic0", "--datapath", datapath); !strings.Contains(out, "moved host identity nic0 -> ext0") {
		t.Fatalf("creating the external switch did not move the host's identity:\n%s", out)
	} else {
		t.Logf("external switch created:\n%s", out)
	}
	if got, _ := mover.Snapshot("ext0"); got.String() != hostBefore.String() {
		t.Fatalf("host adapter ext0:\n%s\nwant nic0's identity:\n%s", got, hostBefore)
	}
	// A failure in the middle of creating an external switch (its host
	// adapter's name is taken by a veth) leaves the host as it was.
	lan2 := netnstest.New(t)
	netnstest.Veth(t, p.daemonNS, "nic1", lan2, "eth0")
	netnstest.Veth(t, p.daemonNS, "ext1", nil, netnstest.UniqueName("vth"))
	p.daemonNS.AddAddr(t, "nic1", "10.71.0.200/24")
	nic1Before, _ := mover.Snapshot("nic1")
	code, out, errOut := p.ctl("switch", "add", "ext1", "--type", "external", "--uplink", "nic1", "--datapath", datapath)
	if code != 1 || !strings.Contains(errOut, "failed step: open host") && !strings.Contains(errOut, "failed step: make the device of host") {
		t.Fatalf("creating a switch whose host adapter cannot be made: exit %d\n%s%s", code, out, errOut)
	}
	if got, _ := mover.Snapshot("nic1"); got.String() != nic1Before.String() {
		t.Fatalf("nic1 after the failed creation:\n%s\nwant as before:\n%s", got, nic1Before)
	}
	if ls := p.must("switch", "ls"); strings.Contains(ls, "ext1") || p.daemonNS.Link(t, "ext1").Type() != "veth" {
		t.Fatalf("the failed switch was kept, or the veth touched:\n%s", ls)
	}
	p.must("switch", "add", "int0", "--type", "internal", "--datapath", datapath)
	p.must("switch", "add", "priv0", "--type", "private", "--datapath", datapath)
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		p.must("vm", "add", name)
	}
	p.must("adapter", "add", "a/eth0", "--switch", "int0", "--netns", vms["a"].ns.Name)
	p.must("adapter", "add", "b/eth0", "--switch", "int0", "--netns", vms["b"].ns.Name)
	p.must("adapter", "add", "c/eth0", "--switch", "int0", "--netns", vms["c"].ns.Name)
	p.must("adapter", "add", "d/eth0", "--switch", "priv0", "--netns", vms["d"].ns.Name)
	p.must("adapter", "add", "e/eth0", "--switch", "ext0", "--netns", vms["e"].ns.Name)
	p.must("adapter", "vlan", "a/eth0", "--access", "10")
	p.must("adapter", "vlan", "b/eth0", "--access", "10")
	p.must("adapter", "vlan", "c/eth0", "--access", "20")
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		vms[name].ns.AddAddr(t, "eth0", vms[name].ip+"/24")
	}
	topo := p.must("topology")
	for _, want := range []string{"ext0 (external", "uplink nic0", "a/eth0", "[access 10]", "d/eth0"} {
		if !strings.Contains(topo, want) {
			t.Fatalf("topology lacks %q:\n%s", want, topo)
		}
	}
	names := []string{"a", "b", "c", "d", "e", "lan", "host"}
	want := strings.Join([]string{
		"a→b true", "a→c false", "a→d false", "a→e false", "a→lan false", "a→host false",
		"b→a true", "b→c false", "b→d false", "b→e false", "b→lan false", "b→host false",
		"c→a false", "c→b false", "c→d false", "c→e false", "c→lan false", "c→host false",
		"d→a false", "d→b false", "d→c false", "d→e false", "d→lan false", "d→host false",
		"e→a false", "e→b false", "e→c false", "e→d false", "e→lan true", "e→host true",
		"lan→a false", "lan→b false", "lan→c false", "lan→d false", "lan→e true", "lan→host true",
		"host→a false", "host→b false", "host→c false", "host→d false", "host→e true", "host→lan true",
	}, "\n") + "\n"
	if got := matrix(t, vms, names); got != want {
		t.Fatalf("ping matrix\n%s\nwant\n%s", got, want)
	}

	// A VM that vswitchd runs with QEMU: the lab guest on a qemu-stream
	// adapter in VLAN 10 pings VM a, then powers off.
	lab := guestlab.Build(t)
	p.must("vm", "add", "g", "--kernel", lab.Kernel, "--initrd", lab.Initrd, "--memory", "192", "--append",
		guestlab.Cmdline(guestlab.Guest{IP: "10.70.0.9/24",
			Cmd: "for i in $(seq 30); do ping -c 1 -W 1 10.70.0.1 >/dev/null && break; done; ping -c 2 -W 2 10.70.0.1"}))
	p.must("adapter", "add", "g/eth0", "--switch", "int0", "--qemu-stream", "--socket-path", filepath.Join(p.dir, "g-eth0.sock"))
	p.must("adapter", "vlan", "g/eth0", "--access", "10")
	if strings.Contains(p.must("stats", "int0"), "g/eth0") {
		t.Fatal("the adapter of VM g is up before the VM runs")
	}
	if out := p.must("vm", "start", "g"); !strings.Contains(out, "VM g running") || !strings.Contains(out, "TCG") && !strings.Contains(out, "KVM") {
		t.Fatalf("vm start: %s", out)
	}
	if !strings.Contains(p.must("stats", "int0"), "g/eth0") {
		t.Fatal("the adapter of VM g did not come up with it")
	}
	st := p.waitExited("g")
	if console := p.must("vm", "console", "g"); st.State != "exited" || st.ExitCode != 0 || !strings.Contains(console, "VSWITCH-RESULT rc=0") {
		t.Fatalf("VM g: %+v; console:\n%s", st, console)
	}
	for deadline := time.Now().Add(5 * time.Second); strings.Contains(p.must("stats", "int0"), "g/eth0"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the adapter of VM g did not go when it powered off")
		}
	}
	p.must("vm", "rm", "g", "--force")

	// The default attachment: a TAP that vswitchd makes and QEMU attaches to by name.
	p.must("vm", "add", "h", "--kernel", lab.Kernel, "--initrd", lab.Initrd, "--memory", "192", "--append",
		guestlab.Cmdline(guestlab.Guest{IP: "10.70.0.10/24",
			Cmd: "for i in $(seq 30); do ping -c 1 -W 1 10.70.0.2 >/dev/null && break; done; ping -c 2 -W 2 10.70.0.2"}))
	p.must("adapter", "add", "h/eth0", "--switch", "int0", "--type", "legacy")
	p.must("adapter", "vlan", "h/eth0", "--access", "10")
	p.must("vm", "start", "h")
	st = p.waitExited("h")
	if console := p.must("vm", "console", "h"); st.ExitCode != 0 || !strings.Contains(console, "VSWITCH-DRIVER eth0 tulip") || !strings.Contains(console, "VSWITCH-RESULT rc=0") {
		t.Fatalf("VM h on its default TAP: %+v; console:\n%s", st, console)
	}
	p.must("vm", "rm", "h", "--force")

	// A VM that runs while vswitchd is killed is adopted by the next
	// vswitchd: vm ls shows it running (same QEMU), its TAP adapter comes
	// back and the guest's pings go on; vm stop still stops it.
	p.must("vm", "add", "r", "--kernel", lab.Kernel, "--initrd", lab.Initrd, "--memory", "192", "--append",
		guestlab.Cmdline(guestlab.Guest{IP: "10.70.0.11/24",
			Cmd: "i=0; while :; do i=$((i+1)); ping -c 1 -W 1 10.70.0.1 >/dev/null && echo PING-OK-$i; sleep 0.3; done"}))
	p.must("adapter", "add", "r/eth0", "--switch", "int0")
	p.must("adapter", "vlan", "r/eth0", "--access", "10")
	p.must("vm", "start", "r")
	pings := func() int { // the guest's last successful ping
		n := 0
		for _, f := range strings.Fields(p.must("vm", "console", "r")) {
			if v, ok := strings.CutPrefix(f, "PING-OK-"); ok {
				fmt.Sscan(v, &n)
			}
		}
		return n
	}
	waitPings := func(after int, when string) int {
		for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(200 * time.Millisecond) {
			if n := pings(); n > after+2 {
				return n
			}
			if time.Now().After(deadline) {
				t.Fatalf("VM r's pings did not go on %s (last %d); console:\n%s\ndaemon log:\n%s", when, pings(), p.must("vm", "console", "r"), p.log)
			}
		}
	}
	before := waitPings(0, "after it started")
	vmState := p.vmStatus
	running := vmState("r")

	// kill -9 and start again: everything comes back, no address lost.
	p.kill9()
	p.start()
	if st := vmState("r"); st.State != "running" || st.PID != running.PID || !strings.Contains(st.Note, "adopted") {
		t.Fatalf("VM r after the restart: %+v; want running as PID %d, adopted", st, running.PID)
	}
	waitPings(before, "after vswitchd was killed and started again")
	if code, out, errOut := p.ctl("vm", "stop", "r"); code != 0 || vmState("r").State != "exited" {
		t.Fatalf("vm stop of the adopted VM: exit %d %s%s %+v", code, out, errOut, vmState("r"))
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", running.PID)); err == nil && !strings.Contains(string(b), ") Z ") {
		t.Fatalf("QEMU of VM r (PID %d) still runs after vm stop: %s", running.PID, b)
	}
	p.must("vm", "rm", "r", "--force")
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		if got := vms[name].ns.Addrs(t, "eth0"); len(got) == 0 || got[0] != vms[name].ip+"/24" {
			t.Fatalf("VM %s lost its address over the restart: %v", name, got)
		}
	}
	if got := matrix(t, vms, names); got != want {
		t.Fatalf("ping matrix after kill -9 and restart\n%s\nwant\n%s", got, want)
	}

	// Remove everything: the VMs' interfaces go, the host namespace is as before.
	p.must("switch", "rm", "ext0", "--force")
	p.must("switch", "rm", "int0", "--force")
	p.must("switch", "rm", "priv0", "--force")
	for _, name := range []string{"a", "b", "c", "d", "e"} {
		if err := vms[name].ns.Do(func() error { _, err := netlink.LinkByName("eth0"); return err }); err == nil {
			t.Fatalf("VM %s still has eth0", name)
		}
	}
	if err := p.daemonNS.Do(func() error { _, err := netlink.LinkByName("int0"); return err }); err == nil {
		t.Fatal("the host adapter int0 is still there")
	}
	if l := p.daemonNS.Link(t, "nic0"); l.Attrs().Promisc != 0 {
		t.Fatal("nic0 is still promiscuous after its switch went")
	}
	if got, _ := mover.Snapshot("nic0"); got.String() != hostBefore.String() {
		t.Fatalf("nic0 after removing the switch:\n%s\nwant as before:\n%s", got, hostBefore)
	}
	if off, _ := mover.IPv6Off("nic0"); off {
		t.Fatal("IPv6 left off at nic0")
	}
	if err := p.daemonNS.Do(func() error { _, err := netlink.LinkByName("ext0"); return err }); err == nil {
		t.Fatal("the host adapter ext0 is still there")
	}
}
