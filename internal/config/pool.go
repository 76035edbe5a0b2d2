package config

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"

	"github.com/vswitch/vswitch/internal/frame"
)

// ErrPoolExhausted: every address of the host's MAC pool is in use.
var ErrPoolExhausted = errors.New("the host's MAC address pool is exhausted")

// DefaultHost returns the default settings for a machine: the pool
// 02:56:53:HH:00:00–02:56:53:HH:FF:FF (locally administered), HH taken from
// a hash of the machine id so that hosts on one LAN differ.
func DefaultHost(machineID string) Host {
	h := sha256.Sum256([]byte(machineID))
	return Host{
		MACMin: frame.MAC{0x02, 0x56, 0x53, h[0], 0x00, 0x00},
		MACMax: frame.MAC{0x02, 0x56, 0x53, h[0], 0xff, 0xff},
	}
}

// PoolUsage returns how many addresses of the pool adapters hold, and its size.
func (c *Config) PoolUsage() (used, size uint64) {
	lo, hi := c.Host.MACMin.Uint64(), c.Host.MACMax.Uint64()
	for _, a := range c.Adapters {
		if m := a.MAC.Uint64(); !a.MAC.IsZero() && m >= lo && m <= hi {
			used++
		}
	}
	return used, hi - lo + 1
}

// AllocateMAC returns the lowest address of the pool no adapter holds
// (static addresses inside the pool count as held). An address is free
// again only once its adapter is gone, so none is handed out twice.
// nearlyFull is true from 90 % use on, for a warning.
func (c *Config) AllocateMAC() (m frame.MAC, nearlyFull bool, err error) {
	lo, hi := c.Host.MACMin.Uint64(), c.Host.MACMax.Uint64()
	if lo > hi {
		return m, false, fmt.Errorf("host MAC pool %s–%s is empty", c.Host.MACMin, c.Host.MACMax)
	}
	var held []uint64
	for _, a := range c.Adapters {
		if v := a.MAC.Uint64(); !a.MAC.IsZero() && v >= lo && v <= hi {
			held = append(held, v)
		}
	}
	slices.Sort(held)
	next := lo
	for _, v := range held {
		if v > next {
			break
		}
		next = v + 1
	}
	size := hi - lo + 1
	if next > hi {
		return m, true, fmt.Errorf("%w: all %d addresses of %s–%s are held by adapters", ErrPoolExhausted, size, c.Host.MACMin, c.Host.MACMax)
	}
	m = frame.MACFromUint64(next)
	used := uint64(len(slices.Compact(held))) + 1
	return m, used*10 >= size*9, nil
}
