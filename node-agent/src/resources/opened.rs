//! One cgroup's directories, opened once and kept across scrapes, and what
//! is read through them: the v1 or v2 figures, and the interfaces of the
//! cgroup's network namespace when it is not the host's.

use std::{path::PathBuf, sync::Mutex};

use procfs::net::InterfaceDeviceStatus;

use super::{files::Dir, stats::CgroupStats, stats::NetDev, stats::pressure};

/// One cgroup's directories, opened once.
pub struct Opened {
    dirs: Dirs,
    v2_id: Option<u64>,
    /// (first process, whether its network namespace is not the host's).
    netns: Mutex<Option<(u32, bool)>>,
}

pub(super) enum Dirs {
    V1 {
        cpuacct: Dir,
        cpu: Dir,
        memory: Dir,
        unified: Option<Dir>,
    },
    V2(Dir),
}

impl Opened {
    pub(super) fn new(dirs: Dirs) -> Self {
        let v2_id = match &dirs {
            Dirs::V1 { unified, .. } => unified.as_ref().and_then(Dir::ino),
            Dirs::V2(dir) => dir.ino(),
        };
        Self {
            dirs,
            v2_id,
            netns: Mutex::new(None),
        }
    }

    /// The cgroup's v2 id (the inode of its v2 directory, what the eBPF
    /// probes see), if it has a v2 directory.
    pub fn v2_id(&self) -> Option<u64> {
        self.v2_id
    }

    fn dirs(&self) -> [Option<&Dir>; 4] {
        match &self.dirs {
            Dirs::V1 {
                cpuacct,
                cpu,
                memory,
                unified,
            } => [Some(cpuacct), Some(cpu), Some(memory), unified.as_ref()],
            Dirs::V2(dir) => [Some(dir), None, None, None],
        }
    }

    /// The cgroup's figures; None once the cgroup is gone (its directory was
    /// removed, perhaps to be created again under the same path).
    /// `oom_kills`: read the kernel's OOM-kill count too (not needed when
    /// the oom tracepoint counts them).
    pub fn stats(&self, oom_kills: bool) -> Option<CgroupStats> {
        let stats = self.read_stats(oom_kills)?;
        let stale = self.dirs().iter().flatten().any(|d| d.is_stale());
        (!stale).then_some(stats)
    }

    fn read_stats(&self, oom_kills: bool) -> Option<CgroupStats> {
        let (mut stats, first) = match &self.dirs {
            Dirs::V1 {
                cpuacct,
                cpu,
                memory,
                unified,
            } => {
                let (mut s, first) = super::v1::stats(cpuacct, cpu, memory, oom_kills)?;
                if let Some(unified) = unified {
                    s.pressure = pressure(unified);
                }
                (s, first)
            }
            Dirs::V2(dir) => super::v2::stats(dir, oom_kills)?,
        };
        if let Some(pid) = first {
            // The namespace check is redone only when the first process changes.
            let mut netns = self.netns.lock().unwrap_or_else(|e| e.into_inner());
            let foreign = match *netns {
                Some((p, foreign)) if p == pid => foreign,
                _ => {
                    let foreign = foreign_netns(pid);
                    *netns = Some((pid, foreign));
                    foreign
                }
            };
            if foreign {
                stats.network = network(pid);
            }
        }
        Some(stats)
    }
}

/// Whether process `pid` lives in a network namespace other than the
/// host's (the agent's).
fn foreign_netns(pid: u32) -> bool {
    static HOST_NETNS: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    let ns = |p: &str| std::fs::read_link(format!("/proc/{p}/ns/net")).ok();
    let host = HOST_NETNS.get_or_init(|| ns("self"));
    matches!((ns(&pid.to_string()), host), (Some(theirs), Some(ours)) if theirs != *ours)
}

/// The interfaces of process `pid`'s network namespace, from
/// /proc/<pid>/net/dev, as cAdvisor reads them.
fn network(pid: u32) -> Vec<NetDev> {
    let Ok(pid) = i32::try_from(pid) else {
        return Vec::new();
    };
    procfs::process::Process::new(pid)
        .and_then(|p| p.dev_status())
        .map(|devs| net_devs(InterfaceDeviceStatus(devs)))
        .unwrap_or_default()
}

/// /proc/net/dev's interfaces but the loopback, in name order.
fn net_devs(devs: InterfaceDeviceStatus) -> Vec<NetDev> {
    let mut out: Vec<NetDev> = devs
        .0
        .into_values()
        .filter(|d| d.name != "lo")
        .map(|d| NetDev {
            interface: d.name,
            rx_bytes: d.recv_bytes,
            rx_packets: d.recv_packets,
            rx_errors: d.recv_errs,
            rx_dropped: d.recv_drop,
            tx_bytes: d.sent_bytes,
            tx_packets: d.sent_packets,
            tx_errors: d.sent_errs,
            tx_dropped: d.sent_drop,
        })
        .collect();
    out.sort_by(|a, b| a.interface.cmp(&b.interface));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use procfs::FromRead;

    #[test]
    fn reads_net_dev() {
        let dev = "Inter-|   Receive                                                |  Transmit\n                    face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed\n                       lo:     100       1    0    0    0     0          0         0      100       1    0    0    0     0       0          0\n                     eth0:    2000      20    1    2    0     0          0         0     3000      30    3    4    0     0       0          0\n";
        let parsed = net_devs(InterfaceDeviceStatus::from_read(dev.as_bytes()).unwrap());
        assert_eq!(parsed.len(), 1, "lo is skipped");
        assert_eq!(
            (
                parsed[0].rx_bytes,
                parsed[0].rx_dropped,
                parsed[0].tx_packets,
                parsed[0].tx_errors
            ),
            (2000, 2, 30, 3)
        );
    }
}
