//! node-exporter's `filesystem` and `diskstats` families: same names, labels,
//! units and default exclusions (pseudo filesystems and partitions).

use std::{ffi::CString, path::Path};

use osprey_model::{
    catalogue::*,
    labels::{DeviceLabels, FilesystemLabels},
};
use prometheus_client::{
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::MetricType,
};

/// node-exporter's default `--collector.filesystem.mount-points-exclude` as
/// Debian packages it (upstream's, plus /run, /mnt and /media):
/// `^/(dev|proc|run|sys|mnt|media|var/lib/docker/.+|var/lib/containers/storage/.+)($|/)`.
fn mount_point_excluded(mount_point: &str) -> bool {
    ["/dev", "/proc", "/run", "/sys", "/mnt", "/media"]
        .iter()
        .any(|p| mount_point == *p || mount_point.starts_with(&format!("{p}/")))
        || ["/var/lib/docker/", "/var/lib/containers/storage/"]
            .iter()
            .any(|p| mount_point.starts_with(p))
}

/// node-exporter's default `--collector.filesystem.fs-types-exclude`.
const EXCLUDED_FS_TYPES: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tracefs",
];

/// node-exporter's default `--collector.diskstats.device-exclude`:
/// `^(ram|loop|fd|(h|s|v|xv)d[a-z]|nvme\d+n\d+p)\d+$`.
fn disk_excluded(name: &str) -> bool {
    let digits_tail = |rest: &str| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit());
    for prefix in ["ram", "loop", "fd"] {
        if name.strip_prefix(prefix).is_some_and(digits_tail) {
            return true;
        }
    }
    for prefix in ["hd", "sd", "vd", "xvd"] {
        if let Some(rest) = name.strip_prefix(prefix) {
            let mut chars = rest.chars();
            if chars.next().is_some_and(|c| c.is_ascii_lowercase()) && digits_tail(chars.as_str()) {
                return true;
            }
        }
    }
    // nvme\d+n\d+p\d+
    if let Some(rest) = name.strip_prefix("nvme") {
        let parts: Vec<&str> = rest.splitn(2, 'n').collect();
        if parts.len() == 2
            && digits_tail(parts[0])
            && let Some((ns, part)) = parts[1].split_once('p')
        {
            return digits_tail(ns) && digits_tail(part);
        }
    }
    false
}

struct Fs {
    device: String,
    fstype: String,
    mountpoint: String,
    readonly: bool,
    /// size, free, avail (bytes), files, files_free; None if statfs failed.
    stat: Option<[u64; 5]>,
}

fn statfs(path: &str) -> Option<[u64; 5]> {
    let c = CString::new(path).ok()?;
    let mut buf: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a valid C string and a statfs buffer of the right type.
    if unsafe { libc::statfs(c.as_ptr(), &mut buf) } != 0 {
        return None;
    }
    let bsize = buf.f_bsize as u64;
    Some([
        buf.f_blocks as u64 * bsize,
        buf.f_bfree as u64 * bsize,
        buf.f_bavail as u64 * bsize,
        buf.f_files as u64,
        buf.f_ffree as u64,
    ])
}

/// statfs of `path` if the filesystem there is device `majmin` ("8:1", as
/// mountinfo gives it): through a bind mount of the host's root that does
/// not carry a submount, the path would name its parent's filesystem, and
/// report that one's size as this one's.
fn statfs_of(path: &str, majmin: &str) -> Option<[u64; 5]> {
    use std::os::unix::fs::MetadataExt;
    let dev = std::fs::metadata(path).ok()?.dev();
    let here = format!("{}:{}", libc::major(dev), libc::minor(dev));
    if here != majmin {
        return None;
    }
    statfs(path)
}

fn filesystems(host_root: Option<&Path>) -> Vec<Fs> {
    // The host's mounts, as node-exporter reads them: pid 1's (a DaemonSet
    // runs with hostPID), each statted through pid 1's root, so a container
    // sees the host's filesystems and not its own mount namespace; else
    // through `host_root` (node-exporter's --path.rootfs: the chart mounts
    // the host's / there); else the agent's own.
    let own = procfs::process::Process::myself().and_then(|p| p.mountinfo());
    let host = procfs::process::Process::new(1).and_then(|p| p.mountinfo());
    let (mounts, root, same_namespace) = match (host, own) {
        (Ok(host), own) => {
            // Mount ids are system-wide: the same root mount means the same
            // mount namespace, where a path names the same filesystem.
            let root_id = |m: &procfs::process::MountInfos| {
                m.iter()
                    .find(|m| m.mount_point == Path::new("/"))
                    .map(|m| m.mnt_id)
            };
            let same = own
                .as_ref()
                .ok()
                .and_then(root_id)
                .is_some_and(|id| Some(id) == root_id(&host));
            (host, "/proc/1/root", same)
        }
        (Err(_), Ok(own)) => (own, "", true),
        (Err(_), Err(_)) => return Vec::new(),
    };
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::new();
    for m in mounts {
        let mountpoint = m.mount_point.display().to_string();
        if mount_point_excluded(&mountpoint) || EXCLUDED_FS_TYPES.contains(&m.fs_type.as_str()) {
            continue;
        }
        let device = m.mount_source.clone().unwrap_or_else(|| "none".into());
        if !seen.insert((device.clone(), mountpoint.clone())) {
            continue;
        }
        let under = |root: &Path| format!("{}{mountpoint}", root.display());
        out.push(Fs {
            readonly: m.mount_options.contains_key("ro"),
            // Through pid 1's root; where that is refused (a sealed pid 1),
            // through the host's root mounted at `host_root`, the device
            // checked; else the path itself, only in pid 1's own mount
            // namespace: in a container it would name another filesystem
            // (device_error).
            stat: statfs(&format!("{root}{mountpoint}"))
                .or_else(|| host_root.and_then(|r| statfs_of(&under(r), &m.majmin)))
                .or_else(|| same_namespace.then(|| statfs(&mountpoint)).flatten()),
            device,
            fstype: m.fs_type,
            mountpoint,
        });
    }
    out
}

pub fn encode_filesystems(
    encoder: &mut DescriptorEncoder,
    host_root: Option<&Path>,
) -> Result<(), std::fmt::Error> {
    let fss = filesystems(host_root);
    type Get = fn(&Fs) -> Option<f64>;
    let families: [(&MetricDesc, Get); 7] = [
        (&NODE_FILESYSTEM_SIZE_BYTES, |f| f.stat.map(|s| s[0] as f64)),
        (&NODE_FILESYSTEM_FREE_BYTES, |f| f.stat.map(|s| s[1] as f64)),
        (&NODE_FILESYSTEM_AVAIL_BYTES, |f| {
            f.stat.map(|s| s[2] as f64)
        }),
        (&NODE_FILESYSTEM_FILES, |f| f.stat.map(|s| s[3] as f64)),
        (&NODE_FILESYSTEM_FILES_FREE, |f| f.stat.map(|s| s[4] as f64)),
        (&NODE_FILESYSTEM_READONLY, |f| {
            Some(if f.readonly { 1.0 } else { 0.0 })
        }),
        (&NODE_FILESYSTEM_DEVICE_ERROR, |f| {
            Some(if f.stat.is_none() { 1.0 } else { 0.0 })
        }),
    ];
    for (desc, get) in families {
        let mut family = desc.encode_descriptor(encoder, MetricType::Gauge)?;
        for f in &fss {
            let Some(v) = get(f) else { continue };
            let labels = FilesystemLabels {
                device: &f.device,
                fstype: &f.fstype,
                mountpoint: &f.mountpoint,
            };
            family.encode_family(&labels)?.encode_gauge(&v)?;
        }
    }
    Ok(())
}

pub fn encode_disks(encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let Ok(disks) = procfs::diskstats() else {
        return Ok(());
    };
    let disks: Vec<_> = disks
        .into_iter()
        .filter(|d| !disk_excluded(&d.name))
        .collect();
    const SECTOR: f64 = 512.0;
    const MS: f64 = 1e-3;
    type Get = fn(&procfs::DiskStat) -> Option<f64>;
    let counters: [(&MetricDesc, Get); 16] = [
        (&NODE_DISK_READS_COMPLETED, |d| Some(d.reads as f64)),
        (&NODE_DISK_READS_MERGED, |d| Some(d.merged as f64)),
        (&NODE_DISK_READ_BYTES, |d| {
            Some(d.sectors_read as f64 * SECTOR)
        }),
        (&NODE_DISK_READ_TIME_SECONDS, |d| {
            Some(d.time_reading as f64 * MS)
        }),
        (&NODE_DISK_WRITES_COMPLETED, |d| Some(d.writes as f64)),
        (&NODE_DISK_WRITES_MERGED, |d| Some(d.writes_merged as f64)),
        (&NODE_DISK_WRITTEN_BYTES, |d| {
            Some(d.sectors_written as f64 * SECTOR)
        }),
        (&NODE_DISK_WRITE_TIME_SECONDS, |d| {
            Some(d.time_writing as f64 * MS)
        }),
        (&NODE_DISK_IO_TIME_SECONDS, |d| {
            Some(d.time_in_progress as f64 * MS)
        }),
        (&NODE_DISK_IO_TIME_WEIGHTED_SECONDS, |d| {
            Some(d.weighted_time_in_progress as f64 * MS)
        }),
        (&NODE_DISK_DISCARDS_COMPLETED, |d| {
            d.discards.map(|v| v as f64)
        }),
        (&NODE_DISK_DISCARDS_MERGED, |d| {
            d.discards_merged.map(|v| v as f64)
        }),
        (&NODE_DISK_DISCARDED_SECTORS, |d| {
            d.sectors_discarded.map(|v| v as f64)
        }),
        (&NODE_DISK_DISCARD_TIME_SECONDS, |d| {
            d.time_discarding.map(|v| v as f64 * MS)
        }),
        (&NODE_DISK_FLUSH_REQUESTS, |d| d.flushes.map(|v| v as f64)),
        (&NODE_DISK_FLUSH_REQUESTS_TIME_SECONDS, |d| {
            d.time_flushing.map(|v| v as f64 * MS)
        }),
    ];
    for (desc, get) in counters {
        let mut family = desc.encode_descriptor(encoder, MetricType::Counter)?;
        for d in &disks {
            let Some(v) = get(d) else { continue };
            family
                .encode_family(&DeviceLabels { device: &d.name })?
                .encode_counter::<NoLabelSet, _, f64>(&v, None)?;
        }
    }
    let mut family = NODE_DISK_IO_NOW.encode_descriptor(encoder, MetricType::Gauge)?;
    for d in &disks {
        family
            .encode_family(&DeviceLabels { device: &d.name })?
            .encode_gauge(&(d.in_progress as f64))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_on_another_device_than_the_mount_is_not_statted() {
        use std::os::unix::fs::MetadataExt;
        let dev = std::fs::metadata("/").unwrap().dev();
        let root = format!("{}:{}", libc::major(dev), libc::minor(dev));
        assert!(statfs_of("/", &root).is_some());
        // What a bind of the host's / without its submounts gives: the
        // parent's filesystem under a submount's path.
        assert_eq!(statfs_of("/", "999:999"), None);
    }

    #[test]
    fn excludes_what_node_exporter_excludes() {
        for name in [
            "loop0",
            "ram1",
            "vda1",
            "sda12",
            "xvdb3",
            "nvme0n1p2",
            "fd0",
        ] {
            assert!(disk_excluded(name), "{name}");
        }
        for name in ["vda", "sda", "nvme0n1", "dm-0", "md0"] {
            assert!(!disk_excluded(name), "{name}");
        }
        assert!(mount_point_excluded("/dev/shm"));
        assert!(mount_point_excluded("/sys"));
        assert!(!mount_point_excluded("/"));
        assert!(!mount_point_excluded("/devices"));
    }
}
