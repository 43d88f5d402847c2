//! Cgroup directories opened once, and their files kept open between
//! scrapes within a budget shared by every cgroup.

use std::{
    fs::File,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
};

/// How many cgroup files may stay open between scrapes, shared by every
/// cgroup. A kept file costs the kernel about 5 KiB (its seq_file buffer
/// and open-file state, charged to the agent's memory cgroup) and saves an
/// open and a close per scrape.
#[derive(Debug)]
pub struct FileBudget {
    limit: usize,
    used: AtomicUsize,
}

impl FileBudget {
    pub fn new(limit: usize) -> Arc<Self> {
        Arc::new(Self {
            limit,
            used: AtomicUsize::new(0),
        })
    }

    /// Files kept open now.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    fn take(&self) -> bool {
        self.used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_ok()
    }

    fn give_back(&self, n: usize) {
        self.used.fetch_sub(n, Ordering::Relaxed);
    }
}

/// A cgroup directory opened once; its files are opened relative to it (the
/// kernel does not walk the whole path again) and, within the budget, kept
/// open and re-read from offset 0 (a seq_file regenerates its text then).
pub struct Dir {
    dir: Option<File>,
    kept: Mutex<Vec<(&'static str, File)>>,
    /// A kept file failed to read: the directory was removed (and maybe
    /// created again under the same path), so it must be opened anew.
    stale: AtomicBool,
    budget: Arc<FileBudget>,
}

impl Drop for Dir {
    fn drop(&mut self) {
        let kept = self.kept.get_mut().unwrap_or_else(|e| e.into_inner());
        self.budget.give_back(kept.len());
    }
}

impl Dir {
    pub(super) fn open(path: &Path, budget: &Arc<FileBudget>) -> Self {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY)
            .open(path)
            .ok();
        Self {
            dir,
            kept: Mutex::new(Vec::new()),
            stale: AtomicBool::new(false),
            budget: budget.clone(),
        }
    }

    /// The directory's inode number: for a cgroup v2 directory, the cgroup
    /// id the eBPF probes see.
    pub(super) fn ino(&self) -> Option<u64> {
        use std::os::unix::fs::MetadataExt;
        Some(self.dir.as_ref()?.metadata().ok()?.ino())
    }

    pub(super) fn is_stale(&self) -> bool {
        self.stale.load(Ordering::Relaxed)
    }

    /// Reads file `name` and hands its text to `parse` (the text lives in a
    /// per-thread buffer, reused by every read).
    pub(super) fn with<T>(&self, name: &'static str, parse: impl FnOnce(&str) -> T) -> Option<T> {
        thread_local! {
            static BUF: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 8192]);
        }
        BUF.with_borrow_mut(|buf| {
            let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
            let len = match kept.iter().find(|(n, _)| *n == name) {
                Some((_, file)) => {
                    let len = pread_all(file, buf, one_record(name));
                    if len.is_none() {
                        self.stale.store(true, Ordering::Relaxed);
                    }
                    len?
                }
                None => {
                    let file = self.openat(name)?;
                    let len = pread_all(&file, buf, one_record(name))?;
                    if self.budget.take() {
                        kept.push((name, file));
                    }
                    len
                }
            };
            drop(kept);
            Some(parse(std::str::from_utf8(&buf[..len]).ok()?))
        })
    }

    fn openat(&self, name: &str) -> Option<File> {
        use std::os::fd::{AsRawFd, FromRawFd};
        let dir = self.dir.as_ref()?;
        let name = std::ffi::CString::new(name).ok()?;
        // SAFETY: a valid directory fd and C string; the returned fd is owned here.
        let fd = unsafe {
            libc::openat(
                dir.as_raw_fd(),
                name.as_ptr(),
                libc::O_RDONLY | libc::O_CLOEXEC,
            )
        };
        // SAFETY: a fresh fd nobody else owns.
        (fd >= 0).then(|| unsafe { File::from_raw_fd(fd) })
    }
}

/// Whether the kernel renders cgroup file `name` as one seq_file record:
/// the whole text at once, its buffer grown until the text fits, so a read
/// shorter than asked for is the end. Every cgroup file the agent reads is
/// one record but the pid lists, a record per pid, whose reads can end
/// short at a page while pids remain.
fn one_record(name: &str) -> bool {
    !matches!(name, "cgroup.procs" | "cgroup.threads" | "tasks")
}

/// Reads a file whole into `buf` with `pread` from offset 0 (at most
/// 1 MiB), growing `buf` as needed; returns the length. Reads until EOF, or
/// (`one_record`) until a read shorter than asked for: that saves the read
/// that would only find the end (1,324 reads per scrape of 100 cgroups
/// instead of 2,242).
fn pread_all(file: &File, buf: &mut Vec<u8>, one_record: bool) -> Option<usize> {
    use std::os::unix::fs::FileExt;
    let mut len = 0;
    loop {
        if len == buf.len() {
            if len >= 1 << 20 {
                break;
            }
            buf.resize(len * 2, 0);
        }
        let asked = buf.len() - len;
        match file.read_at(&mut buf[len..], len as u64) {
            Ok(0) => break,
            Ok(n) => {
                len += n;
                if one_record && n < asked {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return None,
        }
    }
    Some(len)
}

/// A fresh, empty scratch directory for a test.
#[cfg(test)]
pub(super) fn scratch_dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("osprey-cg-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}
