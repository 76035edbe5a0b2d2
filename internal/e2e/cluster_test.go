package e2e

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vswitch/vswitch/internal/api"
	"github.com/vswitch/vswitch/internal/client"
	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/guestlab"
	"github.com/vswitch/vswitch/internal/netnstest"
)

// tlsFiles are a CA, a server certificate for etcd's address and a
// client certificate, PEM files in a test's directory.
type tlsFiles struct{ ca, serverCert, serverKey, clientCert, clientKey string }

func makeTLS(t *testing.T, serverIP string) *tlsFiles {
	t.Helper()
	dir := t.TempDir()
	write := func(name, kind string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	caKey := newKey()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vswitch test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	f := &tlsFiles{ca: write("ca.pem", "CERTIFICATE", caDER)}
	leaf := func(serial int64, name string, usage x509.ExtKeyUsage, ips []net.IP) (string, string) {
		k := newKey()
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name}, NotBefore: time.Now().Add(-time.Hour),
			NotAfter: time.Now().Add(24 * time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: ips, KeyUsage: x509.KeyUsageDigitalSignature}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "EC PRIVATE KEY", kder)
	}
	f.serverCert, f.serverKey = leaf(2, "etcd", x509.ExtKeyUsageServerAuth, []net.IP{net.ParseIP(serverIP)})
	f.clientCert, f.clientKey = leaf(3, "vswitchd", x509.ExtKeyUsageClientAuth, nil)
	return f
}

// etcdServer is a real etcd (Debian's etcd-server, which make lab
// installs) serving clients on addr:2379 inside a namespace.
type etcdServer struct {
	t    *testing.T
	ns   *netnstest.NS
	addr string
	dir  string
	cmd  *exec.Cmd
	log  *logBuffer
	tls  *tlsFiles // clients must present a certificate of its CA; nil: plain HTTP
}

func (e *etcdServer) url() string {
	if e.tls != nil {
		return "https://" + e.addr + ":2379"
	}
	return "http://" + e.addr + ":2379"
}

func (e *etcdServer) start() {
	e.t.Helper()
	e.log = &logBuffer{}
	args := []string{"netns", "exec", e.ns.Name, "etcd", "--name", "test", "--data-dir", e.dir,
		"--listen-client-urls", e.url(), "--advertise-client-urls", e.url(),
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "test=http://127.0.0.1:2380"}
	if e.tls != nil {
		args = append(args, "--cert-file", e.tls.serverCert, "--key-file", e.tls.serverKey, "--trusted-ca-file", e.tls.ca, "--client-cert-auth")
	}
	e.cmd = exec.Command("ip", args...)
	e.cmd.Stdout, e.cmd.Stderr = e.log, e.log
	if err := e.cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		err := e.ns.Do(func() error {
			c, err := net.DialTimeout("tcp", e.addr+":2379", time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("etcd did not come up: %v\n%s", err, e.log)
		}
	}
}

// kill ends etcd (it started it, by PID).
func (e *etcdServer) kill() {
	if e.cmd != nil {
		e.cmd.Process.Signal(syscall.SIGKILL)
		e.cmd.Wait()
		e.cmd = nil
	}
}

// testCluster is an etcd and hosts, each a namespace running vswitchd,
// joined by veths to an underlay namespace (a Linux bridge).
type testCluster struct {
	t        *testing.T
	underlay *netnstest.NS
	etcd     *etcdServer
	hosts    map[string]*product
	vtep     map[string]string
}

func newTestCluster(t *testing.T, names ...string) *testCluster {
	return newTestClusterWith(t, clusterOptions{}, names...)
}

// clusterOptions vary a test cluster.
type clusterOptions struct {
	tls  bool // etcd requires mutual TLS
	ipv6 bool // the hosts' tunnel endpoints (and peer APIs) are IPv6 addresses
}

// newTestClusterWith is newTestCluster made as o says.
func newTestClusterWith(t *testing.T, o clusterOptions, names ...string) *testCluster {
	netnstest.RequireRoot(t)
	if _, err := exec.LookPath("etcd"); err != nil {
		t.Fatalf("etcd is not installed: make lab installs it (lab/etcd.sh): %v", err)
	}
	vswitchd, vswitchctl := bins(t)
	c := &testCluster{t: t, underlay: netnstest.New(t), hosts: map[string]*product{}, vtep: map[string]string{}}
	if err := c.underlay.Do(func() error {
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br0"}}
		if err := netlink.LinkAdd(br); err != nil {
			return err
		}
		return netlink.LinkSetUp(br)
	}); err != nil {
		t.Fatal(err)
	}
	c.underlay.AddAddr(t, "br0", "10.88.0.1/24")
	c.etcd = &etcdServer{t: t, ns: c.underlay, addr: "10.88.0.1", dir: t.TempDir()}
	if o.tls {
		c.etcd.tls = makeTLS(t, "10.88.0.1")
	}
	c.etcd.start()
	t.Cleanup(c.etcd.kill)
	for i, name := range names {
		p := &product{t: t, daemonNS: netnstest.New(t), vswitchd: vswitchd, vswitchctl: vswitchctl, dir: t.TempDir()}
		c.vtep[name] = fmt.Sprintf("10.88.0.%d", 11+i)
		c.join(p.daemonNS, c.vtep[name])
		if o.ipv6 {
			c.vtep[name] = fmt.Sprintf("fd88::%d", 11+i)
			p.daemonNS.AddAddr(t, "ul0", c.vtep[name]+"/64")
		}
		p.args = []string{"--etcd", c.etcd.url(), "--host-name", name, "--vtep", c.vtep[name], "--lease", "3s", "--bpf-dir", "", "--web", "127.0.0.1:0"}
		if f := c.etcd.tls; f != nil {
			p.args = append(p.args, "--etcd-cacert", f.ca, "--etcd-cert", f.clientCert, "--etcd-key", f.clientKey)
		}
		c.hosts[name] = p
		t.Cleanup(func() {
			if p.cmd != nil {
				p.kill9()
			}
			p.stopVMs()
		})
		p.start()
	}
	return c
}

// join connects a namespace to the underlay (its ul0, with address ip).
func (c *testCluster) join(ns *netnstest.NS, ip string) {
	c.t.Helper()
	port := netnstest.UniqueName("ul")
	netnstest.Veth(c.t, ns, "ul0", c.underlay, port)
	bridge(c.t, c.underlay, "br0", port)
	ns.AddAddr(c.t, "ul0", ip+"/24")
}

// bridge makes port a port of br in ns.
func bridge(t *testing.T, ns *netnstest.NS, br, port string) {
	t.Helper()
	if err := ns.Do(func() error {
		l, err := netlink.LinkByName(port)
		if err != nil {
			return err
		}
		b, err := netlink.LinkByName(br)
		if err != nil {
			return err
		}
		return netlink.LinkSetMaster(l, b)
	}); err != nil {
		t.Fatal(err)
	}
}

// plainVXLANHost is a Linux host outside the cluster: the kernel's own
// VXLAN device (VNI vni, UDP 4789) and a bridge, the cluster's hosts as
// its remote endpoints, and one VM (a namespace on a veth) with address vmIP.
func (c *testCluster) plainVXLANHost(vni uint32, ip, vmIP string) vm {
	c.t.Helper()
	host := netnstest.New(c.t)
	c.join(host, ip)
	v := vm{ns: netnstest.New(c.t), ip: vmIP}
	if err := host.Do(func() error {
		vx := &netlink.Vxlan{LinkAttrs: netlink.LinkAttrs{Name: "vx0"}, VxlanId: int(vni), SrcAddr: net.ParseIP(ip), Port: 4789, Learning: true}
		br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: "br1"}}
		for _, l := range []netlink.Link{vx, br} {
			if err := netlink.LinkAdd(l); err != nil {
				return err
			}
		}
		if err := netlink.LinkSetMaster(vx, br); err != nil {
			return err
		}
		for _, l := range []netlink.Link{vx, br} {
			if err := netlink.LinkSetUp(l); err != nil {
				return err
			}
		}
		for _, remote := range c.vtep {
			if err := netlink.NeighAppend(&netlink.Neigh{LinkIndex: vx.Attrs().Index, Family: syscall.AF_BRIDGE, State: netlink.NUD_PERMANENT,
				Flags: netlink.NTF_SELF, IP: net.ParseIP(remote), HardwareAddr: net.HardwareAddr{0, 0, 0, 0, 0, 0}}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		c.t.Fatalf("plain VXLAN host: %v", err)
	}
	netnstest.Veth(c.t, host, "pv0", v.ns, "eth0")
	bridge(c.t, host, "br1", "pv0")
	v.ns.AddAddr(c.t, "eth0", vmIP+"/24")
	return v
}

// vmOn makes a namespace VM on host with one adapter on sw (more adapter
// flags in extra) and the address ip, once its host brought it up.
func (c *testCluster) vmOn(via, host, name, sw, ip string, extra ...string) vm {
	c.t.Helper()
	v := vm{ns: netnstest.New(c.t), ip: ip}
	p := c.hosts[via]
	p.must("vm", "add", name, "--host", host)
	p.must(append([]string{"adapter", "add", name + "/eth0", "--switch", sw, "--netns", v.ns.Name}, extra...)...)
	waitLink(c.t, v.ns, "eth0", c.hosts[host])
	v.ns.AddAddr(c.t, "eth0", ip+"/24")
	return v
}

// waitLink waits for a link its host makes.
func waitLink(t *testing.T, ns *netnstest.NS, name string, host *product) {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		err := ns.Do(func() error { _, err := netlink.LinkByName(name); return err })
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never appeared in %s: %v\nits host's log:\n%s", name, ns, err, host.log)
		}
	}
}

// waitMatrix pings all pairs until the matrix is want (or 20 s passed).
func waitMatrix(t *testing.T, vms map[string]vm, names []string, want string) {
	t.Helper()
	got := ""
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); {
		if got = matrix(t, vms, names); got == want {
			return
		}
	}
	t.Fatalf("reachability across hosts:\n%s\nwant:\n%s", got, want)
}

// expected renders the matrix where VMs of one group reach each other and nothing else.
func expected(names []string, group map[string]string) string {
	var b strings.Builder
	for _, from := range names {
		for _, to := range names {
			if from != to {
				fmt.Fprintf(&b, "%s→%s %v\n", from, to, group[from] == group[to])
			}
		}
	}
	return b.String()
}

func hostsOf(t *testing.T, p *product) map[string]api.HostInfo {
	t.Helper()
	var hs []api.HostInfo
	if err := json.Unmarshal([]byte(p.must("-o", "json", "host", "ls")), &hs); err != nil {
		t.Fatal(err)
	}
	out := map[string]api.HostInfo{}
	for _, h := range hs {
		out[h.Name] = h
	}
	return out
}

// TestCluster runs three hosts on one etcd: hosts register and show up and
// down, switches span hosts over VXLAN with the same isolation as on one
// host, the MAC pool is one for the cluster under concurrent writes, and a
// lost etcd or a killed vswitchd loses nothing.
func TestCluster(t *testing.T) {
	c := newTestCluster(t, "h1", "h2", "h3")
	h1, h2, h3 := c.hosts["h1"], c.hosts["h2"], c.hosts["h3"]

	hs := hostsOf(t, h2)
	for _, name := range []string{"h1", "h2", "h3"} {
		if h := hs[name]; !h.Up || h.VTEP != c.vtep[name] {
			t.Fatalf("host ls on h2: %s is %+v; want up with VTEP %s\n%s", name, h, c.vtep[name], h2.must("host", "ls"))
		}
	}
	if !hs["h2"].Self {
		t.Errorf("host ls on h2 does not mark h2 as itself: %+v", hs["h2"])
	}

	// A vswitchd that cannot join says why and stops: its VTEP is not an
	// address of its host, or its name is a live host's with another VTEP.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--host-name", "h4", "--vtep", "10.88.0.99"}, "--vtep 10.88.0.99: not an address of this host"},
		{[]string{"--host-name", "h1", "--vtep", c.vtep["h2"], "--peer-api", c.vtep["h2"] + ":8499"}, `host name "h1" is registered by a live host with VTEP 10.88.0.11`},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		dir := t.TempDir()
		out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h2.daemonNS.Name, h2.vswitchd, "--store", filepath.Join(dir, "db"),
			"--socket", filepath.Join(dir, "sock"), "--bpf-dir", "", "--etcd", c.etcd.url()}, tc.args...)...).CombinedOutput()
		cancel()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("vswitchd %s: %v\n%s\nwant it to stop saying %q", strings.Join(tc.args, " "), err, out, tc.want)
		}
	}

	// Bad input is refused with the field named, nothing changed.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"switch", "add", "x0", "--type", "private", "--span", "--vni", "16777216"}, "vni"},
		{[]string{"switch", "add", "x0", "--type", "private", "--span", "--hosts", "h1,nohost"}, `switches[x0].hosts "nohost"`},
		{[]string{"vm", "add", "x", "--host", "nohost"}, `vms[x].host "nohost"`},
	} {
		if code, out, errOut := h1.ctl(tc.args...); code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("vswitchctl %s: exit %d, %s%s; want a refusal naming %s", strings.Join(tc.args, " "), code, out, errOut, tc.want)
		}
	}

	// Two spanning switches, made from different hosts; a local one. lan0
	// is on the userspace core, lan1 on the kernel data path, loc2 auto
	// (the kernel data path, which every host here has): the suite covers
	// both. (A namespace VM that moves between hosts sharing its namespace,
	// as here, keeps its interface on the core only: on the kernel data
	// path its veth is made anew by the new host.)
	h1.must("switch", "add", "lan0", "--type", "private", "--span", "--datapath", "userspace")
	h3.must("switch", "add", "lan1", "--type", "private", "--span", "--vni", "5000", "--datapath", "kernel")
	h2.must("switch", "add", "loc2", "--type", "private")
	if code, _, errOut := h1.ctl("switch", "add", "loc2", "--type", "private", "--span"); code == 0 || !strings.Contains(errOut, "switch loc2 is on host h2") {
		t.Fatalf("a spanning switch named like h2's local switch: exit %d %s", code, errOut)
	}
	if code, _, errOut := h1.ctl("switch", "add", "lan2", "--type", "private", "--span", "--vni", "5000"); code == 0 || !strings.Contains(errOut, "switch lan1 has it") {
		t.Fatalf("a VNI taken: exit %d %s", code, errOut)
	}
	ls := h2.must("switch", "ls")
	for _, want := range []string{"every host (spans)", "5000", "loc2"} {
		if !strings.Contains(ls, want) {
			t.Fatalf("switch ls on h2 does not show %q:\n%s", want, ls)
		}
	}
	// An adapter on a switch its VM's host does not have is refused.
	h1.must("vm", "add", "stray", "--host", "h1")
	if code, _, errOut := h1.ctl("adapter", "add", "stray/eth0", "--switch", "loc2", "--netns", "nowhere"); code == 0 ||
		!strings.Contains(errOut, "a switch on host h1") {
		t.Fatalf("an adapter on another host's local switch: exit %d %s", code, errOut)
	}
	h1.must("vm", "rm", "stray")

	// VMs on every host, all written through h1: lan0 untagged a, b, c;
	// lan0 access 10 d, e; lan1 f, g (same addresses' subnet: only the
	// switch separates them).
	vms := map[string]vm{
		"a": c.vmOn("h1", "h1", "a", "lan0", "10.89.0.1"),
		"b": c.vmOn("h1", "h2", "b", "lan0", "10.89.0.2"),
		"c": c.vmOn("h1", "h3", "c", "lan0", "10.89.0.3"),
		"d": c.vmOn("h1", "h2", "d", "lan0", "10.89.0.4"),
		"e": c.vmOn("h1", "h3", "e", "lan0", "10.89.0.5"),
		"f": c.vmOn("h2", "h1", "f", "lan1", "10.89.0.6"),
		"g": c.vmOn("h2", "h3", "g", "lan1", "10.89.0.7"),
	}
	h2.must("adapter", "vlan", "d/eth0", "--access", "10")
	h3.must("adapter", "vlan", "e/eth0", "--access", "10")
	names := []string{"a", "b", "c", "d", "e", "f", "g"}
	groups := map[string]string{"a": "lan0", "b": "lan0", "c": "lan0", "d": "lan0.10", "e": "lan0.10", "f": "lan1", "g": "lan1"}
	waitMatrix(t, vms, names, expected(names, groups))

	// The topology from any host shows every host, where each switch is and
	// which host each adapter is on and what forwards each switch's frames
	// (loc2, auto, is on the kernel data path as h2 registered it has one);
	// --host shows one host's part.
	topo := h3.must("topology")
	for _, want := range []string{"host h1 (VTEP 10.88.0.11, up)", "host h3 (VTEP 10.88.0.13, up, this host)",
		"lan0 (private, default VLAN 1, spans every host, VXLAN VNI 1, adapters' MTU 1450)\n",
		"lan1 (private, default VLAN 1, spans every host, VXLAN VNI 5000, adapters' MTU 1450, kernel data path)",
		"loc2 (private, default VLAN 1, on host h2, kernel data path)",
		"[access 10]  on h2", "on h1"} {
		if !strings.Contains(topo, want) {
			t.Fatalf("topology on h3 does not show %q:\n%s", want, topo)
		}
	}
	if topo := h1.must("topology", "--host", "h2"); !strings.Contains(topo, "b/eth0") || strings.Contains(topo, "a/eth0") || !strings.Contains(topo, "loc2") {
		t.Fatalf("topology --host h2 does not show h2's part alone:\n%s", topo)
	}
	// Lists filter by host; a port's state is its host's, read from it.
	if ls := h1.must("adapter", "ls", "--host", "h3"); !strings.Contains(ls, "c/eth0") || strings.Contains(ls, "a/eth0") || !strings.Contains(ls, " up") {
		t.Fatalf("adapter ls --host h3 through h1:\n%s", ls)
	}
	if ls := h3.must("vm", "ls", "--host", "h2"); !strings.Contains(ls, "b ") || strings.Contains(ls, "a ") {
		t.Fatalf("vm ls --host h2 through h3:\n%s", ls)
	}
	// A local switch made to span gets a VNI and is on every host; back, it is on the host given.
	h1.must("switch", "set", "loc2", "--span")
	var spanned []config.Switch
	json.Unmarshal([]byte(h3.must("-o", "json", "switch", "ls")), &spanned)
	for _, sw := range spanned {
		if sw.Name == "loc2" && (!sw.Span || sw.VNI == 0 || sw.Host != "") {
			t.Fatalf("loc2 after set --span: %+v", sw)
		}
	}
	h1.must("switch", "set", "loc2", "--span=false", "--host", "h2")
	if ls := h3.must("switch", "ls", "--host", "h2"); !strings.Contains(ls, "loc2") || strings.Contains(h3.must("switch", "ls", "--host", "h1"), "loc2") {
		t.Fatalf("loc2 back on h2:\n%s", ls)
	}

	// A plain Linux host with the kernel's VXLAN and a bridge, the cluster's
	// hosts as its remote endpoints and it as lan0's remote endpoint, talks
	// to lan0's untagged VMs (VLAN 1 rides the tunnel untagged), and to no one else.
	var sws []config.Switch
	if err := json.Unmarshal([]byte(h2.must("-o", "json", "switch", "ls")), &sws); err != nil {
		t.Fatal(err)
	}
	var vni uint32
	for _, sw := range sws {
		if sw.Name == "lan0" {
			vni = sw.VNI
		}
	}
	vms["p"] = c.plainVXLANHost(vni, "10.88.0.50", "10.89.0.9")
	h3.must("switch", "set", "lan0", "--remote-vteps", "10.88.0.50")
	groups["p"] = "lan0"
	names = append(names, "p")
	waitMatrix(t, vms, names, expected(names, groups))
	if mtu := vms["b"].ns.Link(t, "eth0").Attrs().MTU; mtu != 1450 {
		t.Errorf("an adapter of a spanning switch has MTU %d; want 1450 (the underlay's 1500 less VXLAN's 50)", mtu)
	}

	// A tagged trunk VM on h1 (a QEMU guest with VLAN sub-interfaces, run
	// by h1's vswitchd) talks in VLAN 10 to the access VMs d on h2 and e on
	// h3, and not to f on h1's other spanning switch.
	for name, ip := range map[string]string{"d": "10.89.10.4/24", "e": "10.89.10.5/24", "f": "10.89.10.6/24"} {
		vms[name].ns.AddAddr(t, "eth0", ip)
	}
	lab := guestlab.Build(t)
	h1.must("vm", "add", "trunk", "--kernel", lab.Kernel, "--initrd", lab.Initrd, "--memory", "192", "--append",
		guestlab.Cmdline(guestlab.Guest{IP: "10.89.20.10/24", VLANs: "10:10.89.10.10/24",
			Cmd: "for i in $(seq 30); do ping -c 1 -W 1 10.89.10.4 >/dev/null && break; done; " +
				"ping -c 2 -W 2 10.89.10.4 && ping -c 2 -W 2 10.89.10.5 && ! ping -c 2 -W 1 10.89.10.6"}))
	h1.must("adapter", "add", "trunk/eth0", "--switch", "lan0")
	h1.must("adapter", "vlan", "trunk/eth0", "--trunk", "10,20")
	h1.must("vm", "start", "trunk")
	if st := h1.waitExited("trunk"); st.ExitCode != 0 || !strings.Contains(h1.must("vm", "console", "trunk"), "VSWITCH-RESULT rc=0") {
		t.Fatalf("trunk VM on h1: %+v; console:\n%s", st, h1.must("vm", "console", "trunk"))
	}
	h2.must("vm", "rm", "trunk", "--force")

	// Garbage on UDP 4789 (short, bad flags, an unknown VNI) is dropped,
	// the bad headers for a switch's VNI counted on its tunnel port, and
	// the switch forwards on.
	if err := c.underlay.Do(func() error {
		conn, err := net.Dial("udp", c.vtep["h2"]+":4789")
		if err != nil {
			return err
		}
		defer conn.Close()
		inner := make([]byte, 60)
		copy(inner, []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0, 0, 0, 0, 0x99, 0x08, 0x06})
		for _, pkt := range [][]byte{
			{1, 2, 3}, // short
			append([]byte{0x00, 0, 0, 0, 0, 0, 1, 0}, inner...),          // no I flag, VNI 1
			append([]byte{0x08, 0xff, 0, 0, 0, 0, 1, 0}, inner...),       // reserved bits set, VNI 1
			append([]byte{0x08, 0, 0, 0, 0x0f, 0x42, 0x3f, 0}, inner...), // VNI 999999: no such switch
			append([]byte{0x08, 0xff, 0, 0, 0, 0x13, 0x88, 0}, inner...), // reserved bits set, VNI 5000 (lan1, the kernel data path)
		} {
			if _, err := conn.Write(pkt); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, sw := range []string{"lan0", "lan1"} {
		var bad uint64
		for deadline := time.Now().Add(5 * time.Second); bad == 0 && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			var rows []api.PortStats
			json.Unmarshal([]byte(h1.must("-o", "json", "stats", sw, "--host", "h2")), &rows)
			for _, r := range rows {
				if r.Port == "tunnel" {
					bad = r.Backend["vxlan-rx-errors"]
				}
			}
		}
		if bad == 0 {
			t.Errorf("garbage VXLAN headers for %s's VNI are not counted on h2's tunnel port:\n%s", sw, h1.must("stats", sw, "--host", "h2"))
		}
	}
	waitMatrix(t, vms, []string{"a", "b", "c"}, expected([]string{"a", "b", "c"}, groups))

	// TCP across hosts: a megabyte from a (h1) to c (h3), full-size segments.
	l := vms["c"].ns.Listen(t, "10.89.0.3:7000")
	got := make(chan int, 1)
	go func() {
		conn, err := l.Accept()
		if err != nil {
			got <- -1
			return
		}
		defer conn.Close()
		n, _ := io.Copy(io.Discard, conn)
		got <- int(n)
	}()
	conn := vms["a"].ns.Dial(t, "10.89.0.3:7000")
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := conn.Write(make([]byte, 1<<20)); err != nil {
		t.Fatalf("TCP a → c across hosts: %v", err)
	}
	conn.Close()
	if n := <-got; n != 1<<20 {
		t.Fatalf("TCP a → c across hosts: %d bytes arrived, want %d", n, 1<<20)
	}

	// vm move: what would block it is said first; the move keeps a ping
	// from another host going with at most a second lost, the VM keeps
	// its MAC, device and address, and the new host has its port.
	vms["w"] = c.vmOn("h1", "h1", "w", "lan0", "10.89.0.11")
	h1.must("vm", "add", "l", "--host", "h2")
	h1.must("adapter", "add", "l/eth0", "--switch", "loc2", "--netns", "nowhere-l")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"vm", "move", "w", "--to", "h2", "--check"}, 0, "nothing blocks moving VM w from h1 to h2"},
		{[]string{"vm", "move", "w", "--to", "nohost", "--check"}, 1, "host nohost is not a host of the cluster"},
		{[]string{"vm", "move", "l", "--to", "h1", "--check"}, 1, "switch loc2 is not on host h1"},
		{[]string{"vm", "move", "l", "--to", "h1"}, 1, "switch loc2 is not on host h1"},
	} {
		code, out, errOut := h3.ctl(tc.args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.want) {
			t.Errorf("vswitchctl %s: exit %d %s%s; want exit %d saying %q", strings.Join(tc.args, " "), code, out, errOut, tc.code, tc.want)
		}
	}
	h1.must("vm", "rm", "l", "--force")
	macBefore := vms["w"].ns.Link(t, "eth0").Attrs().HardwareAddr.String()
	var okAt []time.Time
	stopPing := make(chan struct{})
	pinged := make(chan struct{})
	go func() {
		defer close(pinged)
		for {
			select {
			case <-stopPing:
				return
			default:
			}
			if vms["c"].ns.Ping(t, "10.89.0.11", 300*time.Millisecond) == nil {
				okAt = append(okAt, time.Now())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	time.Sleep(time.Second)
	moveAt := time.Now()
	if out := h3.must("vm", "move", "w", "--to", "h2"); !strings.Contains(out, "VM w moved from h1 to h2") {
		t.Fatalf("vm move: %s", out)
	}
	time.Sleep(4 * time.Second)
	close(stopPing)
	<-pinged
	worst, last := time.Duration(0), moveAt
	for _, at := range okAt {
		if at.After(moveAt) && at.Sub(last) > worst {
			worst = at.Sub(last)
		}
		if at.After(moveAt) {
			last = at
		}
	}
	if len(okAt) == 0 || time.Since(okAt[len(okAt)-1]) > time.Second || worst > 1200*time.Millisecond {
		t.Fatalf("ping c → w across the move: longest gap %v (want ≤ 1 s of loss), %d replies", worst, len(okAt))
	}
	t.Logf("vm move: longest gap in c's pings to w %v", worst.Round(time.Millisecond))
	if mac := vms["w"].ns.Link(t, "eth0").Attrs().HardwareAddr.String(); mac != macBefore || len(vms["w"].ns.Addrs(t, "eth0")) == 0 {
		t.Fatalf("w after the move: MAC %s (was %s), addresses %v", mac, macBefore, vms["w"].ns.Addrs(t, "eth0"))
	}
	if !strings.Contains(h2.must("stats", "lan0"), "w/eth0") || strings.Contains(h1.must("stats", "lan0"), "w/eth0") {
		t.Fatalf("after the move, w/eth0 is not a port of h2's lan0 alone:\nh2:\n%s\nh1:\n%s", h2.must("stats", "lan0"), h1.must("stats", "lan0"))
	}
	groups["w"] = "lan0"

	// Live data of another host, read through any host: h1 shows h2's
	// counters and h3's MAC table; the peer listener answers no one
	// without the cluster's token.
	if st := h1.must("stats", "lan0", "--host", "h2"); !strings.Contains(st, "w/eth0") || strings.Contains(st, "a/eth0") {
		t.Fatalf("stats lan0 --host h2 through h1:\n%s", st)
	}
	if fdb := h1.must("fdb", "lan0", "--host", "h3"); !strings.Contains(fdb, "c/eth0") {
		t.Fatalf("fdb lan0 --host h3 through h1:\n%s", fdb)
	}
	if err := c.underlay.Do(func() error {
		conn, err := net.DialTimeout("tcp", c.vtep["h2"]+":8471", 2*time.Second) // on this thread: in the namespace
		if err != nil {
			return err
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET /v1/state HTTP/1.1\r\nHost: h2\r\nConnection: close\r\n\r\n")
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusUnauthorized || strings.Contains(string(body), "lan0") {
			return fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
		}
		return nil
	}); err != nil {
		t.Fatalf("h2's peer listener without the token: %v", err)
	}

	// One MAC pool for the cluster: three hosts add 300 adapters at the
	// same moment (their namespaces are not made: they wait), and every MAC
	// is distinct.
	var wg sync.WaitGroup
	errs := make(chan string, 300)
	for i, hn := range []string{"h1", "h2", "h3"} {
		p := c.hosts[hn]
		p.must("vm", "add", "many"+hn)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 100 {
				if code, out, errOut := p.ctl("adapter", "add", fmt.Sprintf("many%s/n%d", hn, j), "--switch", "lan0", "--netns",
					fmt.Sprintf("none-%d-%d", i, j)); code != 0 {
					errs <- fmt.Sprintf("%s: exit %d %s%s", hn, code, out, errOut)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	var ads []config.Adapter
	if err := json.Unmarshal([]byte(h3.must("-o", "json", "adapter", "ls")), &ads); err != nil {
		t.Fatal(err)
	}
	macs := map[string]string{}
	n := 0
	for _, a := range ads {
		if !strings.HasPrefix(a.VM, "many") {
			continue
		}
		n++
		if other, dup := macs[a.MAC.String()]; dup {
			t.Errorf("MAC %s given to %s and %s", a.MAC, other, a.ID())
		}
		macs[a.MAC.String()] = a.ID()
	}
	if n != 300 || len(macs) != 300 {
		t.Fatalf("%d adapters with %d distinct MACs; want 300 and 300", n, len(macs))
	}
	for _, hn := range []string{"h1", "h2", "h3"} {
		c.hosts[hn].must("vm", "rm", "many"+hn, "--force")
	}

	// Adapters written in one batch through h1 (adapter import) come up on
	// h2, whose readers keep reading meanwhile: a read that takes the new
	// state before h2's watch worker does must not keep h2 from
	// converging to it.
	h1.must("vm", "add", "batch", "--host", "h2")
	var batch []config.Adapter
	for j := range 40 {
		batch = append(batch, config.Adapter{VM: "batch", Name: fmt.Sprint("n", j), Switch: "loc2", DynamicMAC: true,
			Attachment: config.Attachment{Kind: config.AttachTAP, Device: fmt.Sprint("vtb", j)}})
	}
	raw, _ := json.Marshal(batch)
	file := filepath.Join(t.TempDir(), "batch.json")
	if err := os.WriteFile(file, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	stopReads := make(chan struct{})
	var reads sync.WaitGroup
	reads.Go(func() {
		for {
			select {
			case <-stopReads:
				return
			default:
				h2.ctl("adapter", "ls", "batch")
			}
		}
	})
	h1.must("adapter", "import", file)
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		states, err := client.New(h2.sock()).PortStates()
		if err != nil {
			t.Fatal(err)
		}
		up := 0
		for _, ps := range states {
			if strings.HasPrefix(ps.Port, "batch/") && ps.State == api.PortUp {
				up++
			}
		}
		if up == len(batch) {
			break
		}
		if time.Now().After(deadline) {
			close(stopReads)
			t.Fatalf("%d of %d adapters of a batch up on h2 15 s after it was written", up, len(batch))
		}
	}
	close(stopReads)
	reads.Wait()
	h1.must("vm", "rm", "batch", "--force")

	// etcd lost: traffic between existing VMs goes on; writes fail at once
	// with exit 4 naming etcd; reads answer from the last state.
	c.etcd.kill()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		code, _, errOut := h1.ctl("vm", "add", "late")
		if code == 4 && strings.Contains(errOut, "etcd") {
			break
		}
		if code == 0 {
			t.Fatalf("a write succeeded with etcd down")
		}
		if time.Now().After(deadline) {
			t.Fatalf("write with etcd down: exit %d %s; want exit 4 naming etcd", code, errOut)
		}
	}
	start := time.Now()
	code, _, errOut := h2.ctl("switch", "add", "nope", "--type", "private")
	if code != 4 || !strings.Contains(errOut, "etcd") || time.Since(start) > 2*time.Second {
		t.Fatalf("write with etcd down: exit %d after %v: %s; want exit 4 at once, naming etcd", code, time.Since(start), errOut)
	}
	if !strings.Contains(h2.must("switch", "ls"), "lan0") {
		t.Fatal("reads fail while etcd is down")
	}
	waitMatrix(t, vms, []string{"a", "b", "c"}, expected([]string{"a", "b", "c"}, groups))

	// A vswitchd restarted while etcd is down comes up with its cached state.
	h2.kill9()
	h2.start()
	waitMatrix(t, vms, []string{"a", "b", "c"}, expected([]string{"a", "b", "c"}, groups))

	// etcd back: every host writes again (h2 started without it), and a
	// write made through one host converges on another.
	c.etcd.start()
	back := time.Now()
	vms["late"] = vm{ns: netnstest.New(t), ip: "10.89.0.8"}
	for _, w := range []struct {
		p    *product
		args []string
	}{{h1, []string{"vm", "add", "late", "--host", "h3"}}, {h2, []string{"adapter", "add", "late/eth0", "--switch", "lan0", "--netns", vms["late"].ns.Name}}} {
		for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			if code, _, _ := w.p.ctl(w.args...); code == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("vswitchctl %s still fails 20 s after etcd came back:\n%s", strings.Join(w.args, " "), w.p.log)
			}
		}
	}
	t.Logf("writes through h1 and h2 stored %v after etcd came back", time.Since(back).Round(time.Millisecond))
	waitLink(t, vms["late"].ns, "eth0", h3)
	vms["late"].ns.AddAddr(t, "eth0", "10.89.0.8/24")
	groups["late"] = "lan0"
	waitMatrix(t, vms, []string{"a", "b", "late"}, expected([]string{"a", "b", "late"}, groups))

	// A vswitchd killed: shown down after its lease (3 s here), the other
	// hosts' traffic goes on; back, it converges to what was written meanwhile.
	h3.kill9()
	for deadline := time.Now().Add(15 * time.Second); hostsOf(t, h1)["h3"].Up; time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("h3 still shown up 15 s after its vswitchd was killed:\n%s", h1.must("host", "ls"))
		}
	}
	if !strings.Contains(h1.must("vm", "ls"), "late") {
		t.Fatal("a down host's VM left the state")
	}
	waitMatrix(t, vms, []string{"a", "b"}, expected([]string{"a", "b"}, groups))
	h2.must("adapter", "vlan", "e/eth0", "--access", "20") // while h3 is down: e leaves d's VLAN
	h3.start()
	groups["e"] = "lan0.20"
	waitMatrix(t, vms, []string{"a", "c", "d", "e"}, expected([]string{"a", "c", "d", "e"}, groups))
	if !hostsOf(t, h1)["h3"].Up {
		t.Fatalf("h3 is not shown up again:\n%s", h1.must("host", "ls"))
	}
}

// TestClusterOverTLS: hosts join an etcd that requires mutual TLS
// (--etcd-cacert, --etcd-cert, --etcd-key), and a spanning switch works
// across them over an IPv6 underlay (IPv6 tunnel endpoints: adapters get
// the MTU less IPv6 VXLAN's 70 bytes; the hosts read each other's
// counters over IPv6); a vswitchd without a client certificate is refused.
func TestClusterOverTLS(t *testing.T) {
	c := newTestClusterWith(t, clusterOptions{tls: true, ipv6: true}, "t1", "t2")
	t1, t2 := c.hosts["t1"], c.hosts["t2"]
	if hs := hostsOf(t, t2); !hs["t1"].Up || !hs["t2"].Up || hs["t1"].VTEP != "fd88::11" || hs["t1"].MTU != 1430 {
		t.Fatalf("host ls over TLS, IPv6 tunnel endpoints:\n%s", t2.must("host", "ls"))
	}
	t1.must("switch", "add", "sec0", "--type", "private", "--span")
	vms := map[string]vm{"x": c.vmOn("t1", "t1", "x", "sec0", "10.89.1.1"), "y": c.vmOn("t2", "t2", "y", "sec0", "10.89.1.2")}
	waitMatrix(t, vms, []string{"x", "y"}, expected([]string{"x", "y"}, map[string]string{"x": "sec0", "y": "sec0"}))
	if mtu := vms["y"].ns.Link(t, "eth0").Attrs().MTU; mtu != 1430 {
		t.Fatalf("an adapter of a switch spanning an IPv6 underlay has MTU %d, want 1430 (1500 less 70)", mtu)
	}
	clusterConsole(t, t1, t2)

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	dir := t.TempDir()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", t2.daemonNS.Name, t2.vswitchd, "--store", filepath.Join(dir, "db"),
		"--socket", filepath.Join(dir, "sock"), "--bpf-dir", "", "--etcd", c.etcd.url(), "--host-name", "t3", "--vtep", c.vtep["t2"],
		"--peer-api", c.vtep["t2"]+":8498", "--etcd-cacert", c.etcd.tls.ca).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "TLS") || !strings.Contains(string(out), "--etcd-cert") {
		t.Fatalf("a vswitchd without a client certificate joined, or did not say why: %v\n%s", err, out)
	}
	t.Logf("without a client certificate: %s", strings.TrimSpace(string(out)))
}
