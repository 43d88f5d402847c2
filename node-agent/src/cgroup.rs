//! Finding the cgroup v2 hierarchy: `/sys/fs/cgroup` on pure v2 nodes,
//! `/sys/fs/cgroup/unified` on hybrid ones, wherever mountinfo says it is.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "no cgroup2 filesystem is mounted (see /proc/self/mountinfo); mount one with `mount -t cgroup2 none /sys/fs/cgroup/unified`"
    )]
    NoCgroup2,
}

/// The mount point of the cgroup v2 hierarchy.
pub fn v2_root() -> Result<PathBuf, CgroupError> {
    let path = Path::new("/proc/self/mountinfo");
    let text = std::fs::read_to_string(path).map_err(|source| CgroupError::Read {
        path: path.to_owned(),
        source,
    })?;
    v2_root_from_mountinfo(&text).ok_or(CgroupError::NoCgroup2)
}

/// Parses mountinfo (proc(5)): the mount point is field 5; the filesystem type
/// is the first field after the ` - ` separator.
fn v2_root_from_mountinfo(text: &str) -> Option<PathBuf> {
    text.lines().find_map(|line| {
        let (pre, post) = line.split_once(" - ")?;
        let fstype = post.split_whitespace().next()?;
        let mount_point = pre.split_whitespace().nth(4)?;
        (fstype == "cgroup2").then(|| PathBuf::from(mount_point))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_hybrid_and_pure_v2_mounts() {
        let hybrid = "35 25 0:30 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n\
                      36 25 0:31 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        assert_eq!(
            v2_root_from_mountinfo(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let pure =
            "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            v2_root_from_mountinfo(pure),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        assert_eq!(
            v2_root_from_mountinfo("1 0 0:1 / / rw - ext4 /dev/vda rw\n"),
            None
        );
    }
}
