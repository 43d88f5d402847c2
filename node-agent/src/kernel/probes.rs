//! Loading Osprey's kernel programs and attaching them. Dropping `Probes`
//! detaches everything; the attachments are bpf_links owned by this process,
//! so a crash detaches them too (the kernel closes the link fds).

use std::{collections::BTreeMap, fs::File, os::fd::OwnedFd, path::PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray, PerCpuHashMap, RingBuf},
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, ProgramError, RawTracePoint, TracePoint,
    },
};
use osprey_abi::{
    BlockKey, BlockStats, ConnKey, DropKey, FLOW_MAP_NAMES, FlowKey, FlowLoss, FlowSlots,
    FlowStats, ResourceLoss, RunqHist, offsets,
};
use tracing::warn;

use crate::{
    kernel::clock::{self, KernelClock},
    kernel::info::{btf::KernelBtf, tracefs::TracepointFormat},
};

/// How often (at most) the flow programs read a TCP flow's smoothed RTT.
const SRTT_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("cannot load the kernel programs from {path} (build them with `cargo xtask build`)")]
    Load {
        path: PathBuf,
        #[source]
        source: Box<aya::EbpfError>,
    },
    #[error("the object has no program named {0}")]
    MissingProgram(&'static str),
    #[error("the object has no map named {0}")]
    MissingMap(&'static str),
    #[error("map {name} has an unexpected type or layout")]
    MapType {
        name: &'static str,
        #[source]
        source: aya::maps::MapError,
    },
    #[error("program {name}: {action} failed")]
    Program {
        name: &'static str,
        action: &'static str,
        #[source]
        source: ProgramError,
    },
    #[error("cannot open cgroup {path}")]
    Cgroup {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot enable kernel BPF run-time statistics")]
    Stats(#[source] aya::sys::SyscallError),
    #[error("cannot time flows with the kernel's tick count")]
    Clock(#[source] crate::kernel::clock::ClockError),
    #[error("cannot list the loaded eBPF programs")]
    Listing(#[source] Box<ProgramError>),
}

/// Handles to the probes' maps, moved to the drain stage.
pub struct FlowMaps {
    pub flows: [PerCpuHashMap<MapData, FlowKey, FlowStats>; 2],
    /// The per-CPU last-flow slots of both map indexes (see `osprey_abi::FlowSlot`).
    pub slots: PerCpuArray<MapData, FlowSlots>,
    pub drops: [PerCpuHashMap<MapData, DropKey, u64>; 2],
    pub retransmits: [PerCpuHashMap<MapData, FlowKey, u64>; 2],
    pub connections: [PerCpuHashMap<MapData, ConnKey, u64>; 2],
    /// Taken by the DNS reader.
    pub dns: Option<RingBuf<MapData>>,
    pub active: Array<MapData, u32>,
    pub loss: PerCpuArray<MapData, FlowLoss>,
    /// Turns the flows' tick counts into time.
    pub clock: KernelClock,
}

/// Handles to the resource probes' maps (cumulative; read at scrape time).
pub struct ResourceMaps {
    pub runq: PerCpuHashMap<MapData, u64, RunqHist>,
    pub block: PerCpuHashMap<MapData, BlockKey, BlockStats>,
    /// Taken by the OOM event reader.
    pub oom: Option<RingBuf<MapData>>,
    pub loss: PerCpuArray<MapData, ResourceLoss>,
}

/// Whether this kernel's `sched_switch` and `sched_wakeup` records have the
/// layout the run-queue probes read with plain loads (`osprey_abi::sched_layout`).
fn sched_layout_known(switch: &TracepointFormat, wakeup: &TracepointFormat) -> bool {
    use osprey_abi::sched_layout as at;
    let is = |f: &TracepointFormat, field, size, want| f.offset(field, size).ok() == Some(want);
    is(switch, "prev_pid", 4, at::SW_PREV_PID)
        && is(switch, "prev_state", 8, at::SW_PREV_STATE)
        && is(switch, "next_pid", 4, at::SW_NEXT_PID)
        && is(wakeup, "pid", 4, at::WAKEUP_PID)
}

/// How the run-queue probes read their tracepoints' fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedFields {
    /// Plain loads at `osprey_abi::sched_layout`'s offsets where this kernel
    /// has that layout, else helper reads at tracefs offsets.
    Auto,
    /// Helper reads at tracefs offsets always: the portable path, which
    /// `Auto` takes on kernels of another layout (for its test).
    Helpers,
}

/// Tracepoint offsets of the resource probes (scheduler, block, OOM).
fn resource_globals(sched_fields: SchedFields) -> Result<Vec<(&'static str, u32)>, String> {
    let load = |c, t| TracepointFormat::load(c, t).map_err(|e| e.to_string());
    let (switch, wakeup, bio, oom) = (
        load("sched", "sched_switch")?,
        load("sched", "sched_wakeup")?,
        load("block", "block_bio_queue")?,
        load("oom", "mark_victim")?,
    );
    let tp =
        |f: &TracepointFormat, field: &str, size| f.offset(field, size).map_err(|e| e.to_string());
    Ok(vec![
        (
            offsets::SCHED_LAYOUT_KNOWN,
            u32::from(sched_fields == SchedFields::Auto && sched_layout_known(&switch, &wakeup)),
        ),
        (offsets::SW_PREV_PID, tp(&switch, "prev_pid", 4)?),
        (offsets::SW_PREV_STATE, tp(&switch, "prev_state", 8)?),
        (offsets::SW_NEXT_PID, tp(&switch, "next_pid", 4)?),
        (offsets::WAKEUP_PID, tp(&wakeup, "pid", 4)?),
        (offsets::BIO_DEV, tp(&bio, "dev", 4)?),
        (offsets::BIO_NR_SECTOR, tp(&bio, "nr_sector", 4)?),
        (
            offsets::BIO_RWBS,
            bio.array_offset("rwbs", 2).map_err(|e| e.to_string())?,
        ),
        (offsets::OOM_PID, tp(&oom, "pid", 4)?),
        (offsets::OOM_COMM, tp(&oom, "comm", 4)?),
        (offsets::OOM_UID, tp(&oom, "uid", 4)?),
        (offsets::OOM_TOTAL_VM, tp(&oom, "total_vm", 8)?),
        (offsets::OOM_ANON_RSS, tp(&oom, "anon_rss", 8)?),
    ])
}

/// Offsets and names read from the running kernel for the tracepoint probes.
pub struct KernelLayout {
    pub globals: Vec<(&'static str, u32)>,
    /// `enum skb_drop_reason` value → name (without the `SKB_DROP_REASON_` prefix).
    pub drop_reasons: BTreeMap<u32, String>,
}

impl KernelLayout {
    /// Reads the tracepoint formats and the kernel's BTF.
    pub fn resolve() -> Result<Self, String> {
        let drop = TracepointFormat::load("skb", "kfree_skb").map_err(|e| e.to_string())?;
        let rtx = TracepointFormat::load("tcp", "tcp_retransmit_skb").map_err(|e| e.to_string())?;
        let set_state =
            TracepointFormat::load("sock", "inet_sock_set_state").map_err(|e| e.to_string())?;
        let btf = KernelBtf::load().map_err(|e| e.to_string())?;
        let tp = |f: &TracepointFormat, field: &str, size| {
            f.offset(field, size).map_err(|e| e.to_string())
        };
        let skb = |member| {
            btf.member_offset("sk_buff", member)
                .map_err(|e| e.to_string())
        };
        let globals = vec![
            (offsets::DROP_SKBADDR, tp(&drop, "skbaddr", 8)?),
            (offsets::DROP_PROTOCOL, tp(&drop, "protocol", 2)?),
            (offsets::DROP_REASON, tp(&drop, "reason", 4)?),
            (offsets::SKB_HEAD, skb("head")?),
            (offsets::SKB_NETWORK_HEADER, skb("network_header")?),
            (offsets::RTX_SPORT, tp(&rtx, "sport", 2)?),
            (offsets::RTX_DPORT, tp(&rtx, "dport", 2)?),
            (offsets::RTX_FAMILY, tp(&rtx, "family", 2)?),
            (offsets::RTX_SADDR, tp(&rtx, "saddr", 4)?),
            (offsets::RTX_DADDR, tp(&rtx, "daddr", 4)?),
            (offsets::RTX_SADDR_V6, tp(&rtx, "saddr_v6", 16)?),
            (offsets::RTX_DADDR_V6, tp(&rtx, "daddr_v6", 16)?),
            (offsets::SS_SKADDR, tp(&set_state, "skaddr", 8)?),
            (offsets::SS_OLDSTATE, tp(&set_state, "oldstate", 4)?),
            (offsets::SS_NEWSTATE, tp(&set_state, "newstate", 4)?),
            (offsets::SS_SPORT, tp(&set_state, "sport", 2)?),
            (offsets::SS_DPORT, tp(&set_state, "dport", 2)?),
            (offsets::SS_FAMILY, tp(&set_state, "family", 2)?),
            (offsets::SS_PROTOCOL, tp(&set_state, "protocol", 2)?),
            (offsets::SS_SADDR, tp(&set_state, "saddr", 4)?),
            (offsets::SS_DADDR, tp(&set_state, "daddr", 4)?),
            (offsets::SS_SADDR_V6, tp(&set_state, "saddr_v6", 16)?),
            (offsets::SS_DADDR_V6, tp(&set_state, "daddr_v6", 16)?),
            (
                offsets::SOCK_SK_ERR,
                btf.member_offset("sock", "sk_err")
                    .map_err(|e| e.to_string())?,
            ),
        ];
        // BTF names the enum on every kernel; the tracepoint's own table is the fallback.
        let drop_reasons = btf
            .enum_names("skb_drop_reason", "SKB_DROP_REASON_")
            .unwrap_or_else(|_| drop.symbols("reason"));
        Ok(Self {
            globals,
            drop_reasons,
        })
    }
}

/// A loaded program's kernel id and cumulative run statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramStats {
    pub name: String,
    pub id: u32,
    pub runs: u64,
    pub run_time_ns: u64,
}

/// The loaded and attached kernel programs.
pub struct Probes {
    ebpf: Ebpf,
    _stats: Option<OwnedFd>,
    pub attached: Vec<&'static str>,
    /// Drop reason names of the running kernel (empty when the drop probe is off).
    pub drop_reasons: BTreeMap<u32, String>,
}

/// The tracepoint programs: (program, category, tracepoint).
const TRACEPOINT_PROGRAMS: [(&str, &str, &str); 3] = [
    ("skb_drop", "skb", "kfree_skb"),
    ("tcp_retransmit", "tcp", "tcp_retransmit_skb"),
    ("tcp_state", "sock", "inet_sock_set_state"),
];

/// The resource programs: (program, category, tracepoint). `sched_wakeup_new`
/// has the same format as `sched_wakeup`.
const RESOURCE_PROGRAMS: [(&str, &str, &str); 6] = [
    ("sched_wakeup", "sched", "sched_wakeup"),
    ("sched_wakeup_new", "sched", "sched_wakeup_new"),
    ("sched_switch", "sched", "sched_switch"),
    ("sched_exit", "sched", "sched_process_exit"),
    ("block_io", "block", "block_bio_queue"),
    ("oom_victim", "oom", "mark_victim"),
];

/// The resource programs that time run-queue waits (config `runqueue_latency`).
const RUNQUEUE_PROGRAMS: [&str; 4] = [
    "sched_wakeup",
    "sched_wakeup_new",
    "sched_switch",
    "sched_exit",
];

/// The flow programs and the hook each attaches to.
const FLOW_PROGRAMS: [(&str, CgroupSkbAttachType); 2] = [
    ("flow_ingress", CgroupSkbAttachType::Ingress),
    ("flow_egress", CgroupSkbAttachType::Egress),
];

impl Probes {
    /// Loads the object at `path`, sizes the flow maps, and attaches the flow
    /// programs to the cgroup v2 directory `cgroup` (inherited by every
    /// cgroup below it, so every socket on the node in any network namespace),
    /// and the tracepoint programs whose offsets this kernel gives (the
    /// run-queue ones only with `runqueue`, reading their fields as it says).
    pub fn load_and_attach(
        path: PathBuf,
        cgroup: PathBuf,
        flow_map_entries: u32,
        bpf_stats: bool,
        runqueue: Option<SchedFields>,
    ) -> Result<(Self, FlowMaps, Option<ResourceMaps>), ProbeError> {
        let layout = KernelLayout::resolve()
            .inspect_err(|e| warn!(error = %e, "drop and retransmit probes disabled: the kernel layout is unknown"))
            .ok();
        let resources = resource_globals(runqueue.unwrap_or(SchedFields::Auto))
            .inspect_err(|e| warn!(error = %e, "run-queue, block IO and OOM probes disabled: the kernel layout is unknown"))
            .ok();
        let mut loader = EbpfLoader::new();
        for (name, value) in resources.iter().flatten() {
            loader.override_global(name, value, true);
        }
        let tick = clock::tick().map_err(ProbeError::Clock)?;
        let srtt_every = (SRTT_EVERY.as_nanos() / tick.as_nanos()).max(1) as u32;
        loader.override_global("SRTT_EVERY_JIFFIES", &srtt_every, true);
        for name in FLOW_MAP_NAMES {
            loader.map_max_entries(name, flow_map_entries);
        }
        if let Some(layout) = &layout {
            for (name, value) in &layout.globals {
                loader.override_global(name, value, true);
            }
        }
        let mut ebpf = loader.load_file(&path).map_err(|source| ProbeError::Load {
            path,
            source: Box::new(source),
        })?;
        let stats = bpf_stats
            .then(|| aya::sys::enable_stats(aya::sys::Stats::RunTime))
            .transpose()
            .map_err(ProbeError::Stats)?;

        let cgroup_dir = File::open(&cgroup).map_err(|source| ProbeError::Cgroup {
            path: cgroup.clone(),
            source,
        })?;
        let mut attached = Vec::new();
        const LOAD: &str = "load (verifier)";
        // A bpf_link (kernel >= 5.7) always coexists with other programs on the
        // cgroup; link_create rejects the ALLOW_MULTI flag, so none is passed.
        let mode = CgroupAttachMode::Single;
        for (name, attach_type) in FLOW_PROGRAMS {
            setup::<CgroupSkb>(&mut ebpf, name, |p| {
                p.load().map_err(|e| (LOAD, e))?;
                p.attach(&cgroup_dir, attach_type, mode)
                    .map(drop)
                    .map_err(|e| ("attach", e))
            })?;
            attached.push(name);
        }
        // Each group of tracepoint programs only when its offsets are known.
        let tracepoints = [
            (layout.is_some(), &TRACEPOINT_PROGRAMS[..]),
            (resources.is_some(), &RESOURCE_PROGRAMS[..]),
        ];
        for (name, category, tracepoint) in tracepoints
            .into_iter()
            .filter(|(known, _)| *known)
            .flat_map(|(_, programs)| programs.iter().copied())
            .filter(|(name, ..)| runqueue.is_some() || !RUNQUEUE_PROGRAMS.contains(name))
        {
            setup::<TracePoint>(&mut ebpf, name, |p| {
                p.load().map_err(|e| (LOAD, e))?;
                p.attach(category, tracepoint)
                    .map(drop)
                    .map_err(|e| ("attach", e))
            })?;
            attached.push(name);
        }
        let resource_maps = match resources {
            Some(_) => Some(ResourceMaps {
                runq: take(&mut ebpf, "RUNQ_LATENCY")?,
                block: take(&mut ebpf, "BLOCK_IO")?,
                oom: Some(take(&mut ebpf, "OOM_EVENTS")?),
                loss: take(&mut ebpf, "RESOURCE_LOSS")?,
            }),
            None => None,
        };
        // The clock program is only ever test-run, never attached.
        let mut clock_fd = None;
        setup::<RawTracePoint>(&mut ebpf, "clock_sample", |p| {
            p.load().map_err(|e| (LOAD, e))?;
            let fd = p.fd().map_err(|e| ("fd", e))?.try_clone();
            clock_fd = Some(fd.map_err(|e| ("fd", ProgramError::IOError(e)))?);
            Ok(())
        })?;
        let clock = KernelClock::new(
            clock_fd.expect("set by setup"),
            take(&mut ebpf, "CLOCK")?,
            tick,
        )
        .map_err(ProbeError::Clock)?;
        let maps = FlowMaps {
            clock,
            flows: [take(&mut ebpf, "FLOWS_0")?, take(&mut ebpf, "FLOWS_1")?],
            slots: take(&mut ebpf, "FLOW_SLOTS")?,
            drops: [take(&mut ebpf, "DROPS_0")?, take(&mut ebpf, "DROPS_1")?],
            retransmits: [
                take(&mut ebpf, "RETRANSMITS_0")?,
                take(&mut ebpf, "RETRANSMITS_1")?,
            ],
            connections: [
                take(&mut ebpf, "CONNECTIONS_0")?,
                take(&mut ebpf, "CONNECTIONS_1")?,
            ],
            dns: Some(take(&mut ebpf, "DNS_EVENTS")?),
            active: take(&mut ebpf, "ACTIVE_FLOW_MAP")?,
            loss: take(&mut ebpf, "FLOW_LOSS")?,
        };
        let drop_reasons = layout.map(|l| l.drop_reasons).unwrap_or_default();
        Ok((
            Self {
                ebpf,
                _stats: stats,
                attached,
                drop_reasons,
            },
            maps,
            resource_maps,
        ))
    }

    /// Per-program kernel identity and statistics. Runs and run time are
    /// non-zero only while `kernel.bpf_stats_enabled` is on.
    pub fn run_stats(&self) -> Vec<ProgramStats> {
        self.ebpf
            .programs()
            .filter_map(|(name, program)| {
                let info = program.info().ok()?;
                Some(ProgramStats {
                    name: name.to_owned(),
                    id: info.id(),
                    runs: info.run_count(),
                    run_time_ns: info.run_time().as_nanos() as u64,
                })
            })
            .collect()
    }
}

/// Finds program `name` as a `T` and runs `f` on it (load, attach); a failing
/// step is reported with the program's name and the step.
pub(super) fn setup<T>(
    ebpf: &mut Ebpf,
    name: &'static str,
    f: impl FnOnce(&mut T) -> Result<(), (&'static str, ProgramError)>,
) -> Result<(), ProbeError>
where
    for<'a> &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    let program: &mut T = ebpf
        .program_mut(name)
        .ok_or(ProbeError::MissingProgram(name))?
        .try_into()
        .map_err(|source| ProbeError::Program {
            name,
            action: "type check",
            source,
        })?;
    f(program).map_err(|(action, source)| ProbeError::Program {
        name,
        action,
        source,
    })
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, ProbeError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or(ProbeError::MissingMap(name))?;
    T::try_from(map).map_err(|source| ProbeError::MapType { name, source })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SWITCH: &str = include_str!("info/sched_switch.format");
    const WAKEUP: &str = include_str!("info/sched_wakeup.format");

    #[test]
    fn sched_layout_is_known_only_where_the_formats_agree() {
        let switch = TracepointFormat::parse("sched/sched_switch", SWITCH);
        let wakeup = TracepointFormat::parse("sched/sched_wakeup", WAKEUP);
        // This kernel's (6.18) formats: the plain loads apply.
        assert!(sched_layout_known(&switch, &wakeup));
        // A kernel whose prev_state sits elsewhere (or is 4 bytes) falls back.
        let moved = SWITCH.replace(
            "field:long prev_state;\toffset:32;\tsize:8;",
            "field:long prev_state;\toffset:36;\tsize:8;",
        );
        assert_ne!(moved, SWITCH, "the fixture has the field to move");
        let moved = TracepointFormat::parse("sched/sched_switch", &moved);
        assert!(!sched_layout_known(&moved, &wakeup));
        let narrow = SWITCH.replace(
            "field:long prev_state;\toffset:32;\tsize:8;",
            "field:unsigned int prev_state;\toffset:32;\tsize:4;",
        );
        let narrow = TracepointFormat::parse("sched/sched_switch", &narrow);
        assert!(!sched_layout_known(&narrow, &wakeup));
    }
}
