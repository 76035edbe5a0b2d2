package apiserver

import (
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/vswitch/vswitch/internal/api"
	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/daemon"
	"github.com/vswitch/vswitch/internal/field"
	"github.com/vswitch/vswitch/internal/vlan"
)

// load reads the state for a GET, or answers the error.
func (s *Server) load(w http.ResponseWriter) (*config.Config, uint64, bool) {
	c, rev, err := s.c.State()
	if err != nil {
		s.fail(w, err)
		return nil, 0, false
	}
	return c, rev, true
}

func (s *Server) getState(w http.ResponseWriter, r *http.Request) {
	if c, rev, ok := s.load(w); ok {
		writeJSON(w, http.StatusOK, api.State{Revision: rev, Config: *c, Datapaths: s.c.Datapaths(c)})
	}
}

func (s *Server) getHost(w http.ResponseWriter, r *http.Request) {
	if c, _, ok := s.load(w); ok {
		writeJSON(w, http.StatusOK, c.Host)
	}
}

// write decodes the body as a T, then runs edit on the state with it.
func write[T any](s *Server, w http.ResponseWriter, r *http.Request, edit func(c *config.Config, v T) (*api.Result, error)) {
	var v T
	if err := decode(r, &v); err != nil {
		s.fail(w, err)
		return
	}
	s.change(w, func(c *config.Config) (*api.Result, error) { return edit(c, v) })
}

func (s *Server) putHost(w http.ResponseWriter, r *http.Request) {
	write(s, w, r, func(c *config.Config, h config.Host) (*api.Result, error) {
		c.Host = h
		return nil, nil
	})
}

// place fills in where a switch that is added (old nil) or changed is: a
// switch that does not span on the host asked unless one is given, a new
// spanning one on its hosts sorted and once each, a spanning one with a
// VNI (the lowest free unless one is given); a switch that starts
// spanning leaves its host, one that stops loses its VNI, hosts and
// remote endpoints.
func (s *Server) place(c *config.Config, sw, old *config.Switch) error {
	if !sw.Span {
		if old != nil && old.Span {
			sw.VNI, sw.Hosts, sw.RemoteVTEPs = 0, "", ""
		}
		if old == nil || old.Span {
			sw.Host = cmp.Or(sw.Host, s.c.HostName())
		}
		return nil
	}
	if old != nil && !old.Span {
		sw.Host = ""
	}
	if hosts := sw.HostList(); old == nil && hosts != nil {
		slices.Sort(hosts)
		sw.Hosts = strings.Join(slices.Compact(hosts), ",")
	}
	if sw.VNI == 0 {
		vni, err := c.AllocateVNI()
		if err != nil {
			return err
		}
		sw.VNI = vni
	}
	return nil
}

func (s *Server) listHosts(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, orEmpty(s.c.Hosts()))
}

func (s *Server) listSwitches(w http.ResponseWriter, r *http.Request) {
	if c, _, ok := s.load(w); ok {
		writeJSON(w, http.StatusOK, orEmpty(c.Switches))
	}
}

func (s *Server) getSwitch(w http.ResponseWriter, r *http.Request) {
	if c, _, ok := s.load(w); ok {
		if sw := c.Switch(r.PathValue("name")); sw != nil {
			writeJSON(w, http.StatusOK, sw)
			return
		}
		s.fail(w, fmt.Errorf("switch %q: %w", r.PathValue("name"), config.ErrNotFound))
	}
}

func (s *Server) addSwitch(w http.ResponseWriter, r *http.Request) {
	write(s, w, r, func(c *config.Config, sw config.Switch) (*api.Result, error) {
		if old := c.Switch(sw.Name); old != nil {
			allowed := "a name no other switch has"
			if old.Span || old.Host != "" {
				allowed += " (switch " + sw.Name + " is " + old.Where() + ")"
			}
			return nil, field.New("name", sw.Name, allowed)
		}
		if err := s.place(c, &sw, nil); err != nil {
			return nil, err
		}
		c.AddSwitch(sw)
		return nil, nil
	})
}

func (s *Server) setSwitch(w http.ResponseWriter, r *http.Request) {
	write(s, w, r, func(c *config.Config, sw config.Switch) (*api.Result, error) {
		if sw.Name != r.PathValue("name") {
			return nil, field.New("name", sw.Name, "the name in the path ("+r.PathValue("name")+"); a switch cannot be renamed")
		}
		if err := s.place(c, &sw, c.Switch(sw.Name)); err != nil {
			return nil, err
		}
		return nil, c.SetSwitch(sw)
	})
}

func (s *Server) removeSwitch(w http.ResponseWriter, r *http.Request) {
	force := r.URL.Query().Get("force") == "true"
	s.change(w, func(c *config.Config) (*api.Result, error) { return nil, c.RemoveSwitch(r.PathValue("name"), force) })
}

func (s *Server) listVMs(w http.ResponseWriter, r *http.Request) {
	if c, _, ok := s.load(w); ok {
		writeJSON(w, http.StatusOK, orEmpty(c.VMs))
	}
}

func (s *Server) addVM(w http.ResponseWriter, r *http.Request) {
	write(s, w, r, func(c *config.Config, vm config.VM) (*api.Result, error) {
		if c.VM(vm.Name) != nil {
			return nil, field.New("name", vm.Name, "a name no other VM has")
		}
		if vm.Host == "" {
			vm.Host = s.c.HostName() // in a cluster, on the host that was asked
		}
		c.AddVM(vm)
		return nil, nil
	})
}

func (s *Server) removeVM(w http.ResponseWriter, r *http.Request) {
	force := r.URL.Query().Get("force") == "true"
	s.change(w, func(c *config.Config) (*api.Result, error) { return nil, c.RemoveVM(r.PathValue("name"), force) })
}

func (s *Server) listAdapters(w http.ResponseWriter, r *http.Request) {
	if c, _, ok := s.load(w); ok {
		writeJSON(w, http.StatusOK, orEmpty(c.Adapters))
	}
}

func (s *Server) getAdapter(w http.ResponseWriter, r *http.Request) {
	if c, _, ok := s.load(w); ok {
		if a := c.Adapter(r.PathValue("vm"), r.PathValue("name")); a != nil {
			writeJSON(w, http.StatusOK, a)
			return
		}
		s.fail(w, fmt.Errorf("adapter %s/%s: %w", r.PathValue("vm"), r.PathValue("name"), config.ErrNotFound))
	}
}

// addAdapter adds one adapter (a JSON object) or several in one write (an
// array: all of them or, if one is refused, none).
func (s *Server) addAdapter(w http.ResponseWriter, r *http.Request) {
	var raw json.RawMessage
	if err := decode(r, &raw); err != nil {
		s.fail(w, err)
		return
	}
	batch := bytes.HasPrefix(bytes.TrimLeft(raw, " \t\r\n"), []byte("["))
	as := make([]config.Adapter, 1)
	into := any(&as[0])
	if batch {
		into = &as
	}
	if err := decodeFrom(bytes.NewReader(raw), into); err != nil {
		s.fail(w, err)
		return
	}
	s.change(w, func(c *config.Config) (*api.Result, error) {
		if len(as) == 0 {
			return nil, field.New("adapters", "[]", "at least one adapter")
		}
		res, nearlyFull := &api.Result{}, false
		for _, a := range as {
			nameField := "name"
			if batch {
				nameField = fmt.Sprintf("adapters[%s].name", a.ID())
			}
			if c.Adapter(a.VM, a.Name) != nil {
				return nil, field.New(nameField, a.Name, "a name no other adapter of VM "+a.VM+" has")
			}
			added, nearly, err := c.AddAdapter(a)
			if err != nil {
				return nil, err
			}
			res.Adapters = append(res.Adapters, added)
			nearlyFull = nearlyFull || nearly
		}
		if !batch {
			res.Adapter, res.Adapters = &res.Adapters[0], nil
		}
		if nearlyFull {
			used, size := c.PoolUsage()
			msg := fmt.Sprintf("the host's MAC pool is %d%% used (%d of %d)", used*100/size, used, size)
			res.Warnings = append(res.Warnings, msg)
			s.log.Warn(msg, "min", c.Host.MACMin, "max", c.Host.MACMax)
		}
		return res, nil
	})
}

func (s *Server) setAdapter(w http.ResponseWriter, r *http.Request) {
	write(s, w, r, func(c *config.Config, a config.Adapter) (*api.Result, error) {
		if a.VM != r.PathValue("vm") || a.Name != r.PathValue("name") {
			return nil, field.New("vm/name", a.ID(), "the adapter in the path ("+r.PathValue("vm")+"/"+r.PathValue("name")+")")
		}
		return nil, c.SetAdapter(a)
	})
}

func (s *Server) removeAdapter(w http.ResponseWriter, r *http.Request) {
	s.change(w, func(c *config.Config) (*api.Result, error) {
		return nil, c.RemoveAdapter(r.PathValue("vm"), r.PathValue("name"))
	})
}

// running returns the running switch the path names, or answers 404.
func (s *Server) running(w http.ResponseWriter, r *http.Request) (daemon.LiveSwitch, bool) {
	sw := s.c.Switch(r.PathValue("name"))
	if sw == nil {
		s.fail(w, fmt.Errorf("running switch %q: %w", r.PathValue("name"), config.ErrNotFound))
	}
	return sw, sw != nil
}

// portStats returns the counters of a running switch's ports.
func portStats(name string, sw daemon.LiveSwitch) []api.PortStats {
	out := []api.PortStats{}
	for _, p := range sw.Ports() {
		c := p.Counters
		out = append(out, api.PortStats{Switch: name, Port: p.Name, RxPackets: c.RxPackets, RxBytes: c.RxBytes,
			TxPackets: c.TxPackets, TxBytes: c.TxBytes, Floods: c.Floods, LearnRefused: c.LearnRefused, Moves: c.Moves,
			Segmented: c.Segmented, Drops: c.DropsByReason(), Backend: p.Backend})
	}
	return out
}

// switchStats is a running switch's counters.
func switchStats(name string, sw daemon.LiveSwitch) api.SwitchStats {
	return api.SwitchStats{Switch: name, SuppressedMoves: sw.SuppressedMoves(), Ports: portStats(name, sw)}
}

func (s *Server) getSwitchStats(w http.ResponseWriter, r *http.Request) {
	if sw, ok := s.running(w, r); ok {
		writeJSON(w, http.StatusOK, switchStats(r.PathValue("name"), sw))
	}
}

func (s *Server) getPorts(w http.ResponseWriter, r *http.Request) {
	if sw, ok := s.running(w, r); ok {
		writeJSON(w, http.StatusOK, portStats(r.PathValue("name"), sw))
	}
}

// eachRunning calls f for every switch of the state that runs, in the
// state's order.
func (s *Server) eachRunning(w http.ResponseWriter, f func(name string, sw daemon.LiveSwitch)) bool {
	c, _, ok := s.load(w)
	if !ok {
		return false
	}
	for _, cs := range c.Switches {
		if sw := s.c.Switch(cs.Name); sw != nil {
			f(cs.Name, sw)
		}
	}
	return true
}

func (s *Server) listSwitchStats(w http.ResponseWriter, r *http.Request) {
	out := []api.SwitchStats{}
	if s.eachRunning(w, func(name string, sw daemon.LiveSwitch) { out = append(out, switchStats(name, sw)) }) {
		writeJSON(w, http.StatusOK, out)
	}
}

func (s *Server) getStats(w http.ResponseWriter, r *http.Request) {
	out := []api.PortStats{}
	if s.eachRunning(w, func(name string, sw daemon.LiveSwitch) { out = append(out, portStats(name, sw)...) }) {
		writeJSON(w, http.StatusOK, out)
	}
}

// getPortStates answers whether each port of the state is up on the host.
func (s *Server) getPortStates(w http.ResponseWriter, r *http.Request) {
	if c, _, ok := s.load(w); ok {
		writeJSON(w, http.StatusOK, orEmpty(s.c.PortStates(c)))
	}
}

func (s *Server) getTopology(w http.ResponseWriter, r *http.Request) {
	t, err := s.topology(r.URL.Query().Get("host"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

// topology is the whole tree with the ports' and VMs' live states, or
// only what is on host.
func (s *Server) topology(host string) (api.Topology, error) {
	c, _, err := s.c.StateShared() // only read
	if err != nil {
		return api.Topology{}, err
	}
	states := map[[2]string]string{}
	for _, ps := range s.c.PortStates(c) {
		states[[2]string{ps.Switch, ps.Port}] = ps.State
	}
	if host != "" {
		c = c.ForHost(host)
	}
	t := Topology(c, func(name string) bool { return s.c.Switch(name) != nil })
	t.Hosts, t.Self = s.c.Hosts(), s.c.HostName()
	s.resolveDatapaths(c, &t)
	for i := range t.VMs {
		vm := c.VM(t.VMs[i].Name)
		if (vm.Host == "" || vm.Host == t.Self) && (vm.Kernel != "" || vm.Disk != "") {
			t.VMs[i].State = s.c.VMStatus(vm.Name).State
		}
	}
	for i := range t.Switches {
		ts := &t.Switches[i]
		if ts.Span {
			ts.MTU = s.c.OverlayMTU()
		}
		if ts.Uplink != nil {
			ts.Uplink.State = states[[2]string{ts.Name, daemon.KindUplink}]
		}
		if ts.HostAdapter != nil {
			ts.HostAdapter.State = states[[2]string{ts.Name, daemon.KindHost}]
		}
		for j := range ts.Adapters {
			ts.Adapters[j].State = states[[2]string{ts.Name, ts.Adapters[j].Name}]
		}
	}
	return t, nil
}

// resolveDatapaths says what each switch runs on: here, as this host
// resolves its setting, or on the host of a switch that is not here (as
// that host registered its kernel data path); a spanning switch that is
// not here keeps its setting.
func (s *Server) resolveDatapaths(c *config.Config, t *api.Topology) {
	kernel := s.c.KernelHosts()
	for i := range t.Switches {
		ts := &t.Switches[i]
		sw := c.Switch(ts.Name)
		host := sw.Host
		if sw.On(t.Self) {
			host = t.Self
		} else if sw.Span {
			continue
		}
		if k, ok := kernel[host]; ok {
			ts.Datapath = string(sw.RunsOn(k))
		}
	}
}

// Topology builds the tree of switches, uplinks, host adapters and adapters
// (each switch's data path as set: resolveDatapaths says where it runs).
func Topology(c *config.Config, running func(string) bool) api.Topology {
	t := api.Topology{Switches: []api.TopologySwitch{}, VMs: []api.TopologyVM{}}
	vmHost := map[string]string{}
	for _, vm := range c.VMs {
		vmHost[vm.Name] = vm.Host
		t.VMs = append(t.VMs, api.TopologyVM{Name: vm.Name, Host: vm.Host})
	}
	slices.SortFunc(t.VMs, func(x, y api.TopologyVM) int { return strings.Compare(x.Name, y.Name) })
	for i := range c.Switches {
		sw := &c.Switches[i]
		ts := api.TopologySwitch{Name: sw.Name, Type: string(sw.Type), DefaultVLAN: uint16(sw.VLANOrDefault()),
			Adapters: []api.TopologyPort{}, Running: running(sw.Name), Datapath: string(cmp.Or(sw.Datapath, config.Userspace)),
			DatapathSetting: string(cmp.Or(sw.Datapath, config.Userspace)),
			Host:            sw.Host, Span: sw.Span, SpanHosts: sw.Hosts, VNI: sw.VNI}
		if sw.Type == config.External {
			v := "trunk 1-4094 native " + sw.VLANOrDefault().String()
			if sw.UplinkVLAN != (config.VLAN{}) {
				v = sw.UplinkVLAN.String()
			}
			ts.Uplink = &api.TopologyPort{Name: sw.Uplink, VLAN: v}
			ts.Uplink.Untagged, ts.Uplink.Tagged = carried(sw.UplinkPort())
		}
		if sw.ManagementOS() {
			ts.HostAdapter = &api.TopologyPort{Name: sw.Name, VLAN: sw.HostVLAN.String()}
			ts.HostAdapter.Untagged, ts.HostAdapter.Tagged = carried(sw.HostVLAN.Port(sw.VLANOrDefault()))
		}
		for j := range c.Adapters {
			a := &c.Adapters[j]
			if a.Switch != sw.Name {
				continue
			}
			att := string(a.Attachment.Kind)
			if a.Attachment.Namespace != "" {
				att += " " + a.Attachment.Namespace
			}
			tp := api.TopologyPort{Name: a.ID(), VLAN: a.VLAN.String(), MAC: a.MAC.String(), VM: a.VM,
				Type: string(a.TypeOrDefault()), Attachment: strings.TrimSpace(att), Host: vmHost[a.VM]}
			tp.Untagged, tp.Tagged = carried(a.VLAN.Port(sw.VLANOrDefault()))
			ts.Adapters = append(ts.Adapters, tp)
		}
		slices.SortFunc(ts.Adapters, func(x, y api.TopologyPort) int { return strings.Compare(x.Name, y.Name) })
		t.Switches = append(t.Switches, ts)
	}
	slices.SortFunc(t.Switches, func(x, y api.TopologySwitch) int { return strings.Compare(x.Name, y.Name) })
	return t
}

// carried names the VLANs a port with 802.1Q model p carries untagged
// and tagged (none if the model is not one: stored states are valid).
func carried(p vlan.Port, err error) (untagged, tagged string) {
	if err != nil {
		return "", ""
	}
	t := p.Tagged()
	return p.Untagged.String(), t.String()
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (s *Server) setVM(w http.ResponseWriter, r *http.Request) {
	write(s, w, r, func(c *config.Config, vm config.VM) (*api.Result, error) {
		if vm.Name != r.PathValue("name") {
			return nil, field.New("name", vm.Name, "the name in the path ("+r.PathValue("name")+"); a VM cannot be renamed")
		}
		return nil, c.SetVM(vm)
	})
}

// startVM runs a VM with QEMU.
func (s *Server) startVM(w http.ResponseWriter, r *http.Request) {
	st, err := s.c.StartVM(r.PathValue("name"))
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// moveVM moves a VM to another host of the cluster, or says what blocks it.
func (s *Server) moveVM(w http.ResponseWriter, r *http.Request) {
	var m api.Move
	if err := decode(r, &m); err != nil {
		s.fail(w, err)
		return
	}
	res, err := s.c.MoveVM(r.PathValue("name"), m.To, m.Check)
	if err != nil {
		s.fail(w, err)
		return
	}
	res.Blockers = orEmpty(res.Blockers)
	writeJSON(w, http.StatusOK, res)
}

// stopVM stops QEMU; the exit takes the VM's adapters down.
func (s *Server) stopVM(w http.ResponseWriter, r *http.Request) {
	st, err := s.c.StopVM(r.PathValue("name"), 10*time.Second)
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// A VM's status and console are its host's: asked elsewhere in a
// cluster, they are fetched from it.
func (s *Server) vmStatus(w http.ResponseWriter, r *http.Request) {
	if c, _, ok := s.load(w); ok {
		vm := c.VM(r.PathValue("name"))
		if vm == nil {
			s.fail(w, fmt.Errorf("VM %q: %w", r.PathValue("name"), config.ErrNotFound))
			return
		}
		if vm.Host == "" || vm.Host == s.c.HostName() {
			writeJSON(w, http.StatusOK, s.c.VMStatus(vm.Name))
			return
		}
		addr, token, err := s.c.Peer(vm.Host)
		switch {
		case errors.Is(err, daemon.ErrHostDown):
			writeJSON(w, http.StatusOK, api.VMStatus{Name: vm.Name, State: "unknown", Note: "its host " + vm.Host + " is down"})
		case err != nil:
			s.fail(w, err)
		default:
			s.proxy(w, r, vm.Host, addr, token)
		}
	}
}

func (s *Server) vmConsole(w http.ResponseWriter, r *http.Request) {
	if c, _, ok := s.load(w); ok {
		if vm := c.VM(r.PathValue("name")); vm != nil && s.onHost(w, r, vm.Host) {
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"console": s.c.VMConsole(r.PathValue("name"))})
	}
}

// listNICs names the interfaces of this host an external switch could
// take as its uplink.
func (s *Server) listNICs(w http.ResponseWriter, r *http.Request) {
	nics, err := s.c.NICs()
	if err != nil {
		s.fail(w, err)
		return
	}
	writeJSON(w, http.StatusOK, nics)
}
