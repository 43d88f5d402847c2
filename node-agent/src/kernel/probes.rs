//! Loading Osprey's kernel programs and attaching them. Dropping `Probes`
//! detaches everything; the attachments are bpf_links owned by this process,
//! so a crash detaches them too (the kernel closes the link fds).

use std::{collections::BTreeMap, fs::File, os::fd::OwnedFd, path::PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData},
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, ProgramError, ProgramFd, RawTracePoint,
        TracePoint,
    },
};
use osprey_abi::FLOW_MAP_NAMES;
use tracing::warn;

use crate::kernel::clock::{self, KernelClock};
use crate::kernel::grace::ProgramGrace;
use crate::kernel::kallsyms::SymbolProgram;
use crate::kernel::layout::resource_globals;
// The layouts and map handles live in their own modules; callers keep
// their `probes::` paths.
pub use crate::kernel::{
    layout::{KernelLayout, SchedFields},
    maps::{FlowMaps, ResourceMaps},
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

/// A loaded program's kernel id and cumulative run statistics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProgramStats {
    pub name: String,
    pub id: u32,
    pub runs: u64,
    pub run_time_ns: u64,
    /// Runs the kernel skipped: the hook fired while another tracing
    /// program ran on that CPU (`recsn_misses`, kept whether or not
    /// `bpf_stats` is on).
    pub missed_runs: u64,
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
        http_capture_bytes: u32,
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
        loader.override_global("HTTP_CAPTURE_BYTES", &http_capture_bytes, true);
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
            http: (http_capture_bytes > 0)
                .then(|| take(&mut ebpf, "HTTP_EVENTS"))
                .transpose()?,
            active: take(&mut ebpf, "ACTIVE_FLOW_MAP")?,
            grace: ProgramGrace::new()
                .inspect_err(|e| warn!(error = %e, "no map-in-map here: the flow drain waits 5 ms after each flip instead of an RCU grace period"))
                .ok(),
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

    /// Loads the raw tracepoint program `name` of the same object (its maps
    /// are the loaded probes'), for test runs: the self-test programs
    /// (`handover_probe`), never attached.
    pub fn test_program(&mut self, name: &'static str) -> Result<ProgramFd, ProbeError> {
        let mut fd = None;
        setup::<RawTracePoint>(&mut self.ebpf, name, |p| {
            p.load().map_err(|e| ("load (verifier)", e))?;
            let cloned = p.fd().map_err(|e| ("fd", e))?.try_clone();
            fd = Some(cloned.map_err(|e| ("fd", ProgramError::IOError(e)))?);
            Ok(())
        })?;
        Ok(fd.expect("set by setup"))
    }

    /// The `handover_probe` self-test, loaded for test runs, and the array
    /// in which it says when it picked a flow map (0 until it has).
    pub fn handover_program(&mut self) -> Result<(ProgramFd, Array<MapData, u64>), ProbeError> {
        let program = self.test_program("handover_probe")?;
        Ok((program, take(&mut self.ebpf, "HANDOVER_PICKED")?))
    }

    /// The `symbol_name` program, loaded for test runs, and the array it
    /// writes to: the kernel names drop locations.
    pub fn symbol_program(&mut self) -> Result<SymbolProgram, ProbeError> {
        let program = self.test_program("symbol_name")?;
        Ok(SymbolProgram::new(
            program,
            take(&mut self.ebpf, "SYMBOL_NAME")?,
        ))
    }

    /// The kernel maps this process holds (the probes' and the drain's
    /// own), with their memory.
    pub fn map_footprints(&self) -> Vec<super::map_memory::MapFootprint> {
        super::map_memory::of_own_fds()
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
                    missed_runs: missed_runs(&info).unwrap_or(0),
                })
            })
            .collect()
    }
}

/// `recursion_misses` of the program's fdinfo: runs the kernel skipped
/// because another tracing program was running on the CPU (kernel ≥ 5.12;
/// aya 0.14 does not read `bpf_prog_info.recursion_misses`).
fn missed_runs(info: &aya::programs::ProgramInfo) -> Option<u64> {
    use std::os::fd::{AsFd, AsRawFd};
    let fd = info.fd().ok()?;
    let fdinfo =
        std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd())).ok()?;
    fdinfo_field(&fdinfo, "recursion_misses")
}

/// The number after `key:` in a bpf fd's fdinfo.
fn fdinfo_field(fdinfo: &str, key: &str) -> Option<u64> {
    fdinfo
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().parse().ok())
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
    use super::fdinfo_field;

    #[test]
    fn reads_a_field_of_a_programs_fdinfo() {
        // A program fd's fdinfo as kernel 6.18 writes it.
        let fdinfo = "pos:\t0\nflags:\t02000002\nprog_type:\t17\nprog_id:\t10423\n\
                      run_time_ns:\t0\nrun_cnt:\t0\nrecursion_misses:\t3\nverified_insns:\t21\n";
        assert_eq!(fdinfo_field(fdinfo, "recursion_misses"), Some(3));
        assert_eq!(fdinfo_field(fdinfo, "run_cnt"), Some(0));
        assert_eq!(fdinfo_field(fdinfo, "recursion"), None);
    }
}
