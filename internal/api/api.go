// Package api is the wire format of vswitchd's REST API, shared by the
// server and its clients: resource documents (the config types), the
// result of a write, the error envelope with stable codes, and the read
// models (MAC table, port counters, topology). It is pure data.
package api

import (
	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/field"
)

// HostHeader asks for a read from another host of the cluster: the host
// that gets the request fetches the answer from that host's API.
const HostHeader = "Vswitch-Host"

// PeerPort is where a cluster host serves the other hosts' reads, on its VTEP.
const PeerPort = 8471

// SocketPath is where vswitchd listens by default (mode 0600: root only).
const SocketPath = "/run/vswitch/vswitchd.sock"

// Error codes: stable, for scripts.
const (
	CodeInvalid  = "invalid"   // 400: the input is wrong; Problems says where
	CodeNotFound = "not_found" // 404
	CodeInUse    = "in_use"    // 409: e.g. a switch that still has adapters
	CodeConflict = "conflict"  // 409: e.g. the store is locked
	CodeTooLarge = "too_large" // 413
	CodeFailed   = "failed"    // 500: the host refused a step; Step says which
	// CodeUnauthorized: 401, a peer listener's token is missing or wrong.
	CodeUnauthorized = "unauthorized"
)

// Error is the body of every failed request: {"error": {...}}.
type Error struct {
	Code     string         `json:"code"`
	Message  string         `json:"message"`
	Problems []*field.Error `json:"problems,omitempty"`
	Step     string         `json:"step,omitempty"`
	// Read is set by a client whose request only read (GET): nothing
	// could have been changed, so "nothing was changed" is not news.
	Read bool `json:"-"`
}

// ErrorBody wraps Error.
type ErrorBody struct {
	Error Error `json:"error"`
}

func (e *Error) Error() string { return e.Message }

// Result is the answer to a successful write.
type Result struct {
	Revision uint64          `json:"revision"`
	Changes  []string        `json:"changes"`            // what the daemon did; empty: no change
	Warnings []string        `json:"warnings,omitempty"` // e.g. the MAC pool at 90 %
	Adapter  *config.Adapter `json:"adapter,omitempty"`  // an added adapter, with its MAC
	// Adapters are the adapters one write added (POST /v1/adapters with an
	// array), with their MACs, in the order given.
	Adapters []config.Adapter `json:"adapters,omitempty"`
}

// State is GET /v1/state: the whole desired state and its revision.
type State struct {
	Revision uint64        `json:"revision"`
	Config   config.Config `json:"config"`
	// Datapaths: the data path each switch of the answering host runs
	// on there (kernel or userspace: its auto setting resolved).
	Datapaths map[string]string `json:"datapaths,omitempty"`
}

// FDBEntry is a row of a switch's MAC table.
type FDBEntry struct {
	VLAN       uint16  `json:"vlan"` // 0: a static entry on every VLAN of the port
	MAC        string  `json:"mac"`
	Port       string  `json:"port"`
	Static     bool    `json:"static"`
	AgeSeconds float64 `json:"ageSeconds"`
}

// FDBPage is one page of a switch's MAC table, sorted by VLAN and then MAC
// (GET /v1/switches/{name}/fdb?limit=&after=&vlan=&mac=&port=).
type FDBPage struct {
	Entries []FDBEntry `json:"entries"`
	// Next is the cursor of the next page ("VLAN/MAC" of this page's last
	// row, for the after parameter); "" on the last page.
	Next string `json:"next"`
}

// FDB page sizes: the limit parameter's default and maximum.
const (
	FDBPageDefault = 1000
	FDBPageMax     = 10000
)

// PortStats are one port's counters.
type PortStats struct {
	Switch       string            `json:"switch"`
	Port         string            `json:"port"`
	RxPackets    uint64            `json:"rxPackets"`
	RxBytes      uint64            `json:"rxBytes"`
	TxPackets    uint64            `json:"txPackets"`
	TxBytes      uint64            `json:"txBytes"`
	Floods       uint64            `json:"floods"`
	LearnRefused uint64            `json:"learnRefused"`
	Moves        uint64            `json:"moves"`
	Segmented    uint64            `json:"segmented"` // super-frames cut in software for this port (it takes no TSO/USO)
	Drops        map[string]uint64 `json:"drops"`
	// Backend are the port backend's own counters, by name: a QEMU peer's
	// "bad-peers", "oversize", a packet socket's "ring-drops" and so on.
	Backend map[string]uint64 `json:"backend,omitempty"`
}

// SwitchStats are a running switch's counters: its own and its ports'
// (GET /v1/switches/{name}/stats; GET /v1/stats/switches lists them all).
type SwitchStats struct {
	Switch string `json:"switch"`
	// SuppressedMoves counts the station moves not reported (logged)
	// because of the rate limit on move reports.
	SuppressedMoves uint64      `json:"suppressedMoves"`
	Ports           []PortStats `json:"ports"`
}

// Topology is the tree vswitchctl topology prints.
type Topology struct {
	Switches []TopologySwitch `json:"switches"`
	// In a cluster: the hosts, and the host that answered ("" on a single host).
	Hosts []HostInfo `json:"hosts,omitempty"`
	Self  string     `json:"self,omitempty"`
	// VMs are every VM, with or without adapters.
	VMs []TopologyVM `json:"vms"`
}

// TopologyVM is a VM in the topology.
type TopologyVM struct {
	Name string `json:"name"`
	Host string `json:"host,omitempty"` // in a cluster
	// State is the QEMU state of a VM vswitchd runs (stopped, running,
	// exited); "" for one it does not run (a namespace workload) or that
	// lives on another host.
	State string `json:"state,omitempty"`
}

// TopologySwitch is a switch with what hangs off it.
type TopologySwitch struct {
	Name        string         `json:"name"`
	Type        string         `json:"type"`
	DefaultVLAN uint16         `json:"defaultVLAN"`
	Uplink      *TopologyPort  `json:"uplink,omitempty"`
	HostAdapter *TopologyPort  `json:"hostAdapter,omitempty"`
	Adapters    []TopologyPort `json:"adapters"`
	Running     bool           `json:"running"` // on the host that answered
	// Datapath is what forwards the switch's frames: kernel or userspace
	// (on the host that answered, or on the switch's host when it is
	// known; auto when it is not), as its setting (DatapathSetting: auto,
	// kernel or userspace) resolves there.
	Datapath        string `json:"datapath"`
	DatapathSetting string `json:"datapathSetting"`
	// In a cluster: the host a local switch is on, or the hosts a spanning
	// switch spans ("" every host), its VNI and the MTU its adapters get.
	Host      string `json:"host,omitempty"`
	Span      bool   `json:"span,omitempty"`
	SpanHosts string `json:"spanHosts,omitempty"`
	VNI       uint32 `json:"vni,omitempty"`
	MTU       int    `json:"mtu,omitempty"`
}

// TopologyPort is one port in the tree.
type TopologyPort struct {
	Name string `json:"name"`
	VLAN string `json:"vlan"`
	// The VLANs the port carries as the 802.1Q model has them: those that
	// leave it untagged and those that leave it tagged (ranges, "1-10,20").
	Untagged   string `json:"untagged,omitempty"`
	Tagged     string `json:"tagged,omitempty"`
	VM         string `json:"vm,omitempty"` // an adapter's VM
	MAC        string `json:"mac,omitempty"`
	Type       string `json:"type,omitempty"`
	Attachment string `json:"attachment,omitempty"`
	State      string `json:"state,omitempty"` // PortUp, PortWaiting, PortFailed or PortDown; "" on another host
	Host       string `json:"host,omitempty"`  // in a cluster: the host the adapter's VM is on
}

// Console is GET /v1/console (and POST /v1/console/token, which
// replaces the token): the web console's login URL, token included.
type Console struct {
	URL string `json:"url"`
}

// VMStatus is a VM that vswitchd runs with QEMU.
type VMStatus struct {
	Name     string `json:"name"`
	State    string `json:"state"` // stopped, running, exited
	ExitCode int    `json:"exitCode"`
	PID      int    `json:"pid,omitempty"`
	Accel    string `json:"accel,omitempty"` // kvm or tcg
	Note     string `json:"note,omitempty"`  // why this accelerator, or why it exited
}

// Port states (PortState.State).
const (
	PortUp      = "up"      // the port is on its switch
	PortWaiting = "waiting" // its place (a namespace) does not exist yet: retried
	PortFailed  = "failed"  // the host refused a step: Reason says which; retried
	PortDown    = "down"    // not meant to be up now: its VM is not running
)

// PortState is one port of the state as it is on the host (GET /v1/ports).
type PortState struct {
	Switch string `json:"switch"`
	Port   string `json:"port"` // "uplink", "host", or the adapter's VM/NAME
	State  string `json:"state"`
	Reason string `json:"reason,omitempty"`
}

// HostInfo is a row of GET /v1/hosts: a host of the cluster (on a single
// host, the one host with an empty name).
type HostInfo struct {
	Name    string `json:"name"`
	VTEP    string `json:"vtep"`
	MTU     int    `json:"mtu"` // what adapters of spanning switches get there
	API     string `json:"api"` // host:port where it serves the other hosts' reads
	Version string `json:"version"`
	// KernelPath: the host has the kernel data path (its auto switches
	// run there).
	KernelPath bool   `json:"kernelPath"`
	Started    string `json:"started"`  // RFC 3339
	LastSeen   string `json:"lastSeen"` // RFC 3339
	Up         bool   `json:"up"`
	Self       bool   `json:"self,omitempty"` // the host that answered
}

// CodeUnavailable is a write refused because the cluster's store (etcd)
// cannot be reached: 503, nothing was changed.
const CodeUnavailable = "unavailable"

// Move is the body of POST /v1/vms/{name}/move.
type Move struct {
	To    string `json:"to"`              // the host the VM goes to
	Check bool   `json:"check,omitempty"` // only say what would block it
}

// MoveResult is its answer: what blocks the move (check), or what it did.
type MoveResult struct {
	VM       string   `json:"vm"`
	From     string   `json:"from"`
	To       string   `json:"to"`
	Blockers []string `json:"blockers"` // empty: nothing blocks it
	Moved    bool     `json:"moved"`
	Result   *Result  `json:"result,omitempty"`
}
