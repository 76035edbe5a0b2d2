package daemon

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/vswitch/vswitch/internal/config"
	"github.com/vswitch/vswitch/internal/hostnet"
	"github.com/vswitch/vswitch/internal/l2"
	"github.com/vswitch/vswitch/internal/nsrun"
	"github.com/vswitch/vswitch/internal/port/afpacket"
	"github.com/vswitch/vswitch/internal/port/qemu"
	"github.com/vswitch/vswitch/internal/port/tap"
)

// OSBackend opens real ports: a packet socket on the uplink NIC or on a
// QEMU-owned TAP, a TAP for the host adapter or inside a VM's namespace,
// and unix sockets for QEMU.
type OSBackend struct {
	// Namespace is where the host side lives (uplinks, host adapters, QEMU
	// TAPs): "" for vswitchd's own namespace; tests run a daemon in one of theirs.
	Namespace string
}

// Open implements Backend.
func (b OSBackend) Open(s PortSpec) (l2.Port, error) {
	switch s.Kind {
	case KindUplink:
		return afpacket.Open(afpacket.Config{Interface: s.Device, Namespace: b.Namespace})
	case string(config.AttachTAP):
		// Make the TAP persistent if it is not there yet, so that its host
		// side can be bound now and QEMU attaches to it by name whenever
		// the VM runs.
		t, err := tap.Open(tap.Config{Name: s.Device, Namespace: b.Namespace})
		if err != nil {
			return nil, err
		}
		t.Close()
		return afpacket.Open(afpacket.Config{Interface: s.Device, Namespace: b.Namespace})
	case KindHost:
		return tap.Open(tap.Config{Name: s.Device, Namespace: b.Namespace, MAC: s.MAC})
	case string(config.AttachNetns):
		return tap.Open(tap.Config{Name: s.Device, Namespace: s.Namespace, MAC: s.MAC})
	case string(config.AttachQEMUStream), string(config.AttachQEMUDgram):
		if err := os.MkdirAll(filepath.Dir(s.Socket), 0o700); err != nil {
			return nil, err
		}
		c := qemu.Config{Path: s.Socket}
		if s.Kind == string(config.AttachQEMUStream) {
			return qemu.ListenStream(c)
		}
		return qemu.ListenDgram(c)
	}
	return nil, fmt.Errorf("unknown port kind %q", s.Kind)
}

// Remove implements Backend: TAP devices are deleted (tap.Remove refuses
// anything that is not a TAP) and socket files removed; NICs stay.
func (b OSBackend) Remove(s PortSpec) error {
	switch s.Kind {
	case KindHost, string(config.AttachTAP):
		return tap.Remove(b.Namespace, s.Device)
	case string(config.AttachNetns):
		return tap.Remove(s.Namespace, s.Device)
	case string(config.AttachQEMUStream), string(config.AttachQEMUDgram):
		if err := os.Remove(s.Socket); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// TakeOver implements Backend with hostnet.
func (b OSBackend) TakeOver(nic, hostAdapter string) (time.Duration, error) {
	m := hostnet.Mover{Namespace: b.Namespace}
	return m.TakeOver(nic, hostAdapter)
}

// GiveBack implements Backend with hostnet.
func (b OSBackend) GiveBack(hostAdapter, nic string) error {
	m := hostnet.Mover{Namespace: b.Namespace}
	_, err := m.GiveBack(hostAdapter, nic)
	return err
}

// CheckNIC reports whether a network interface of that name exists where
// the host side lives (apiserver.Host).
func (b OSBackend) CheckNIC(name string) error {
	return nsrun.In(nsrun.Path(b.Namespace), func() error {
		_, err := net.InterfaceByName(name)
		return err
	})
}
