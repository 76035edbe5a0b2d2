package kdp

import (
	"encoding/binary"
	"errors"

	"github.com/cilium/ebpf/ringbuf"

	"github.com/vswitch/vswitch/internal/frame"
)

// Move is a station the program saw on another port than the one it had
// learned it on: the switch, the (VLAN, MAC), and the two ports by their
// interface names ("" for a port no longer there).
type Move struct {
	Switch   string
	MAC      frame.MAC
	VID      frame.VID
	From, To string
}

// moveLen is struct move's size in bpf/kdp.c.
const moveLen = 20

// decodeMove reads struct move (little-endian: sw, from, to as u32, vid
// as u16, then the MAC).
func decodeMove(b []byte) (sw, from, to uint32, vid frame.VID, mac frame.MAC, ok bool) {
	if len(b) < moveLen {
		return 0, 0, 0, 0, mac, false
	}
	le := binary.LittleEndian
	copy(mac[:], b[14:20])
	return le.Uint32(b[0:]), le.Uint32(b[4:]), le.Uint32(b[8:]), frame.VID(le.Uint16(b[12:]) & 0xfff), mac, true
}

// reportMoves reads the program's records until Close: each move goes to
// f (if set), named with switch and ports as they are now; a full switch
// (from and to 0) wakes the sweeper.
func (d *Datapath) reportMoves(f func(Move)) error {
	rd, err := ringbuf.NewReader(d.objs.Moves)
	if err != nil {
		return err
	}
	d.moves = rd
	d.movesDone = make(chan struct{})
	go func() {
		defer close(d.movesDone)
		for {
			rec, err := rd.Read()
			if errors.Is(err, ringbuf.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			sw, from, to, vid, mac, ok := decodeMove(rec.RawSample)
			if !ok {
				continue
			}
			if from == 0 && to == 0 {
				select {
				case d.sweepNow <- struct{}{}:
				default:
				}
				continue
			}
			if f == nil {
				continue
			}
			m := Move{MAC: mac, VID: vid}
			d.mu.Lock()
			if s := d.switches[sw]; s != nil {
				m.Switch = cString(s.Name[:])
			}
			for name, p := range d.ports {
				switch uint32(p.ifindex) {
				case from:
					m.From = name
				case to:
					m.To = name
				}
			}
			d.mu.Unlock()
			if m.Switch != "" {
				f(m)
			}
		}
	}()
	return nil
}
