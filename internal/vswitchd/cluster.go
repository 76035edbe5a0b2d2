package vswitchd

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime/debug"
	"strings"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/vswitch/vswitch/internal/api"
	"github.com/vswitch/vswitch/internal/cluster"
	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/store"
)

// ClusterOptions make the host a member of a cluster: its desired state
// is the cluster's, in etcd. No Etcd: a single host on its own store.
type ClusterOptions struct {
	Etcd              []string // etcd endpoints (http:// or https://)
	CACert, Cert, Key string   // TLS to etcd (files); all empty: none
	HostName          string   // this host's name in the cluster; the hostname if ""
	VTEP              string   // this host's VXLAN tunnel endpoint: one of its addresses
	LeaseTTL          time.Duration
	// PeerAPI is where the host serves the other hosts' reads (with the
	// cluster's token): VTEP:api.PeerPort if "".
	PeerAPI string
}

// ClusterFlags registers the cluster's flags on fs.
func ClusterFlags(fs *flag.FlagSet, o *ClusterOptions) {
	fs.Func("etcd", "join a cluster: its etcd endpoints, comma-separated (https://h1:2379,https://h2:2379); without it this host stands alone on --store",
		func(v string) error { o.Etcd = append(o.Etcd, strings.Split(v, ",")...); return nil })
	fs.StringVar(&o.CACert, "etcd-cacert", "", "the CA certificate etcd's server certificate is checked against")
	fs.StringVar(&o.Cert, "etcd-cert", "", "this host's client certificate for etcd")
	fs.StringVar(&o.Key, "etcd-key", "", "its key")
	fs.StringVar(&o.HostName, "host-name", "", "this host's name in the cluster (the hostname if not given)")
	fs.StringVar(&o.VTEP, "vtep", "", "this host's VXLAN tunnel endpoint: one of its addresses, on the network the hosts reach each other on")
	fs.DurationVar(&o.LeaseTTL, "lease", 10*time.Second, "how long a host that stops heartbeating is shown up")
	fs.StringVar(&o.PeerAPI, "peer-api", "", fmt.Sprintf("where this host serves the other hosts' reads (counters, MAC tables, VM state), with the cluster's token (VTEP:%d if not given)", api.PeerPort))
}

// Version is vswitchd's version as the cluster shows it: the module's
// version, or its VCS revision.
func Version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 && (v == "" || v == "(devel)") {
			v = s.Value[:12]
		}
	}
	if v == "" {
		v = "(devel)"
	}
	return v
}

// joinCluster checks the options and joins: it returns the membership, the
// tunnel endpoint and the MTU adapters of spanning switches get (the
// endpoint's interface's, less the VXLAN overhead).
// kernel says whether this host has the kernel data path.
func joinCluster(o *ClusterOptions, st *store.Store, initial *config.Config, kernel bool, log *slog.Logger) (*cluster.Cluster, netip.Addr, int, error) {
	if o.HostName == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, netip.Addr{}, 0, err
		}
		o.HostName = h
	}
	if !config.HostNameOK(o.HostName) {
		return nil, netip.Addr{}, 0, fmt.Errorf("--host-name %q: want %s", o.HostName, config.HostNameRule)
	}
	vtep, mtu, err := tunnelEndpoint(o.VTEP)
	if err != nil {
		return nil, netip.Addr{}, 0, err
	}
	if o.PeerAPI == "" {
		o.PeerAPI = net.JoinHostPort(vtep.String(), fmt.Sprint(api.PeerPort))
	}
	var tc *tls.Config
	if o.CACert != "" || o.Cert != "" || o.Key != "" {
		if tc, err = etcdTLS(*o); err != nil {
			return nil, netip.Addr{}, 0, err
		}
	}
	for _, e := range o.Etcd {
		if !strings.HasPrefix(e, "http://") && !strings.HasPrefix(e, "https://") {
			return nil, netip.Addr{}, 0, fmt.Errorf("--etcd %q: want an endpoint URL, http://HOST:PORT or https://HOST:PORT", e)
		}
	}
	cl, err := cluster.Join(cluster.Options{Endpoints: o.Etcd, TLS: tc, Host: o.HostName, VTEP: vtep, MTU: mtu, API: o.PeerAPI, Version: Version(), Kernel: kernel,
		Cache: st, Initial: initial, Log: log, LeaseTTL: o.LeaseTTL})
	if err != nil {
		return nil, netip.Addr{}, 0, err
	}
	log.Info("joined the cluster", "host", o.HostName, "vtep", vtep, "etcd", strings.Join(o.Etcd, ","), "overlay-mtu", mtu)
	return cl, vtep, mtu, nil
}

// tunnelEndpoint checks that addr is one of the host's addresses and
// returns it with the MTU frames inside a tunnel from it can have.
func tunnelEndpoint(addr string) (netip.Addr, int, error) {
	if addr == "" {
		return netip.Addr{}, 0, errors.New("--vtep is required with --etcd: one of this host's addresses, on the network the hosts reach each other on")
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("--vtep %q: want an IP address of this host", addr)
	}
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return netip.Addr{}, 0, err
	}
	var have []string
	for _, x := range addrs {
		ip, _ := netip.AddrFromSlice(x.IP)
		ip = ip.Unmap()
		if ip != a {
			have = append(have, ip.String())
			continue
		}
		l, err := netlink.LinkByIndex(x.LinkIndex)
		if err != nil {
			return netip.Addr{}, 0, err
		}
		overhead := 50 // outer IPv4 20 + UDP 8 + VXLAN 8 + inner Ethernet 14
		if a.Is6() {
			overhead = 70
		}
		return a, l.Attrs().MTU - overhead, nil
	}
	return netip.Addr{}, 0, fmt.Errorf("--vtep %s: not an address of this host (it has %s)", a, strings.Join(have, ", "))
}

func etcdTLS(o ClusterOptions) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CACert != "" {
		pem, err := os.ReadFile(o.CACert)
		if err != nil {
			return nil, fmt.Errorf("--etcd-cacert: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--etcd-cacert %s: no PEM certificate in it", o.CACert)
		}
	}
	if (o.Cert == "") != (o.Key == "") {
		return nil, errors.New("--etcd-cert and --etcd-key go together")
	}
	if o.Cert != "" {
		c, err := tls.LoadX509KeyPair(o.Cert, o.Key)
		if err != nil {
			return nil, fmt.Errorf("--etcd-cert/--etcd-key: %w", err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	return tc, nil
}
