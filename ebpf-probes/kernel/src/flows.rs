//! Flow accounting at the socket layer (cgroup_skb on the root cgroup v2).
//!
//! Every packet entering or leaving a socket on the node, in any network
//! namespace, is accounted to a `FlowKey` in the active one of two hash
//! maps, through a per-CPU slot that holds the last flows of each
//! direction (a stream of packets of one flow skips the hash lookup).
//! Userspace flips `ACTIVE_FLOW_MAP`, waits out an RCU grace period (every
//! program that read the old index has finished), and drains the idle map
//! and its slots, so no packet is counted twice or lost between drains. A
//! new flow that finds the map full is counted in `FLOW_LOSS`: nothing is
//! dropped silently.
//!
//! The maps are shared by the CPUs (one value per flow, added to with BPF
//! atomic adds): per-CPU maps would hold a value per *possible* CPU for
//! every entry, preallocated — 4 MiB per CPU per map at 65,536 entries,
//! 512 MiB at 64 CPUs. The slots absorb a stream's packets, so the shared
//! map sees one update per slot eviction, not one per packet. The
//! `percpu-flows` feature builds the former per-CPU layout, for the probes
//! bench's side-by-side comparison.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{bpf_jiffies64, bpf_sk_fullsock, bpf_skb_cgroup_id, bpf_tcp_sock},
    macros::{cgroup_skb, map},
    maps::PerCpuArray,
    programs::SkBuffContext,
};
use osprey_abi::{
    DEFAULT_FLOW_MAP_ENTRIES, DIR_EGRESS, DIR_INGRESS, FLOW_SLOT_ENTRIES, FlowKey, FlowSlots,
    FlowStats, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, flow_slot,
};

use crate::{
    dns::{self, DNS_PORT},
    headers::{Parsed, Unparsed, parse},
    http, offsets,
    shared::{count_loss, first_map_active},
};

/// Verdict of a cgroup_skb program: let the packet pass. Osprey only observes.
const PASS: i32 = 1;
const EEXIST: i32 = 17;

#[cfg(not(feature = "percpu-flows"))]
type FlowMap = aya_ebpf::maps::HashMap<FlowKey, FlowStats>;
#[cfg(feature = "percpu-flows")]
type FlowMap = aya_ebpf::maps::PerCpuHashMap<FlowKey, FlowStats>;

#[map]
static FLOWS_0: FlowMap = FlowMap::with_max_entries(DEFAULT_FLOW_MAP_ENTRIES, 0);

#[map]
static FLOWS_1: FlowMap = FlowMap::with_max_entries(DEFAULT_FLOW_MAP_ENTRIES, 0);

#[cgroup_skb(ingress)]
pub fn flow_ingress(ctx: SkBuffContext) -> i32 {
    account(&ctx, DIR_INGRESS);
    PASS
}

#[cgroup_skb(egress)]
pub fn flow_egress(ctx: SkBuffContext) -> i32 {
    account(&ctx, DIR_EGRESS);
    PASS
}

#[inline(always)]
fn account(ctx: &SkBuffContext, direction: u8) {
    // A GSO super-packet (TCP at the socket layer is always GSO) leaves as
    // several segments on the wire, each with its own copy of the headers.
    let segs = unsafe { (*ctx.skb.skb).gso_segs } as u64;
    let packets = if segs > 1 { segs } else { 1 };
    match parse(ctx) {
        Ok(Parsed {
            mut key,
            tcp_flags,
            header_len,
        }) => {
            let bytes = ctx.len() as u64 + (packets - 1) * header_len as u64;
            key.direction = direction;
            key.cgroup_id = unsafe { bpf_skb_cgroup_id(ctx.skb.skb) };
            if (key.src_port == DNS_PORT || key.dst_port == DNS_PORT)
                && (key.protocol == PROTO_UDP || key.protocol == PROTO_TCP)
            {
                // Segments without payload (SYN, pure ACKs) are skipped there.
                dns::capture(ctx, &key, header_len as usize);
            } else if key.protocol == PROTO_TCP && header_len != 0 {
                http::capture(ctx, &key, header_len as usize);
            }
            record(
                ctx,
                &key,
                Sample {
                    bytes,
                    packets,
                    tcp_flags,
                },
            );
        }
        Err(Unparsed) => {
            count_loss(|loss| loss.unparsed_packets += 1);
        }
    }
}

/// The smoothed RTT (µs) of the TCP socket the packet belongs to, 0 when
/// there is none (a request or time-wait socket, or no RTT measured yet).
/// The kernel keeps it per socket; reading it here costs two helper calls
/// per TCP packet and no per-ACK program.
#[inline(always)]
fn srtt_us(ctx: &SkBuffContext) -> u32 {
    // SAFETY: `sk` is a context field (rewritten by the verifier, may be
    // null); the helpers return null or a pointer the verifier tracks.
    unsafe {
        let sk = (*ctx.skb.skb).__bindgen_anon_2.sk;
        if sk.is_null() {
            return 0;
        }
        let full = bpf_sk_fullsock(sk);
        if full.is_null() {
            return 0;
        }
        let tcp = bpf_tcp_sock(full);
        if tcp.is_null() {
            return 0;
        }
        // tcp_sock.srtt_us holds 8 × the smoothed RTT in µs.
        (*tcp).srtt_us >> 3
    }
}

/// What one packet adds to its flow.
struct Sample {
    bytes: u64,
    packets: u64,
    tcp_flags: u32,
}

/// A flow's socket RTT is read again at most this many ticks apart (and at
/// its first packet in each drain interval): the helpers cost more than the
/// rest of the per-packet work. Set at load from the kernel's HZ (≈ 100 ms);
/// the default is 100 ms at HZ=250. Read with `offsets::get`, like the
/// loader's other globals.
#[unsafe(no_mangle)]
static SRTT_EVERY_JIFFIES: u32 = 25;

/// Per CPU, the last two flows counted in each direction, per map index (see
/// `osprey_abi::FlowSlots`): a stream of packets of one flow costs an array
/// lookup and a key compare or two each instead of a hash lookup.
#[map]
static FLOW_SLOTS: PerCpuArray<FlowSlots> = PerCpuArray::with_max_entries(FLOW_SLOT_ENTRIES, 0);

#[inline(always)]
fn record(ctx: &SkBuffContext, key: &FlowKey, sample: Sample) {
    let first = first_map_active();
    // SAFETY: a helper without arguments (a load of jiffies_64 once JITed).
    let now = unsafe { bpf_jiffies64() };
    let tcp = key.protocol == PROTO_TCP;
    let index = flow_slot(if first { 0 } else { 1 }, key.direction);
    let Some(slots) = FLOW_SLOTS.get_ptr_mut(index) else {
        merge(first, key, &fresh(ctx, &sample, now, tcp));
        return;
    };
    // SAFETY: a per-CPU array value: valid, and only this CPU touches it;
    // `busy` keeps a program that interrupts this one on the CPU out of it.
    unsafe {
        if (*slots).busy != 0 {
            merge(first, key, &fresh(ctx, &sample, now, tcp));
            return;
        }
        (*slots).busy = 1;
        let [a, b] = &mut (*slots).ways;
        if a.used != 0 && same_key(&a.key, key) {
            hit(ctx, &mut a.stats, &sample, now, tcp);
        } else if b.used != 0 && same_key(&b.key, key) {
            hit(ctx, &mut b.stats, &sample, now, tcp);
        } else {
            // Evict the slot used least recently (an empty one first).
            let victim = if a.used == 0 || (b.used != 0 && a.stats.last_seen <= b.stats.last_seen) {
                a
            } else {
                b
            };
            if victim.used != 0 {
                merge(first, &victim.key, &victim.stats);
            }
            victim.key = *key;
            victim.stats = fresh(ctx, &sample, now, tcp);
            victim.used = 1;
        }
        (*slots).busy = 0;
    }
}

/// Adds a packet of the slot's own flow.
#[inline(always)]
fn hit(ctx: &SkBuffContext, stats: &mut FlowStats, sample: &Sample, now: u64, tcp: bool) {
    add(stats, sample, now);
    if tcp && now.wrapping_sub(stats.srtt_read) >= offsets::get(&SRTT_EVERY_JIFFIES) as u64 {
        let srtt = srtt_us(ctx);
        if srtt != 0 {
            stats.srtt_us = srtt;
        }
        stats.srtt_read = now;
    }
}

/// Whether two keys are equal, compared as six words.
#[inline(always)]
fn same_key(a: &FlowKey, b: &FlowKey) -> bool {
    let (a, b) = (
        (a as *const FlowKey).cast::<u64>(),
        (b as *const FlowKey).cast::<u64>(),
    );
    // SAFETY: FlowKey is 48 bytes, 8-aligned (it holds a u64).
    unsafe {
        *a == *b
            && *a.add(1) == *b.add(1)
            && *a.add(2) == *b.add(2)
            && *a.add(3) == *b.add(3)
            && *a.add(4) == *b.add(4)
            && *a.add(5) == *b.add(5)
    }
}

/// One packet's stats as a new flow entry.
#[inline(always)]
fn fresh(ctx: &SkBuffContext, sample: &Sample, now: u64, tcp: bool) -> FlowStats {
    let mut stats = FlowStats {
        bytes: sample.bytes,
        packets: sample.packets,
        first_seen: now,
        last_seen: now,
        tcp_flags: sample.tcp_flags,
        syn: 0,
        syn_ack: 0,
        fin: 0,
        rst: 0,
        srtt_us: if tcp { srtt_us(ctx) } else { 0 },
        srtt_read: now,
    };
    count_flags(&mut stats, sample.tcp_flags);
    stats
}

#[inline(always)]
pub(crate) fn merge(first: bool, key: &FlowKey, delta: &FlowStats) {
    // Two call sites, each with a constant map: the verifier can then inline
    // the hash lookup instead of an indirect call through the map's ops.
    if first {
        merge_in(&FLOWS_0, key, delta)
    } else {
        merge_in(&FLOWS_1, key, delta)
    }
}

/// Adds `delta` to the flow's entry in `flows`, inserting it if new.
#[inline(always)]
fn merge_in(flows: &FlowMap, key: &FlowKey, delta: &FlowStats) {
    if let Some(stats) = flows.get_ptr_mut(key) {
        combine(stats, delta);
        return;
    }
    match flows.insert(key, delta, BPF_NOEXIST as u64) {
        Ok(()) => {}
        // Inserted on another CPU (or by a softirq on this one) meanwhile.
        Err(e) if e == -EEXIST => {
            if let Some(stats) = flows.get_ptr_mut(key) {
                combine(stats, delta);
            }
        }
        // E2BIG / ENOMEM: the map is full.
        Err(_) => count_loss(|loss| {
            loss.map_full_packets += delta.packets;
            loss.map_full_bytes += delta.bytes;
        }),
    }
}

/// Adds `d` to a flow's entry. Counters add atomically: another CPU may be
/// adding to the same entry. The times and the smoothed RTT are plain
/// loads and stores (BPF has no atomic min or max), and so is the or of the
/// flags seen (an atomic or needs BPF v3): two CPUs merging one flow in the
/// same instant can leave a time a tick off or miss a flag bit of
/// `tcp_flags`; the packet, byte and per-flag counts stay exact.
#[cfg(not(feature = "percpu-flows"))]
#[inline(always)]
fn combine(stats: *mut FlowStats, d: &FlowStats) {
    use crate::shared::{atomic_add, atomic_add32};
    // SAFETY: a map value, valid while the program runs; every writer of
    // the counters adds atomically.
    unsafe {
        atomic_add(&raw mut (*stats).bytes, d.bytes);
        atomic_add(&raw mut (*stats).packets, d.packets);
        for (counter, n) in [
            (&raw mut (*stats).syn, d.syn),
            (&raw mut (*stats).syn_ack, d.syn_ack),
            (&raw mut (*stats).fin, d.fin),
            (&raw mut (*stats).rst, d.rst),
        ] {
            if n != 0 {
                atomic_add32(counter, n);
            }
        }
        combine_times(stats, d);
    }
}

/// The per-CPU layout's `combine`: this CPU's value, no other CPU's.
#[cfg(feature = "percpu-flows")]
#[inline(always)]
fn combine(stats: *mut FlowStats, d: &FlowStats) {
    // SAFETY: a per-CPU value: only this CPU writes here (a softirq
    // interrupting process context between the load and the store of the
    // same flow is the only, rare, race).
    unsafe {
        (*stats).bytes += d.bytes;
        (*stats).packets += d.packets;
        (*stats).syn += d.syn;
        (*stats).syn_ack += d.syn_ack;
        (*stats).fin += d.fin;
        (*stats).rst += d.rst;
        combine_times(stats, d);
    }
}

/// First and last seen, the flags seen and the latest RTT read.
#[inline(always)]
unsafe fn combine_times(stats: *mut FlowStats, d: &FlowStats) {
    // SAFETY: the caller's map value.
    unsafe {
        // 0 is "not seen yet" (a per-CPU value of an entry another CPU
        // inserted starts zeroed), not the earliest time.
        if (*stats).first_seen == 0 || d.first_seen < (*stats).first_seen {
            (*stats).first_seen = d.first_seen;
        }
        if d.last_seen > (*stats).last_seen {
            (*stats).last_seen = d.last_seen;
        }
        if (*stats).tcp_flags | d.tcp_flags != (*stats).tcp_flags {
            (*stats).tcp_flags |= d.tcp_flags;
        }
        if d.srtt_us != 0 && d.srtt_read >= (*stats).srtt_read {
            (*stats).srtt_us = d.srtt_us;
            (*stats).srtt_read = d.srtt_read;
        }
    }
}

/// Adds one packet to a slot's stats.
#[inline(always)]
fn add(stats: &mut FlowStats, sample: &Sample, now: u64) {
    stats.bytes += sample.bytes;
    stats.packets += sample.packets;
    stats.last_seen = now;
    stats.tcp_flags |= sample.tcp_flags;
    if sample.tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST) != 0 {
        count_flags(stats, sample.tcp_flags);
    }
}

/// Counts the packet in the per-flag counters Hubble's `hubble_tcp_flags_total` needs.
#[inline(always)]
fn count_flags(stats: &mut FlowStats, tcp_flags: u32) {
    if tcp_flags & TCP_SYN != 0 {
        if tcp_flags & TCP_ACK != 0 {
            stats.syn_ack += 1;
        } else {
            stats.syn += 1;
        }
    }
    if tcp_flags & TCP_FIN != 0 {
        stats.fin += 1;
    }
    if tcp_flags & TCP_RST != 0 {
        stats.rst += 1;
    }
}
