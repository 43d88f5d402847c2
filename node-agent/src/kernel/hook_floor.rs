//! The bench's floors: empty programs on the flow programs' hooks
//! (`osprey-agent hook-floor`), and every loaded program's run statistics
//! (`osprey-agent prog-stats`). Nothing here runs in the agent.

use std::{fs::File, os::fd::OwnedFd, path::PathBuf};

use aya::{
    Ebpf, EbpfLoader,
    programs::{
        CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, LinkOrder, SchedClassifier, TcAttachType,
        tc::TcAttachOptions,
    },
};

use super::probes::{ProbeError, setup};

/// Empty cgroup_skb programs (the bench's measure of the hook's own cost).
const EMPTY_HOOKS: [(&str, CgroupSkbAttachType); 2] = [
    ("noop_ingress", CgroupSkbAttachType::Ingress),
    ("noop_egress", CgroupSkbAttachType::Egress),
];

/// Where `osprey-agent hook-floor` attaches its empty programs.
pub enum HookFloor {
    /// The empty cgroup_skb pair (ingress and egress) on this cgroup v2.
    Cgroup(PathBuf),
    /// The empty classifier on this device of the current network namespace,
    /// through a tcx link: the TC hook a device-based design such as
    /// Cilium's uses on kernels since 6.6.
    Tcx { device: String, ingress: bool },
}

/// Empty programs, attached while this lives (and the kernel's run-time
/// statistics on, if asked for).
pub struct EmptyHooks {
    _ebpf: Ebpf,
    _stats: Option<OwnedFd>,
}

/// Loads the object at `path` and attaches only its empty programs where
/// `floor` says; they stay attached until the returned value is dropped.
/// With `bpf_stats`, the kernel times every program run meanwhile, so the
/// bench reads what an empty run costs under the same statistics.
pub fn attach_empty_hooks(
    path: PathBuf,
    floor: HookFloor,
    bpf_stats: bool,
) -> Result<EmptyHooks, ProbeError> {
    let stats = bpf_stats
        .then(|| aya::sys::enable_stats(aya::sys::Stats::RunTime))
        .transpose()
        .map_err(ProbeError::Stats)?;
    let mut ebpf = EbpfLoader::new()
        .load_file(&path)
        .map_err(|source| ProbeError::Load {
            path,
            source: Box::new(source),
        })?;
    match floor {
        HookFloor::Cgroup(cgroup) => {
            let cgroup_dir = File::open(&cgroup).map_err(|source| ProbeError::Cgroup {
                path: cgroup.clone(),
                source,
            })?;
            for (name, attach_type) in EMPTY_HOOKS {
                setup::<CgroupSkb>(&mut ebpf, name, |p| {
                    p.load().map_err(|e| ("load (verifier)", e))?;
                    p.attach(&cgroup_dir, attach_type, CgroupAttachMode::Single)
                        .map(drop)
                        .map_err(|e| ("attach", e))
                })?;
            }
        }
        HookFloor::Tcx { device, ingress } => {
            let attach_type = if ingress {
                TcAttachType::Ingress
            } else {
                TcAttachType::Egress
            };
            setup::<SchedClassifier>(&mut ebpf, "noop_tc", |p| {
                p.load().map_err(|e| ("load (verifier)", e))?;
                p.attach_with_options(
                    &device,
                    attach_type,
                    TcAttachOptions::TcxOrder(LinkOrder::default()),
                )
                .map(drop)
                .map_err(|e| ("attach (tcx)", e))
            })?;
        }
    }
    Ok(EmptyHooks {
        _ebpf: ebpf,
        _stats: stats,
    })
}

/// Run count and run time (ns) of every eBPF program loaded on the host,
/// by name: `osprey-agent prog-stats`, which the bench reads before and
/// after a stream. Both stay 0 while no one has the statistics on.
pub fn loaded_program_stats() -> Result<Vec<(String, u64, u64)>, ProbeError> {
    aya::programs::loaded_programs()
        .map(|info| {
            let info = info.map_err(|e| ProbeError::Listing(Box::new(e)))?;
            Ok((
                info.name_as_str().unwrap_or("").to_owned(),
                info.run_count(),
                info.run_time().as_nanos() as u64,
            ))
        })
        .collect()
}
