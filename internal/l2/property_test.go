package l2

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/vswitch/vswitch/internal/frame"
	"github.com/vswitch/vswitch/internal/vlan"
)

// refPort is the reference model of one port, written from DESIGN.md's
// table with plain maps so that it shares no code with vlan.Port.
type refPort struct {
	name     string
	desc     string
	pvid     int          // 0: untagged frames dropped
	admitTag bool         // tagged frames may enter
	member   map[int]bool // VLANs the port belongs to
	untagged map[int]bool // members that leave untagged
}

func (p *refPort) classify(vid int) (int, bool) { // vid: noTag, 0 or the tag's VID
	if vid == noTag || vid == 0 {
		return p.pvid, p.pvid != 0
	}
	if vid == 4095 || !p.admitTag || !p.member[vid] {
		return 0, false
	}
	return vid, true
}

func randSet(rng *rand.Rand, maxVID int) map[int]bool {
	s := map[int]bool{}
	for v := 1; v <= maxVID; v++ {
		if rng.IntN(2) == 0 {
			s[v] = true
		}
	}
	return s
}

func setString(s map[int]bool) string {
	var vs []string
	for v := range s {
		vs = append(vs, fmt.Sprint(v))
	}
	slices.Sort(vs)
	return fmt.Sprint(vs)
}

func toVLANSet(s map[int]bool) frame.VLANSet {
	var set frame.VLANSet
	for v := range s {
		set.Add(frame.VID(v))
	}
	return set
}

// randomPort draws a mode over VLANs 1..maxVID and returns the reference
// model and the vlan.Port built through the public constructors.
func randomPort(rng *rand.Rand, name string, defVLAN, maxVID int) (*refPort, vlan.Port) {
	r := &refPort{name: name, member: map[int]bool{}, untagged: map[int]bool{}}
	for {
		switch rng.IntN(4) {
		case 0:
			r.desc, r.pvid = "untagged", defVLAN
			r.member[defVLAN], r.untagged[defVLAN] = true, true
			return r, vlan.Port{}
		case 1:
			a := 1 + rng.IntN(maxVID)
			r.desc, r.pvid = fmt.Sprint("access ", a), a
			r.member[a], r.untagged[a] = true, true
			return r, mustVLAN(vlan.Access(frame.VID(a)))
		case 2:
			allowed, native := randSet(rng, maxVID), rng.IntN(maxVID+1)
			if len(allowed) == 0 && native == 0 {
				continue
			}
			r.desc = fmt.Sprintf("trunk %s native %d", setString(allowed), native)
			r.pvid, r.admitTag = native, true
			for v := range allowed {
				r.member[v] = true
			}
			if native != 0 {
				r.member[native], r.untagged[native] = true, true
			}
			return r, mustVLAN(vlan.Trunk(toVLANSet(allowed), frame.VID(native)))
		default:
			u, tg := map[int]bool{}, map[int]bool{}
			for v := 1; v <= maxVID; v++ {
				switch rng.IntN(3) {
				case 0:
					u[v] = true
				case 1:
					tg[v] = true
				}
			}
			all := append(slices.Collect(func(y func(int) bool) {
				for v := range u {
					y(v)
				}
			}), slices.Collect(func(y func(int) bool) {
				for v := range tg {
					y(v)
				}
			})...)
			if len(all) == 0 {
				continue
			}
			slices.Sort(all)
			p := all[rng.IntN(len(all))]
			r.desc = fmt.Sprintf("hybrid pvid %d untagged %s tagged %s", p, setString(u), setString(tg))
			r.pvid, r.admitTag, r.untagged = p, true, u
			for _, v := range all {
				r.member[v] = true
			}
			return r, mustVLAN(vlan.Hybrid(frame.VID(p), toVLANSet(u), toVLANSet(tg)))
		}
	}
}

type refSwitch struct {
	h     *harness
	ports []*refPort
	fdb   map[[2]int]string // (VLAN, station index) → port name
}

// TestIsolationProperty builds random switches with random port modes and
// sends thousands of random frames, checking each against the reference
// model: a frame never leaves its switch, never leaves on a port outside
// its VLAN or back out of its ingress port, carries a tag exactly where
// its VLAN is tagged, reaches every member when flooded and only the
// learned port when known, and arrives otherwise unchanged.
func TestIsolationProperty(t *testing.T) {
	const rounds, framesPerRound, maxVID = 40, 500, 6
	stations := []frame.MAC{}
	for i := range 8 {
		stations = append(stations, mac(byte(0x40+i)))
	}
	dsts := append(slices.Clone(stations), frame.Broadcast, frame.MustParseMAC("01:00:5e:00:00:fb"),
		frame.MustParseMAC("01:80:c2:00:00:00"), frame.MustParseMAC("33:33:00:00:00:01"))
	badSrcs := []frame.MAC{frame.Broadcast, {}, frame.MustParseMAC("01:00:5e:00:00:01")}
	checked := 0
	for round := range rounds {
		rng := rand.New(rand.NewPCG(uint64(round), 0x5eed))
		var sws []*refSwitch
		for range 1 + rng.IntN(3) {
			def := 1 + rng.IntN(maxVID)
			rs := &refSwitch{h: newHarness(t, Options{DefaultVLAN: frame.VID(def)}), fdb: map[[2]int]string{}}
			for p := range 2 + rng.IntN(7) {
				ref, model := randomPort(rng, fmt.Sprint("p", p), def, maxVID)
				rs.h.add(ref.name, PortConfig{VLAN: model})
				rs.ports = append(rs.ports, ref)
			}
			sws = append(sws, rs)
		}
		for i := 0; i < framesPerRound; {
			// A burst of frames into one port, read as one batch: learning
			// inside the batch is in order, as in the reference.
			swIdx := rng.IntN(len(sws))
			rs := sws[swIdx]
			in := rs.ports[rng.IntN(len(rs.ports))]
			var burst [][]byte
			expect := map[uint32]map[string]bool{} // frame id → ports that must get it
			sentByID := map[uint32][]byte{}
			vlanByID := map[uint32]int{}
			tagByID := map[uint32]int{}
			for range 1 + rng.IntN(64) {
				srcIdx := rng.IntN(len(stations))
				src := stations[srcIdx]
				if rng.IntN(20) == 0 {
					src, srcIdx = badSrcs[rng.IntN(len(badSrcs))], -1
				}
				dstIdx := rng.IntN(len(dsts))
				dst := dsts[dstIdx]
				vid := noTag
				switch rng.IntN(4) {
				case 1:
					vid = 0
				case 2, 3:
					vid = rng.IntN(maxVID + 2)
					if rng.IntN(30) == 0 {
						vid = 4095
					}
				}
				id := uint32(round)<<20 | uint32(i)<<4 | uint32(swIdx)
				i++
				f := ethFrame(dst, src, vid, uint8(rng.IntN(8)), id)
				f = append(f, bytes.Repeat([]byte{byte(i)}, rng.IntN(100))...)
				burst = append(burst, f)
				sentByID[id], tagByID[id] = f, vid

				// Reference decision.
				v, ok := in.classify(vid)
				if srcIdx < 0 || dst.IsReservedGroup() {
					ok = false
				}
				want := map[string]bool{}
				expect[id], vlanByID[id] = want, v
				if !ok {
					continue
				}
				rs.fdb[[2]int{v, srcIdx}] = in.name
				known, isKnown := "", false
				if dstIdx < len(stations) {
					known, isKnown = rs.fdb[[2]int{v, dstIdx}]
				}
				switch {
				case isKnown && known == in.name:
					// filtered: no copy anywhere
				case isKnown:
					want[known] = true // it was learned there in VLAN v, so it is a member
				default:
					for _, p := range rs.ports {
						if p != in && p.member[v] {
							want[p.name] = true
						}
					}
				}
			}
			rs.h.send(in.name, burst...)

			for si, other := range sws {
				for _, p := range other.ports {
					seen := map[uint32]bool{}
					for _, got := range other.h.recv(p.name) {
						id := ids([][]byte{got})[0]
						sent := sentByID[id]
						ctx := fmt.Sprintf("round %d frame %#x into %s [%s] of switch %d; at %s [%s] of switch %d",
							round, id, in.name, in.desc, swIdx, p.name, p.desc, si)
						if sent == nil || si != swIdx || !expect[id][p.name] {
							t.Fatalf("%s: a copy arrived that must not", ctx)
						}
						if seen[id] {
							t.Fatalf("%s: two copies", ctx)
						}
						seen[id] = true
						se, e := frame.Ethernet(sent), frame.Ethernet(got)
						if e.Dst() != se.Dst() || e.Src() != se.Src() || !bytes.Equal(got[e.PayloadOffset():], sent[se.PayloadOffset():]) {
							t.Fatalf("%s: frame changed on the way", ctx)
						}
						v := vlanByID[id]
						wantTagged := !p.untagged[v]
						if e.Tagged() != wantTagged {
							t.Fatalf("%s: tagged=%v, want %v (VLAN %d)", ctx, e.Tagged(), wantTagged, v)
						}
						wantPCP := uint8(0)
						if tagByID[id] != noTag {
							wantPCP = se.TCI().PCP()
						}
						if wantTagged && (e.TCI().VID() != frame.VID(v) || e.TCI().PCP() != wantPCP) {
							t.Fatalf("%s: tag VID %d PCP %d, want VID %d PCP %d", ctx, e.TCI().VID(), e.TCI().PCP(), v, wantPCP)
						}
						checked++
					}
					if si != swIdx {
						continue
					}
					for id, want := range expect {
						if want[p.name] && !seen[id] {
							t.Fatalf("round %d frame %#x into %s [%s]: port %s [%s] did not get it", round, id, in.name, in.desc, p.name, p.desc)
						}
					}
				}
			}
		}
	}
	t.Logf("%d deliveries checked over %d frames", checked, rounds*framesPerRound)
}
