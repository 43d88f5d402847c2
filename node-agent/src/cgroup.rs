//! Finding the cgroup hierarchies: the v2 one at `/sys/fs/cgroup` on pure v2
//! nodes or `/sys/fs/cgroup/unified` on hybrid ones, and the v1 controllers'
//! own, wherever mountinfo says they are.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use procfs::{FromRead, process::MountInfos};

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

/// The cgroup filesystems of a mount table.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Mounts {
    /// Every cgroup2 mount point, in mount-table order.
    pub v2: Vec<PathBuf>,
    /// The v1 hierarchy of each controller (the last mount naming it).
    pub v1: BTreeMap<String, PathBuf>,
}

impl Mounts {
    /// Reads this process's mount table, /proc/self/mountinfo.
    pub fn read() -> Result<Self, CgroupError> {
        let path = Path::new("/proc/self/mountinfo");
        let failed = |source| CgroupError::Read {
            path: path.to_owned(),
            source,
        };
        let file = std::fs::File::open(path).map_err(failed)?;
        let infos = MountInfos::from_read(file).map_err(|e| failed(std::io::Error::other(e)))?;
        Ok(Self::from_mountinfo(&infos))
    }

    /// The cgroup mounts of a parsed mountinfo (proc(5)): the filesystem
    /// type names cgroup2 or cgroup; a v1 mount's superblock options name
    /// its controllers.
    pub fn from_mountinfo(infos: &MountInfos) -> Self {
        let mut mounts = Self::default();
        for m in infos {
            match m.fs_type.as_str() {
                "cgroup2" => mounts.v2.push(m.mount_point.clone()),
                "cgroup" => {
                    for controller in m.super_options.keys() {
                        mounts.v1.insert(controller.clone(), m.mount_point.clone());
                    }
                }
                _ => {}
            }
        }
        mounts
    }

    #[cfg(test)]
    pub fn parse(text: &str) -> Self {
        Self::from_mountinfo(&MountInfos::from_read(text.as_bytes()).expect("mountinfo"))
    }
}

/// The mount point of the cgroup v2 hierarchy (the first, if several).
pub fn v2_root() -> Result<PathBuf, CgroupError> {
    Mounts::read()?
        .v2
        .into_iter()
        .next()
        .ok_or(CgroupError::NoCgroup2)
}

/// Walks the cgroup tree below `root` depth first, the root first and
/// children in name order, handing `visit` each directory and its path
/// relative to `root` ("/" for the root) for at most `limit` cgroups;
/// `visit` says whether to go into the directory.
pub fn walk(root: &Path, limit: usize, mut visit: impl FnMut(&Path, String) -> bool) {
    fn go(
        root: &Path,
        dir: &Path,
        left: &mut usize,
        buf: &mut Vec<u8>,
        visit: &mut dyn FnMut(&Path, String) -> bool,
    ) {
        if *left == 0 {
            return;
        }
        *left -= 1;
        let rel = dir.strip_prefix(root).unwrap_or(Path::new(""));
        if !visit(dir, format!("/{}", rel.display())) {
            return;
        }
        let mut dirs = subdirs(dir, buf);
        dirs.sort();
        for d in dirs {
            go(root, &d, left, buf, visit);
        }
    }
    let mut left = limit;
    let mut buf = Vec::with_capacity(32 * 1024);
    go(root, root, &mut left, &mut buf, &mut visit);
}

/// The directories in `dir`, read with `getdents64` into `buf`: a cgroup
/// directory holds a few dozen files for each child cgroup, and std's
/// `read_dir` allocates a name for each of them (most of a scrape's
/// allocations were those names).
fn subdirs(dir: &Path, buf: &mut Vec<u8>) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStrExt;

    use rustix::fs::{FileType, Mode, OFlags, RawDir};
    let mut out = Vec::new();
    let Ok(fd) = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return out;
    };
    let mut entries = RawDir::new(&fd, buf.spare_capacity_mut());
    while let Some(Ok(entry)) = entries.next() {
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        let path = || dir.join(std::ffi::OsStr::from_bytes(name));
        match entry.file_type() {
            FileType::Directory => out.push(path()),
            // A filesystem that does not say: ask it.
            FileType::Unknown if path().is_dir() => out.push(path()),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_hybrid_and_pure_v2_mounts() {
        let hybrid = "35 25 0:30 / /sys/fs/cgroup/unified rw,nosuid - cgroup2 cgroup2 rw\n\
                      36 25 0:31 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n";
        let m = Mounts::parse(hybrid);
        assert_eq!(m.v2, vec![PathBuf::from("/sys/fs/cgroup/unified")]);
        assert_eq!(m.v1.get("cpu"), Some(&PathBuf::from("/sys/fs/cgroup/cpu")));
        let pure =
            "30 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            Mounts::parse(pure).v2,
            vec![PathBuf::from("/sys/fs/cgroup")]
        );
        assert_eq!(
            Mounts::parse("1 0 0:1 / / rw - ext4 /dev/vda rw\n"),
            Mounts::default()
        );
    }

    /// The walk finds every directory, in name order, depth first, through
    /// directories whose entries take several `getdents64` calls, and no
    /// file, symlink or anything past the limit.
    #[test]
    fn walks_directories_in_name_order_past_many_files() {
        let root = std::env::temp_dir().join(format!("osprey-walk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for d in ["b/x", "a", "c/y/z"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
        }
        // ~90 KiB of entries in `a`: more than the walk's 32 KiB buffer.
        for i in 0..2000 {
            std::fs::write(root.join(format!("a/file-with-a-long-name-{i:05}")), "").unwrap();
        }
        std::os::unix::fs::symlink(root.join("b"), root.join("d")).unwrap();
        let mut seen = Vec::new();
        walk(&root, usize::MAX, |_, rel| {
            seen.push(rel);
            true
        });
        assert_eq!(seen, ["/", "/a", "/b", "/b/x", "/c", "/c/y", "/c/y/z"]);
        let mut first = Vec::new();
        walk(&root, 3, |_, rel| {
            let go_in = rel != "/b";
            first.push(rel);
            go_in
        });
        assert_eq!(first, ["/", "/a", "/b"]);
        let _ = std::fs::remove_dir_all(&root);
    }
}
