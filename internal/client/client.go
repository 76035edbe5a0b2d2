// Package client talks to vswitchd's REST API over its unix socket. Every
// failure the daemon reports comes back as *api.Error with its stable code.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/vswitch/vswitch/internal/api"
	"github.com/vswitch/vswitch/internal/config"
)

// ErrUnreachable: no daemon answers on the socket.
var ErrUnreachable = errors.New("vswitchd is not reachable")

// Client is an API client.
type Client struct {
	hc     *http.Client
	socket string
	host   string // reads from this host of the cluster ("": the daemon's own)
}

// OnHost returns a client whose reads are answered by another host of
// the cluster (through the daemon on the socket); "" is the daemon's own.
func (c *Client) OnHost(host string) *Client {
	cp := *c
	cp.host = host
	return &cp
}

// New returns a client for the daemon listening on socket.
func New(socket string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	return &Client{hc: &http.Client{Transport: tr, Timeout: 60 * time.Second}, socket: socket}
}

func (c *Client) do(method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, "http://vswitchd"+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if c.host != "" {
		req.Header.Set(api.HostHeader, c.host)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%w at %s: %w", ErrUnreachable, c.socket, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var eb api.ErrorBody
		if err := json.Unmarshal(b, &eb); err != nil || eb.Error.Code == "" {
			return &api.Error{Code: api.CodeFailed, Message: fmt.Sprintf("HTTP %d: %s", resp.StatusCode, b)}
		}
		eb.Error.Read = method == "GET"
		return &eb.Error
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

func esc(s string) string { return url.PathEscape(s) }

// State returns the whole desired state.
func (c *Client) State() (api.State, error) {
	var s api.State
	return s, c.do("GET", "/v1/state", nil, &s)
}

// MoveVM moves a VM to another host of the cluster (check: only says
// what would block it).
func (c *Client) MoveVM(name string, m api.Move) (api.MoveResult, error) {
	var r api.MoveResult
	return r, c.do("POST", "/v1/vms/"+url.PathEscape(name)+"/move", m, &r)
}

// Hosts lists the hosts of the cluster (none on a single host).
func (c *Client) Hosts() ([]api.HostInfo, error) {
	var out []api.HostInfo
	return out, c.do("GET", "/v1/hosts", nil, &out)
}

// Console returns the web console's login URL; rotate replaces its token first.
func (c *Client) Console(rotate bool) (api.Console, error) {
	var out api.Console
	if rotate {
		return out, c.do("POST", "/v1/console/token", nil, &out)
	}
	return out, c.do("GET", "/v1/console", nil, &out)
}

// SetHost sets the host's MAC pool.
func (c *Client) SetHost(h config.Host) (api.Result, error) {
	var r api.Result
	return r, c.do("PUT", "/v1/host", h, &r)
}

// Switch returns one switch.
func (c *Client) Switch(name string) (config.Switch, error) {
	var s config.Switch
	return s, c.do("GET", "/v1/switches/"+esc(name), nil, &s)
}

// AddSwitch adds a switch.
func (c *Client) AddSwitch(s config.Switch) (api.Result, error) {
	var r api.Result
	return r, c.do("POST", "/v1/switches", s, &r)
}

// SetSwitch replaces a switch.
func (c *Client) SetSwitch(s config.Switch) (api.Result, error) {
	var r api.Result
	return r, c.do("PUT", "/v1/switches/"+esc(s.Name), s, &r)
}

// RemoveSwitch removes a switch (and its adapters when force).
func (c *Client) RemoveSwitch(name string, force bool) (api.Result, error) {
	var r api.Result
	return r, c.do("DELETE", fmt.Sprintf("/v1/switches/%s?force=%t", esc(name), force), nil, &r)
}

// AddVM adds a VM.
func (c *Client) AddVM(vm config.VM) (api.Result, error) {
	var r api.Result
	return r, c.do("POST", "/v1/vms", vm, &r)
}

// RemoveVM removes a VM (and its adapters when force).
func (c *Client) RemoveVM(name string, force bool) (api.Result, error) {
	var r api.Result
	return r, c.do("DELETE", fmt.Sprintf("/v1/vms/%s?force=%t", esc(name), force), nil, &r)
}

// Adapter returns one adapter.
func (c *Client) Adapter(vm, name string) (config.Adapter, error) {
	var a config.Adapter
	return a, c.do("GET", "/v1/vms/"+esc(vm)+"/adapters/"+esc(name), nil, &a)
}

// AddAdapter adds an adapter; the result carries it with its MAC.
func (c *Client) AddAdapter(a config.Adapter) (api.Result, error) {
	var r api.Result
	return r, c.do("POST", "/v1/adapters", a, &r)
}

// AddAdapters adds adapters in one write: all of them, or none if one is
// refused. The result lists them with their MACs.
func (c *Client) AddAdapters(as []config.Adapter) (api.Result, error) {
	var r api.Result
	return r, c.do("POST", "/v1/adapters", as, &r)
}

// SetAdapter replaces an adapter.
func (c *Client) SetAdapter(a config.Adapter) (api.Result, error) {
	var r api.Result
	return r, c.do("PUT", "/v1/vms/"+esc(a.VM)+"/adapters/"+esc(a.Name), a, &r)
}

// RemoveAdapter removes an adapter.
func (c *Client) RemoveAdapter(vm, name string) (api.Result, error) {
	var r api.Result
	return r, c.do("DELETE", "/v1/vms/"+esc(vm)+"/adapters/"+esc(name), nil, &r)
}

// FDBQuery selects rows of a MAC table; zero fields select all. The
// daemon checks the values: a bad one is an *api.Error naming it.
type FDBQuery struct {
	VLAN  string // a VLAN ID; "0" selects the static entries that hold on every VLAN
	MAC   string
	Port  string
	Limit int    // rows per page: api.FDBPageDefault if 0, at most api.FDBPageMax
	After string // where the page starts: the previous page's Next; "" for the first
}

func (q FDBQuery) values() url.Values {
	v := url.Values{}
	for k, s := range map[string]string{"vlan": q.VLAN, "mac": q.MAC, "port": q.Port, "after": q.After} {
		if s != "" {
			v.Set(k, s)
		}
	}
	if q.Limit != 0 {
		v.Set("limit", fmt.Sprint(q.Limit))
	}
	return v
}

// FDBPage returns one page of a running switch's MAC table.
func (c *Client) FDBPage(sw string, q FDBQuery) (api.FDBPage, error) {
	var p api.FDBPage
	path := "/v1/switches/" + esc(sw) + "/fdb"
	if v := q.values(); len(v) > 0 {
		path += "?" + v.Encode()
	}
	return p, c.do("GET", path, nil, &p)
}

// WalkFDB reads a running switch's MAC table page by page from q.After,
// calling fn with each page's rows (never more than one page is held),
// until the last page or until fn returns false.
func (c *Client) WalkFDB(sw string, q FDBQuery, fn func(rows []api.FDBEntry) bool) error {
	for {
		p, err := c.FDBPage(sw, q)
		if err != nil {
			return err
		}
		if !fn(p.Entries) || p.Next == "" {
			return nil
		}
		q.After = p.Next
	}
}

// Stats returns the counters of every port (of one switch if sw is set).
func (c *Client) Stats(sw string) ([]api.PortStats, error) {
	var out []api.PortStats
	if sw != "" {
		return out, c.do("GET", "/v1/switches/"+esc(sw)+"/ports", nil, &out)
	}
	return out, c.do("GET", "/v1/stats", nil, &out)
}

// SwitchStats returns the counters of every running switch with its
// ports' (of one switch if sw is set).
func (c *Client) SwitchStats(sw string) ([]api.SwitchStats, error) {
	if sw != "" {
		var one api.SwitchStats
		if err := c.do("GET", "/v1/switches/"+esc(sw)+"/stats", nil, &one); err != nil {
			return nil, err
		}
		return []api.SwitchStats{one}, nil
	}
	var out []api.SwitchStats
	return out, c.do("GET", "/v1/stats/switches", nil, &out)
}

// Topology returns the switch tree.
// PortStates says whether each port of the state is up on the host.
func (c *Client) PortStates() ([]api.PortState, error) {
	var out []api.PortState
	return out, c.do("GET", "/v1/ports", nil, &out)
}

// Topology returns the tree of switches and their ports.
func (c *Client) Topology(host string) (api.Topology, error) {
	var t api.Topology
	path := "/v1/topology"
	if host != "" {
		path += "?host=" + url.QueryEscape(host)
	}
	return t, c.do("GET", path, nil, &t)
}

// SetVM replaces a VM's settings.
func (c *Client) SetVM(vm config.VM) (api.Result, error) {
	var r api.Result
	return r, c.do("PUT", "/v1/vms/"+esc(vm.Name), vm, &r)
}

// StartVM runs a VM with QEMU.
func (c *Client) StartVM(name string) (api.VMStatus, error) {
	var s api.VMStatus
	return s, c.do("POST", "/v1/vms/"+esc(name)+"/start", nil, &s)
}

// StopVM stops a running VM.
func (c *Client) StopVM(name string) (api.VMStatus, error) {
	var s api.VMStatus
	return s, c.do("POST", "/v1/vms/"+esc(name)+"/stop", nil, &s)
}

// VMStatus returns a VM's run state.
func (c *Client) VMStatus(name string) (api.VMStatus, error) {
	var s api.VMStatus
	return s, c.do("GET", "/v1/vms/"+esc(name)+"/status", nil, &s)
}

// VMConsole returns the tail of a VM's serial console.
func (c *Client) VMConsole(name string) (string, error) {
	var out struct {
		Console string `json:"console"`
	}
	return out.Console, c.do("GET", "/v1/vms/"+esc(name)+"/console", nil, &out)
}
