//! The ABI between Osprey's kernel programs and userspace.
//!
//! Every type here is `#[repr(C)]` with explicit padding so that the kernel
//! (bpfel-unknown-none) and userspace (x86_64/aarch64) agree on its layout
//! byte for byte. Layout is pinned by tests at the bottom of this file.
#![no_std]

/// Packet seen entering a socket (cgroup_skb/ingress).
pub const DIR_INGRESS: u8 = 0;
/// Packet seen leaving a socket (cgroup_skb/egress).
pub const DIR_EGRESS: u8 = 1;

/// `family` of an IPv4 flow (AF_INET).
pub const FAMILY_V4: u8 = 2;
/// `family` of an IPv6 flow (AF_INET6).
pub const FAMILY_V6: u8 = 10;

/// IP protocol numbers the probes parse.
pub const PROTO_ICMP: u8 = 1;
pub const PROTO_TCP: u8 = 6;
pub const PROTO_UDP: u8 = 17;
pub const PROTO_ICMPV6: u8 = 58;

/// Default number of entries of each flow map (there are two, see `FLOW_MAP_NAMES`).
pub const DEFAULT_FLOW_MAP_ENTRIES: u32 = 65_536;

/// The kernel writes into one flow map while userspace drains the other.
/// `ACTIVE_FLOW_MAP[0]` holds the index (0 or 1) of the map being written.
pub const FLOW_MAP_NAMES: [&str; 2] = ["FLOWS_0", "FLOWS_1"];

/// Identity of a flow in one direction: the 5-tuple as it appears in the packet,
/// the direction it was observed in, and the cgroup (v2 id) of the socket.
///
/// Addresses are 16 bytes in network byte order, held as four `u32` words so
/// the kernel copies them with word loads; IPv4 addresses are the first word
/// and the rest is zero (see [`addr_octets`]). For ICMP/ICMPv6, `src_port`
/// carries the type and `dst_port` the code. Ports are in host byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub src_addr: [u32; 4],
    pub dst_addr: [u32; 4],
    pub cgroup_id: u64,
    pub src_port: u16,
    pub dst_port: u16,
    pub family: u8,
    pub protocol: u8,
    pub direction: u8,
    pub _pad: u8,
}

/// The marker flow `handover_probe` writes into flow map `index` (IP
/// protocol 253, reserved for experiments by RFC 3692: no real flow has it);
/// `held` when the program saw the active index change while it held the
/// map it had picked.
pub const fn handover_key(index: u16, held: bool) -> FlowKey {
    FlowKey {
        src_addr: [0; 4],
        dst_addr: [0; 4],
        cgroup_id: 0,
        src_port: index,
        dst_port: held as u16,
        family: 0,
        protocol: 253,
        direction: 0,
        _pad: 0,
    }
}

/// The 16 address bytes of a key's address words (network order).
pub fn addr_octets(addr: &[u32; 4]) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 4 {
        let b = addr[i].to_ne_bytes();
        out[i * 4] = b[0];
        out[i * 4 + 1] = b[1];
        out[i * 4 + 2] = b[2];
        out[i * 4 + 3] = b[3];
        i += 1;
    }
    out
}

/// Address words from 16 bytes (IPv6) or 4 bytes (IPv4, zero-padded).
pub fn addr_words(octets: &[u8]) -> [u32; 4] {
    let mut out = [0u32; 4];
    let mut i = 0;
    while i < 4 && i * 4 + 4 <= octets.len() {
        out[i] = u32::from_ne_bytes([
            octets[i * 4],
            octets[i * 4 + 1],
            octets[i * 4 + 2],
            octets[i * 4 + 3],
        ]);
        i += 1;
    }
    out
}

/// Counters of one flow since it was inserted into the active map (or
/// into a CPU's flow slot).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowStats {
    /// L3 bytes (IP header included) as seen at the socket layer.
    pub bytes: u64,
    /// Packets on the wire: a GSO super-packet counts as its segment count.
    pub packets: u64,
    /// The kernel's tick count (`jiffies_64`, `bpf_jiffies64()`) at the
    /// first and the last packet: one load per packet, where a
    /// clock read costs ~6 ns. The drain turns it into CLOCK_MONOTONIC with a
    /// [`ClockSample`]; the resolution is a tick, as with a coarse clock.
    pub first_seen: u64,
    pub last_seen: u64,
    /// OR of the TCP flags seen (FIN=0x01, SYN=0x02, RST=0x04, PSH=0x08, ACK=0x10, …).
    pub tcp_flags: u32,
    /// Packets (skbs) with SYN and no ACK, SYN+ACK, FIN, RST.
    pub syn: u32,
    pub syn_ack: u32,
    pub fin: u32,
    pub rst: u32,
    /// The smoothed RTT (µs) of the flow's TCP socket (`tcp_sock.srtt_us`),
    /// as last read; 0 when none.
    pub srtt_us: u32,
    /// When it was last read (jiffies); it is read at the flow's first
    /// packet per drain interval, then at most every `SRTT_EVERY_JIFFIES`
    /// (≈ 100 ms).
    pub srtt_read: u64,
}

/// The tick count and CLOCK_MONOTONIC read together by the `clock_sample`
/// program (the `CLOCK` array, index 0), which userspace runs on demand
/// (`BPF_PROG_TEST_RUN`) to convert the flows' tick counts into time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockSample {
    pub jiffies: u64,
    pub mono_ns: u64,
}

/// Longest kernel symbol name the `symbol_name` program writes, with its
/// NUL (names longer are cut; the kernel's own limit, `KSYM_NAME_LEN`, is
/// 512, but the functions that free packets have short names).
pub const SYMBOL_NAME_LEN: usize = 128;

/// A kernel text address named by the kernel (`%ps`: the function it is in,
/// and ` [module]` for a module's), written by the `symbol_name` program (the
/// `SYMBOL_NAME` array, index 0), which userspace test-runs with the address
/// as its one argument. An address in no function prints as `0x…`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SymbolName {
    /// `bpf_snprintf`'s result: the length of the name with its NUL, or a
    /// negative error (the program's return value is not the test run's).
    pub written: i64,
    pub name: [u8; SYMBOL_NAME_LEN],
}

impl Default for SymbolName {
    fn default() -> Self {
        Self {
            written: 0,
            name: [0; SYMBOL_NAME_LEN],
        }
    }
}

/// One of the last flows one CPU counted in one direction, with what it
/// added since it took the slot. Consecutive packets of that flow add up here
/// (no hash lookup); the flow reaches the active flow map when another flow
/// takes the slot, and userspace drains the slots of the idle map index with
/// the idle map. Slots are double-buffered like the maps: see [`flow_slot`].
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowSlot {
    pub key: FlowKey,
    pub stats: FlowStats,
    /// 1 when `key` and `stats` hold a flow.
    pub used: u32,
    pub _pad: u32,
}

/// Slots per CPU, map index and direction: two, so that two flows that
/// alternate on a CPU (a stream and its ACKs between two local pods, say)
/// both stay in their slot.
pub const FLOW_SLOT_WAYS: usize = 2;

/// The slots of one CPU, map index and direction (a `FLOW_SLOTS` value).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowSlots {
    pub ways: [FlowSlot; FLOW_SLOT_WAYS],
    /// 1 while a program works on the slots: a program that interrupts it
    /// on the same CPU (a softirq over process context) leaves them alone.
    pub busy: u32,
    pub _pad: u32,
}

/// Entries of the `FLOW_SLOTS` per-CPU array: two map indexes × two directions.
pub const FLOW_SLOT_ENTRIES: u32 = 4;

/// The `FLOW_SLOTS` index for flows of map `map` (0 or 1) in `direction`.
pub const fn flow_slot(map: u32, direction: u8) -> u32 {
    map * 2 + direction as u32
}

/// TCP flag bits as they appear in the header's 14th byte.
pub const TCP_FIN: u32 = 0x01;
pub const TCP_SYN: u32 = 0x02;
pub const TCP_RST: u32 = 0x04;
pub const TCP_ACK: u32 = 0x10;

/// What the probes could not account. Per-CPU, index 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowLoss {
    /// Packets of new flows that found the active flow map full.
    pub map_full_packets: u64,
    /// Their bytes.
    pub map_full_bytes: u64,
    /// Packets whose headers could not be read (truncated or unknown family).
    pub unparsed_packets: u64,
    /// Drops of new (flow, reason) pairs that found the active drop map full.
    pub drop_map_full: u64,
    /// Retransmits of new flows that found the active retransmit map full.
    pub retransmit_map_full: u64,
    /// Connection outcomes that found the active connection map full.
    pub conn_map_full: u64,
    /// DNS packets that found the DNS ring buffer full.
    pub dns_ring_full: u64,
    /// HTTP request or response starts that found the HTTP ring buffer full.
    pub http_ring_full: u64,
}

/// Entries of each of the two drop maps and of each of the two retransmit maps.
pub const DEFAULT_EVENT_MAP_ENTRIES: u32 = 16_384;

/// A packet the kernel dropped (`skb:kfree_skb`): its flow as far as its
/// headers tell (`direction` is 0, `cgroup_id` 0), the kernel's drop reason
/// (`enum skb_drop_reason`, whose numbering differs between kernels: names
/// come from the running kernel's BTF) and where it was freed (the
/// tracepoint's `location`, a kernel text address: `/proc/kallsyms` names
/// the function).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DropKey {
    pub flow: FlowKey,
    pub reason: u32,
    pub _pad: u32,
    pub location: u64,
}

/// Bytes of a DNS message copied into a `DnsEvent`: 4096, the UDP payload
/// size EDNS0 clients commonly offer, so answers longer than the classic 512
/// bytes (many records, DNSSEC, long TXT) arrive whole. A record takes only
/// the bytes copied, so a short message costs no more than before. A longer
/// message (over TCP) is cut; its header and question still fit.
pub const DNS_PAYLOAD_MAX: usize = 4096;

/// A UDP packet to or from port 53, as a socket sent or received it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct DnsEvent {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the socket layer saw it.
    pub ts_ns: u64,
    /// Its flow, with `direction` set.
    pub flow: FlowKey,
    /// Bytes of DNS message in the packet, and how many were copied.
    pub payload_len: u32,
    pub captured: u32,
    pub payload: [u8; DNS_PAYLOAD_MAX],
}

/// Bytes of a TCP segment that starts an HTTP/1.x request or response
/// copied into an `HttpEvent`, at most: enough for typical header blocks
/// (the request line, `traceparent`, `Content-Length`). The agent's
/// `http_capture_bytes` (the `HTTP_CAPTURE_BYTES` global, 0 = HTTP off)
/// copies fewer.
pub const HTTP_PAYLOAD_MAX: usize = 1024;

/// A TCP segment, as a socket sent or received it, whose payload starts
/// with an HTTP/1.x request line (a method token and a space) or a status
/// line (`HTTP/1.`). A GSO/GRO super-packet is one segment here.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct HttpEvent {
    /// CLOCK_MONOTONIC ns when the socket layer saw it: TCP's own departure
    /// stamp on egress, `bpf_ktime_get_ns()` on ingress.
    pub ts_ns: u64,
    /// Its flow, with `direction` and `cgroup_id` set.
    pub flow: FlowKey,
    /// Bytes of TCP payload in the segment, and how many were copied.
    pub payload_len: u32,
    pub captured: u32,
    pub payload: [u8; HTTP_PAYLOAD_MAX],
}

/// TCP connection outcomes (`sock:inet_sock_set_state`), `ConnKey::outcome`.
pub const CONN_ESTABLISHED: u32 = 0;
pub const CONN_REFUSED: u32 = 1;
pub const CONN_TIMEOUT: u32 = 2;
pub const CONN_RESET: u32 = 3;
/// A connect that failed otherwise (unreachable, …).
pub const CONN_ERROR: u32 = 4;

/// A connection outcome seen from one socket: `flow` is local → remote with
/// the local port zeroed (so ephemeral ports do not make new series).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnKey {
    pub flow: FlowKey,
    pub outcome: u32,
    pub _pad: u32,
}

/// Buckets of a per-cgroup run-queue latency histogram: bucket `i` counts
/// waits in [4^i, 4^(i+1)) µs (bucket 0 also holds waits under 1 µs, the
/// last one everything from 4^(RUNQ_BUCKETS-1) µs ≈ 4.2 s up): the ×4
/// resolution `container_cpu_runqueue_latency_seconds` exposes, kept in
/// the kernel as exposed (a value per cgroup and possible CPU, so every
/// bucket costs 8 bytes × entries × CPUs).
pub const RUNQ_BUCKETS: usize = 12;

/// Run-queue latency of one cgroup (v2 id): how long its tasks were runnable
/// (woken, or preempted) before a CPU ran them. Per CPU, cumulative.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunqHist {
    pub buckets: [u64; RUNQ_BUCKETS],
    pub sum_ns: u64,
    pub count: u64,
}

/// Entries of the per-cgroup resource maps (run queue, block IO).
pub const DEFAULT_CGROUP_MAP_ENTRIES: u32 = 8_192;
/// Tasks (threads) whose run-queue state is kept, from their first wake-up
/// to their exit; a wake-up of a task beyond that is counted as lost.
pub const DEFAULT_RUNQ_TASK_ENTRIES: u32 = 65_536;

/// `BlockKey::op`.
pub const BLOCK_READ: u32 = 0;
pub const BLOCK_WRITE: u32 = 1;

/// Block IO submitted by one cgroup (v2 id of the submitting task) to one
/// device (kernel `dev_t`: major << 20 | minor), reads or writes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockKey {
    pub cgroup_id: u64,
    pub dev: u32,
    pub op: u32,
}

/// Per CPU, cumulative.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BlockStats {
    pub bytes: u64,
    pub ios: u64,
}

/// An OOM kill (`oom:mark_victim`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OomEvent {
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC).
    pub ts_ns: u64,
    /// cgroup (v2 id) of the task that ran out of memory and chose the victim;
    /// for a memory-cgroup OOM it is inside the cgroup that hit its limit.
    pub trigger_cgroup_id: u64,
    pub victim_pid: u32,
    pub victim_uid: u32,
    /// The victim's command, NUL-padded.
    pub comm: [u8; 16],
    pub total_vm_kb: u64,
    pub anon_rss_kb: u64,
}

/// What the resource probes could not account. Per-CPU, index 0.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ResourceLoss {
    /// Wake-ups not timed because the run-queue task map was full.
    pub runq_start_full: u64,
    /// Waits of new cgroups that found the histogram map full.
    pub runq_hist_full: u64,
    /// Block IOs of new (cgroup, device, op) keys that found the map full.
    pub block_map_full: u64,
    /// OOM kills that found the event ring buffer full.
    pub oom_ring_full: u64,
}

/// Offsets the kernel programs need, resolved at load time from the running
/// kernel (tracefs formats, BTF) and handed over as read-only globals.
pub mod offsets {
    /// `skb:kfree_skb` fields.
    pub const DROP_SKBADDR: &str = "OFF_DROP_SKBADDR";
    pub const DROP_PROTOCOL: &str = "OFF_DROP_PROTOCOL";
    pub const DROP_REASON: &str = "OFF_DROP_REASON";
    pub const DROP_LOCATION: &str = "OFF_DROP_LOCATION";
    /// `struct sk_buff` members.
    pub const SKB_HEAD: &str = "OFF_SKB_HEAD";
    pub const SKB_NETWORK_HEADER: &str = "OFF_SKB_NETWORK_HEADER";
    /// `tcp:tcp_retransmit_skb` fields.
    pub const RTX_SPORT: &str = "OFF_RTX_SPORT";
    pub const RTX_DPORT: &str = "OFF_RTX_DPORT";
    pub const RTX_FAMILY: &str = "OFF_RTX_FAMILY";
    pub const RTX_SADDR: &str = "OFF_RTX_SADDR";
    pub const RTX_DADDR: &str = "OFF_RTX_DADDR";
    pub const RTX_SADDR_V6: &str = "OFF_RTX_SADDR_V6";
    pub const RTX_DADDR_V6: &str = "OFF_RTX_DADDR_V6";
    /// `sock:inet_sock_set_state` fields.
    pub const SS_SKADDR: &str = "OFF_SS_SKADDR";
    pub const SS_OLDSTATE: &str = "OFF_SS_OLDSTATE";
    pub const SS_NEWSTATE: &str = "OFF_SS_NEWSTATE";
    pub const SS_SPORT: &str = "OFF_SS_SPORT";
    pub const SS_DPORT: &str = "OFF_SS_DPORT";
    pub const SS_FAMILY: &str = "OFF_SS_FAMILY";
    pub const SS_PROTOCOL: &str = "OFF_SS_PROTOCOL";
    pub const SS_SADDR: &str = "OFF_SS_SADDR";
    pub const SS_DADDR: &str = "OFF_SS_DADDR";
    pub const SS_SADDR_V6: &str = "OFF_SS_SADDR_V6";
    pub const SS_DADDR_V6: &str = "OFF_SS_DADDR_V6";
    /// `struct sock` member `sk_err`.
    pub const SOCK_SK_ERR: &str = "OFF_SOCK_SK_ERR";
    /// `sched:sched_switch` and `sched:sched_wakeup(_new)` fields.
    pub const SW_PREV_PID: &str = "OFF_SW_PREV_PID";
    pub const SW_PREV_STATE: &str = "OFF_SW_PREV_STATE";
    pub const SW_NEXT_PID: &str = "OFF_SW_NEXT_PID";
    pub const WAKEUP_PID: &str = "OFF_WAKEUP_PID";
    /// Non-zero when this kernel's `sched_switch` / `sched_wakeup` records
    /// have the layout of `SCHED_LAYOUT` (see there).
    pub const SCHED_LAYOUT_KNOWN: &str = "SCHED_LAYOUT_KNOWN";
    /// `block:block_bio_queue` fields.
    pub const BIO_DEV: &str = "OFF_BIO_DEV";
    pub const BIO_NR_SECTOR: &str = "OFF_BIO_NR_SECTOR";
    pub const BIO_RWBS: &str = "OFF_BIO_RWBS";
    /// `oom:mark_victim` fields.
    pub const OOM_PID: &str = "OFF_OOM_PID";
    pub const OOM_COMM: &str = "OFF_OOM_COMM";
    pub const OOM_UID: &str = "OFF_OOM_UID";
    pub const OOM_TOTAL_VM: &str = "OFF_OOM_TOTAL_VM";
    pub const OOM_ANON_RSS: &str = "OFF_OOM_ANON_RSS";
}

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data, `#[repr(C)]`, no implicit padding (checked by the tests below).
    unsafe impl aya::Pod for super::FlowKey {}
    unsafe impl aya::Pod for super::FlowStats {}
    unsafe impl aya::Pod for super::ClockSample {}
    unsafe impl aya::Pod for super::SymbolName {}
    unsafe impl aya::Pod for super::FlowSlots {}
    unsafe impl aya::Pod for super::FlowLoss {}
    unsafe impl aya::Pod for super::DropKey {}
    unsafe impl aya::Pod for super::ConnKey {}
    unsafe impl aya::Pod for super::DnsEvent {}
    unsafe impl aya::Pod for super::HttpEvent {}
    unsafe impl aya::Pod for super::RunqHist {}
    unsafe impl aya::Pod for super::BlockKey {}
    unsafe impl aya::Pod for super::BlockStats {}
    unsafe impl aya::Pod for super::OomEvent {}
    unsafe impl aya::Pod for super::ResourceLoss {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{align_of, size_of};

    #[test]
    fn layouts_have_no_implicit_padding() {
        assert_eq!(size_of::<FlowKey>(), 16 + 16 + 8 + 2 + 2 + 4);
        assert_eq!(align_of::<FlowKey>(), 8);
        assert_eq!(size_of::<FlowStats>(), 8 * 5 + 4 * 6);
        assert_eq!(size_of::<FlowSlot>(), 48 + 64 + 8);
        assert_eq!(size_of::<FlowSlots>(), 2 * (48 + 64 + 8) + 8);
        assert_eq!(size_of::<FlowLoss>(), 8 * 8);
        assert_eq!(
            size_of::<HttpEvent>(),
            8 + size_of::<FlowKey>() + 8 + HTTP_PAYLOAD_MAX
        );
        assert_eq!(
            size_of::<DnsEvent>(),
            8 + size_of::<FlowKey>() + 8 + DNS_PAYLOAD_MAX
        );
        assert_eq!(size_of::<ConnKey>(), size_of::<FlowKey>() + 8);
        assert_eq!(size_of::<DropKey>(), size_of::<FlowKey>() + 16);
        assert_eq!(size_of::<RunqHist>(), 8 * (RUNQ_BUCKETS + 2));
        assert_eq!(size_of::<BlockKey>(), 16);
        assert_eq!(size_of::<BlockStats>(), 16);
        assert_eq!(size_of::<OomEvent>(), 8 + 8 + 4 + 4 + 16 + 8 + 8);
        assert_eq!(size_of::<ResourceLoss>(), 8 * 4);
    }

    #[test]
    fn address_words_round_trip() {
        let v6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        assert_eq!(addr_octets(&addr_words(&v6)), v6);
        let v4 = addr_octets(&addr_words(&[10, 0, 0, 1]));
        assert_eq!(&v4[..4], &[10, 0, 0, 1]);
        assert_eq!(&v4[4..], &[0; 12]);
    }
}

/// Where `sched:sched_switch` and `sched:sched_wakeup(_new)` keep the fields
/// the run-queue probes read, on every 64-bit kernel since 4.x (the records
/// begin with 8 bytes of common fields and a 16-byte comm). When the running
/// kernel's tracefs formats agree, the probes read the fields with plain
/// loads at these constant offsets, which the verifier allows on a
/// tracepoint context, instead of one helper call per field at offsets
/// known only at load time: ≈ 40 ns less per context switch. Otherwise they
/// fall back to the offsets from tracefs.
pub mod sched_layout {
    pub const SW_PREV_PID: u32 = 24;
    pub const SW_PREV_STATE: u32 = 32;
    pub const SW_NEXT_PID: u32 = 56;
    pub const WAKEUP_PID: u32 = 24;
}
