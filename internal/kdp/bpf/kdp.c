// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
//
// vswitch's kernel data path: one tc ingress program on every port that is
// a kernel device (the host side of a workload's veth, a QEMU TAP, the host
// adapter, the uplink NIC). It does what internal/l2 does for a frame, with
// the same port model and rules (docs/design.md): classify the frame into
// a VLAN, check its source, learn (VLAN, MAC) -> port, and send it to the
// known port or flood it to every member of the VLAN but the ingress port,
// pushing or popping the 802.1Q tag per egress port.
//
// At tc ingress the kernel has already moved the outer tag (0x8100 or
// 0x88a8) out of the frame into skb->vlan_*; only 0x8100 is a tag to the
// switch (an S-tag is payload), and a tag the program pushes or keeps
// goes back into the frame when it is sent.

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define MAX_PORTS 1024  /* ports of one switch on the kernel path (a power of 2) */
#define VLAN_WORDS 64   /* 4096 VLANs, one bit each */

/* Counters of a port, in this order (kdp.Counter). */
enum {
	C_RX_PACKETS,
	C_RX_BYTES,
	C_TX_PACKETS,
	C_TX_BYTES,
	C_FLOODS,
	C_LEARN_REFUSED,
	C_MOVES,
	C_DROPS, /* + drop reason, as l2.DropReason numbers them */
	NCTR = C_DROPS + 16,
};

/* Drop reasons: l2.DropReason's numbers. */
enum {
	D_RUNT = 1,
	D_BAD_TAG = 2,
	D_VLAN_NOT_ALLOWED = 3,
	D_TAGGED_ON_ACCESS = 4,
	D_UNTAGGED_NOT_ALLOWED = 5,
	D_INVALID_SOURCE = 6,
	D_SPOOFED_SOURCE = 7,
	D_RESERVED_ADDRESS = 8,
	D_FILTERED = 9,
	D_PORT_ERROR = 11,
	D_TOO_BIG = 13,
};

/* Admit rules: vlan.Admit. */
enum { ADMIT_ALL, ADMIT_TAGGED_ONLY, ADMIT_UNTAGGED_ONLY };

struct port {
	__u32 sw;    /* the switch's number */
	__u32 id;    /* the port's counter slot */
	__u16 pvid;  /* VLAN of untagged frames; 0: dropped */
	__u8 admit;
	__u8 guard;  /* drop frames whose source is not mac */
	__u8 mac[6];
	__u8 group;  /* split-horizon group (l2.PortConfig.Group); 0: none */
	__u8 pad;
	__u32 limit; /* learned entries the port may have (l2.PortConfig.MACLimit); 0: no limit of its own */
	__u64 member[VLAN_WORDS];
	__u64 untagged[VLAN_WORDS];
};

struct fdb_key {
	__u32 sw;
	__u16 vid; /* 0: a static entry on every VLAN of its port */
	__u8 mac[6];
};

struct fdb_val {
	__u32 ifindex;
	__u32 is_static;
	__u64 seen; /* bpf_ktime_get_ns of the last frame from it */
};

struct sw {
	__u64 ageing; /* ns */
	__u64 limit;  /* learned entries the switch may have (l2.Options.FDBSize) */
	__u64 full;   /* bpf_ktime_get_ns when the program last reported the switch full */
	__u32 n;      /* ports in ifindex */
	__u32 pad;
	__u32 ifindex[MAX_PORTS];
	char name[16]; /* the switch's name, for a loader that finds the maps pinned */
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32); /* ifindex */
	__type(value, struct port);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32); /* switch number */
	__type(value, struct sw);
} switches SEC(".maps");

/* The learned entries of every switch: bounded as a whole (a full map
 * refuses new stations, as the core's full table does, rather than evict
 * live ones) and per switch (struct sw's limit, counted in learned). Aged
 * entries stay until vswitchd's sweep deletes them. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1048576); /* set by the loader */
	__uint(map_flags, BPF_F_NO_PREALLOC); /* memory for the entries there are, not the bound */
	__type(key, struct fdb_key);
	__type(value, struct fdb_val);
} fdb SEC(".maps");

/* A switch's learned entries: element 2*sw counts what the program added
 * (atomically; only the program writes it), element 2*sw+1 what vswitchd
 * deleted (only vswitchd writes it). Their difference is the switch's
 * share of fdb, with no lock between the two writers. */
#define MAX_SWITCHES 1024
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * (MAX_SWITCHES + 1));
	__type(key, __u32);
	__type(value, __u64);
} learned SEC(".maps");

/* A port's learned entries, by its counter slot: element 2*id counts what
 * the program learned on the port or moved to it, less what it moved away
 * (atomically; only the program writes it), element 2*id+1 what vswitchd
 * deleted (only vswitchd writes it). Their difference is the port's share,
 * which its limit bounds. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 2 * 4096);
	__type(key, __u32);
	__type(value, __u64);
} portlearned SEC(".maps");

/* Static entries (vid 0: on every VLAN of their port): a map of their own,
 * which no flood of new sources evicts, looked up before the learned ones
 * (the core removes learned entries of a MAC when it becomes static, so
 * a static entry always wins there too). */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536);
	__type(key, struct fdb_key);
	__type(value, struct fdb_val);
} statics SEC(".maps");

/* A station seen on another port than the one it was learned on, for
 * vswitchd to report as the core does (rate-limited there); or, with from
 * and to 0, a switch whose learned entries reached its limit (vswitchd
 * then sweeps its aged ones at once, as the core does when full). 20
 * bytes, little-endian: kdp.go's decodeMove reads this layout. */
struct move {
	__u32 sw;
	__u32 from, to; /* ifindex */
	__u16 vid;
	__u8 mac[6];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 65536);
} moves SEC(".maps");

struct ctrs {
	__u64 c[NCTR];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 4096);
	__type(key, __u32); /* a port's counter slot */
	__type(value, struct ctrs);
} counters SEC(".maps");

static __always_inline struct ctrs *ctrs(__u32 id)
{
	return bpf_map_lookup_elem(&counters, &id);
}

static __always_inline void count(struct ctrs *c, __u32 i, __u64 n)
{
	if (i < NCTR)
		c->c[i] += n;
}

static __always_inline int drop(struct ctrs *c, __u32 reason)
{
	count(c, C_DROPS + reason, 1);
	return TC_ACT_SHOT;
}

/* sent counts a frame that leaves by port q. */
static __always_inline void sent(struct __sk_buff *skb, const struct port *q)
{
	struct ctrs *c = ctrs(q->id);
	if (c) {
		c->c[C_TX_PACKETS] += 1;
		c->c[C_TX_BYTES] += skb->len + (skb->vlan_present ? 4 : 0);
	}
}

/* failed counts a frame that could not be sent by port q. */
static __always_inline void failed(const struct port *q)
{
	struct ctrs *c = ctrs(q->id);
	if (c)
		c->c[C_DROPS + D_PORT_ERROR] += 1;
}

/* toobig counts a frame longer than port q's device takes (its MTU, with
 * room for a tag; a GSO packet's segments) and reports it: redirected, the
 * kernel would drop it without a word. */
static __always_inline int toobig(struct __sk_buff *skb, __u32 ifindex, const struct port *q)
{
	__u32 len = 0;
	if (bpf_check_mtu(skb, ifindex, &len, 0, 0) == 0)
		return 0;
	struct ctrs *c = ctrs(q->id);
	if (c)
		c->c[C_DROPS + D_TOO_BIG] += 1;
	return 1;
}

static __always_inline int has(const __u64 *set, __u16 vid)
{
	return (set[(vid >> 6) & (VLAN_WORDS - 1)] >> (vid & 63)) & 1;
}

/* settag brings the frame's tag to what port q wants for VLAN tci's VID:
 * tagged with tci, or untagged. *ours says whether the accelerated tag is
 * the switch's 802.1Q tag (and not, say, an S-tag that is payload). */
static __always_inline int settag(struct __sk_buff *skb, int *ours, __u16 tci, const struct port *q)
{
	int want = !has(q->untagged, tci & 0xfff);
	if (want) {
		if (*ours && skb->vlan_tci == tci)
			return 0;
		if (*ours) {
			if (bpf_skb_vlan_pop(skb))
				return -1;
			*ours = 0; /* gone, even if the push below fails */
		}
		if (bpf_skb_vlan_push(skb, bpf_htons(ETH_P_8021Q), tci))
			return -1;
		*ours = 1;
	} else if (*ours) {
		if (bpf_skb_vlan_pop(skb))
			return -1;
		*ours = 0;
	}
	return 0;
}

static __always_inline int live(const struct fdb_val *v, __u64 now, __u64 ageing)
{
	return v->is_static || now - v->seen < ageing;
}

/* take_slot counts one more learned entry for port p unless that breaks
 * its limit (l2's takePortSlot): the count is taken first, so two CPUs
 * cannot both take the last place. */
static __always_inline int take_slot(const struct port *p)
{
	__u32 ni = 2 * p->id, di = ni + 1;
	__u64 *net = bpf_map_lookup_elem(&portlearned, &ni);
	__u64 *del = bpf_map_lookup_elem(&portlearned, &di);
	if (!net || !del)
		return 0;
	__s64 had = (__s64)(__sync_fetch_and_add(net, 1) - *del);
	if (p->limit && had >= (__s64)p->limit) {
		__sync_fetch_and_add(net, -1);
		return 0;
	}
	return 1;
}

/* give_slot gives back the place of an entry that left interface ifi's
 * port (moved to another). */
static __always_inline void give_slot(__u32 ifi)
{
	struct port *q = bpf_map_lookup_elem(&ports, &ifi);
	if (!q)
		return; /* a port that is going: its count goes with it */
	__u32 ni = 2 * q->id;
	__u64 *net = bpf_map_lookup_elem(&portlearned, &ni);
	if (net)
		__sync_fetch_and_add(net, -1);
}

/* refused counts a station not learned because its switch or the table is
 * full, and reports the switch full at most every ageing/64 for vswitchd
 * to reclaim aged entries at once. */
static __always_inline void refused(struct ctrs *ic, struct sw *s, __u32 swn, __u64 now)
{
	count(ic, C_LEARN_REFUSED, 1);
	if (now - s->full > (s->ageing >> 6)) {
		s->full = now;
		struct move m = {.sw = swn};
		bpf_ringbuf_output(&moves, &m, sizeof(m), 0);
	}
}

/* learn adds a new (VLAN, MAC) entry unless the switch holds its limit of
 * learned entries, the table is full or the port holds its own limit: then
 * it is refused (counted; the station's frames are flooded). */
static __always_inline void learn(struct ctrs *ic, struct sw *s, const struct port *p, struct fdb_key *k, __u32 in, __u64 now)
{
	__u32 ai = 2 * k->sw, ri = ai + 1;
	__u64 *added = bpf_map_lookup_elem(&learned, &ai);
	__u64 *removed = bpf_map_lookup_elem(&learned, &ri);
	if (!added || !removed)
		return;
	__u64 used = *added > *removed ? *added - *removed : 0; /* never wraps */
	if (!s->limit || used < s->limit) {
		if (!take_slot(p)) {
			/* The port's own limit: its aged entries wait for the
			 * periodic sweep, as on the core (a port kept at its limit
			 * must not make vswitchd scan the table every second). */
			count(ic, C_LEARN_REFUSED, 1);
			return;
		}
		struct fdb_val nv = {.ifindex = in, .seen = now};
		long err = bpf_map_update_elem(&fdb, k, &nv, BPF_NOEXIST);
		if (err == 0) {
			__sync_fetch_and_add(added, 1);
			return;
		}
		give_slot(in);
		if (err == -17) /* -EEXIST: another CPU learned it just now */
			return;
	}
	/* The switch's limit, or the whole table (-E2BIG). */
	refused(ic, s, k->sw, now);
}

/* A flood in progress: the frame, its switch and VLAN, and the member
 * found last, which gets its copy when the next one is found (or the
 * frame itself when none is). */
struct flood {
	struct __sk_buff *skb;
	struct sw *s;
	struct port *lastp;
	__u32 in, swn, last;
	__u16 tci;
	__u8 group; /* the ingress port's split-horizon group */
	int ours;
};

static long flood_one(__u64 i, void *arg)
{
	struct flood *f = arg;
	if (i >= f->s->n)
		return 1;
	__u32 out = f->s->ifindex[i & (MAX_PORTS - 1)];
	if (out == f->in)
		return 0;
	struct port *q = bpf_map_lookup_elem(&ports, &out);
	if (!q || q->sw != f->swn || !has(q->member, f->tci & 0xfff) || (f->group && q->group == f->group))
		return 0;
	if (f->lastp) {
		if (settag(f->skb, &f->ours, f->tci, f->lastp))
			failed(f->lastp);
		else if (toobig(f->skb, f->last, f->lastp))
			;
		else if (bpf_clone_redirect(f->skb, f->last, 0) == 0)
			sent(f->skb, f->lastp);
		else
			failed(f->lastp);
	}
	f->last = out;
	f->lastp = q;
	return 0;
}

SEC("tc")
int ingress(struct __sk_buff *skb)
{
	__u32 in = skb->ifindex;
	struct port *p = bpf_map_lookup_elem(&ports, &in);
	if (!p)
		return TC_ACT_OK; /* not a port of ours */
	__u32 swn = p->sw;
	struct ctrs *ic = ctrs(p->id);
	if (!ic)
		return TC_ACT_SHOT; /* a slot past the map: never, the loader checks */
	struct sw *s = bpf_map_lookup_elem(&switches, &swn);
	if (!s)
		return TC_ACT_SHOT;
	int tagged = skb->vlan_present && skb->vlan_proto == bpf_htons(ETH_P_8021Q);
	count(ic, C_RX_PACKETS, 1);
	count(ic, C_RX_BYTES, skb->len + (skb->vlan_present ? 4 : 0));

	__u8 eth[12];
	if (bpf_skb_load_bytes(skb, 0, eth, sizeof(eth)))
		return drop(ic, D_RUNT);
	__u8 *dst = eth, *src = eth + 6;

	/* Classify into a VLAN (vlan.Port.Ingress). */
	__u16 tci = tagged ? skb->vlan_tci : 0;
	__u16 vid = tci & 0xfff;
	if (!tagged || vid == 0) {
		if (p->pvid == 0 || p->admit == ADMIT_TAGGED_ONLY)
			return drop(ic, D_UNTAGGED_NOT_ALLOWED);
		vid = p->pvid;
	} else if (vid == 4095) {
		return drop(ic, D_BAD_TAG);
	} else if (p->admit == ADMIT_UNTAGGED_ONLY) {
		return drop(ic, D_TAGGED_ON_ACCESS);
	} else if (!has(p->member, vid)) {
		return drop(ic, D_VLAN_NOT_ALLOWED);
	}
	tci = (tci & 0xf000) | vid; /* the ingress PCP and DEI, the frame's VLAN */

	/* Check the source and the destination. */
	if ((src[0] & 1) || !(src[0] | src[1] | src[2] | src[3] | src[4] | src[5]))
		return drop(ic, D_INVALID_SOURCE);
	if (p->guard && (src[0] != p->mac[0] || src[1] != p->mac[1] || src[2] != p->mac[2] ||
			 src[3] != p->mac[3] || src[4] != p->mac[4] || src[5] != p->mac[5]))
		return drop(ic, D_SPOOFED_SOURCE);
	if (dst[0] == 0x01 && dst[1] == 0x80 && dst[2] == 0xc2 && dst[3] == 0 && dst[4] == 0 && !(dst[5] & 0xf0)) {
		/* Not forwarded, as by the core; but the port's own device gets
		 * it (an uplink NIC's LLDP, LACP or 802.1X agent keeps working). */
		count(ic, C_DROPS + D_RESERVED_ADDRESS, 1);
		return TC_ACT_OK;
	}

	/* Learn (FDB.Learn): a static MAC is its port's, on every VLAN, and
	 * no other port takes it; else the (VLAN, source) entry is refreshed,
	 * moved here, or made. */
	__u64 now = bpf_ktime_get_ns();
	struct fdb_key k = {.sw = swn, .vid = 0};
	__builtin_memcpy(k.mac, src, 6);
	struct fdb_val *sv = bpf_map_lookup_elem(&statics, &k);
	k.vid = vid;
	struct fdb_val *v = sv ? 0 : bpf_map_lookup_elem(&fdb, &k);
	if (sv) {
		if (sv->ifindex != in)
			count(ic, C_LEARN_REFUSED, 1); /* a static MAC of another port */
	} else if (v && live(v, now, s->ageing) && v->ifindex == in) {
		if (now - v->seen > (s->ageing >> 6))
			v->seen = now; /* refreshed at most every ageing/64, as by the core */
	} else if (v && v->ifindex == in) {
		v->seen = now; /* aged out on this port: made anew, not a move */
	} else if (v) {
		/* Moved here (or aged out on another port: made anew here, not
		 * a move), if this port has room for it. */
		__u32 from = v->ifindex;
		if (!take_slot(p)) {
			count(ic, C_LEARN_REFUSED, 1); /* the port's own limit */
		} else {
			give_slot(from);
			v->ifindex = in;
			if (live(v, now, s->ageing)) {
				struct move m = {.sw = swn, .from = from, .to = in, .vid = vid};
				__builtin_memcpy(m.mac, src, 6);
				count(ic, C_MOVES, 1);
				bpf_ringbuf_output(&moves, &m, sizeof(m), 0); /* full: not reported, still counted */
			}
			v->seen = now;
		}
	} else {
		learn(ic, s, p, &k, in, now);
	}

	int ours = tagged;
	/* Known unicast: to its port, if that port is a member of the VLAN. */
	if (!(dst[0] & 1)) {
		__u32 out = 0;
		__builtin_memcpy(k.mac, dst, 6);
		k.vid = 0;
		v = bpf_map_lookup_elem(&statics, &k);
		if (v) {
			out = v->ifindex;
		} else {
			k.vid = vid;
			v = bpf_map_lookup_elem(&fdb, &k);
			if (v && live(v, now, s->ageing))
				out = v->ifindex;
		}
		if (out == in)
			return drop(ic, D_FILTERED);
		if (out) {
			struct port *q = bpf_map_lookup_elem(&ports, &out);
			if (q && p->group && q->group == p->group)
				return drop(ic, D_FILTERED); /* the same split-horizon group */
			if (q && q->sw == swn && has(q->member, vid)) {
				if (settag(skb, &ours, tci, q)) {
					failed(q);
					return TC_ACT_SHOT;
				}
				if (toobig(skb, out, q))
					return TC_ACT_SHOT;
				sent(skb, q);
				return bpf_redirect(out, 0);
			}
		}
	}

	/* Flood to every member of the VLAN but the ingress port: a copy to
	 * each but the last, which gets the frame itself. The members are
	 * walked with bpf_loop, so a switch may have up to MAX_PORTS. */
	count(ic, C_FLOODS, 1);
	struct flood f = {.skb = skb, .s = s, .in = in, .swn = swn, .tci = tci, .group = p->group, .ours = ours};
	bpf_loop(MAX_PORTS, flood_one, &f, 0);
	if (!f.lastp)
		return TC_ACT_SHOT; /* no other member: nowhere to go */
	if (settag(skb, &f.ours, tci, f.lastp)) {
		failed(f.lastp);
		return TC_ACT_SHOT;
	}
	if (toobig(skb, f.last, f.lastp))
		return TC_ACT_SHOT;
	sent(skb, f.lastp);
	return bpf_redirect(f.last, 0);
}

char _license[] SEC("license") = "Dual BSD/GPL";
