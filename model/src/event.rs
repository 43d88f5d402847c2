//! The wire type of resource events: what `/api/v1/events` and
//! `osprey-agent events` carry.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventKind {
    /// The kernel's OOM killer chose a victim (`oom:mark_victim`).
    OomKill,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ResourceEvent {
    /// RFC 3339, UTC.
    pub time: String,
    pub kind: EventKind,
    /// The cgroup (path, the `id` label of the container_* metrics).
    pub cgroup: String,
    pub pid: u32,
    /// The victim's command.
    pub command: String,
    pub uid: u32,
    pub total_vm_bytes: u64,
    pub anon_rss_bytes: u64,
    /// Pod identity, once the Kubernetes mapping knows it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub pod: Option<String>,
}

impl ResourceEvent {
    /// One line, like `hubble observe`'s compact output.
    pub fn compact(&self) -> String {
        let anon_mib = self.anon_rss_bytes as f64 / (1u64 << 20) as f64;
        format!(
            "{} OOM_KILL {} pid={} command={} anon-rss={anon_mib:.1}MiB uid={}",
            self.time, self.cgroup, self.pid, self.command, self.uid
        )
    }
}
