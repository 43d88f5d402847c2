//! `BPF_MAP_LOOKUP_AND_DELETE_BATCH` on per-CPU hash maps: every entry read
//! and deleted in a few system calls, where a key-by-key drain costs three
//! per entry (next key, lookup, delete). aya 0.14 has no batch operations,
//! so this module issues the command itself (kernel ≥ 5.6), through
//! `kernel::test_run::sys_bpf`.

use std::{
    mem::{MaybeUninit, size_of},
    os::fd::{AsRawFd, BorrowedFd},
};

use aya_obj::generated::bpf_cmd;

use crate::kernel::test_run::{sys_bpf, zeroed_attr};

/// Entries asked for per call. A hash map returns whole buckets, and no
/// bucket of ours holds anywhere near this many.
const CHUNK: usize = 1024;

/// What a batch drain read out of the map (and deleted from it).
#[derive(Debug)]
pub struct Drained<K, V> {
    pub entries: Vec<(K, V)>,
    /// Why a call after the first failed: `entries` holds everything read
    /// before it, and the rest of the map is left for the next drain.
    pub error: Option<std::io::Error>,
}

/// Reads and deletes every entry of the per-CPU hash map behind `fd`, whose
/// keys are `K` and per-CPU values `V`, over `cpus` possible CPUs; each
/// entry's values are folded with `fold`. An error of the first call that
/// read nothing (a kernel without batch operations) is returned, nothing
/// deleted; any later error comes with every entry read before it. The
/// entries are appended to `into` (emptied first): a buffer kept from the
/// last drain needs no new memory.
pub fn drain_per_cpu_hash<K: Copy, V: Copy>(
    fd: BorrowedFd<'_>,
    cpus: usize,
    fold: impl Fn(&[V]) -> V,
    mut into: Vec<(K, V)>,
) -> std::io::Result<Drained<K, V>> {
    // Each CPU's value is 8-byte aligned in the value buffer.
    let stride = size_of::<V>().next_multiple_of(8);
    let entry = stride * cpus;
    let mut keys: Vec<MaybeUninit<K>> = vec![MaybeUninit::uninit(); CHUNK];
    let mut values: Vec<u64> = vec![0; CHUNK * entry / 8];
    into.clear();
    let mut out = into;
    let (mut token, mut next) = (0u32, 0u32);
    let mut first = true;
    loop {
        let mut attr = zeroed_attr();
        attr.batch.in_batch = if first {
            0
        } else {
            &token as *const u32 as u64
        };
        attr.batch.out_batch = &mut next as *mut u32 as u64;
        attr.batch.keys = keys.as_mut_ptr() as u64;
        attr.batch.values = values.as_mut_ptr() as u64;
        attr.batch.count = CHUNK as u32;
        attr.batch.map_fd = fd.as_raw_fd() as u32;
        // The kernel writes at most `count` keys and values into buffers
        // sized for `CHUNK` entries, and one batch token into `next`.
        let err = sys_bpf(bpf_cmd::BPF_MAP_LOOKUP_AND_DELETE_BATCH, &mut attr).err();
        // SAFETY: the `batch` member, filled above; the kernel may write `count`.
        let n = entries_returned(err.as_ref(), unsafe { attr.batch.count });
        // SAFETY: the kernel wrote the first n keys, and their values
        // laid out as `unpack` reads them.
        unsafe { unpack(&keys, &values, n, cpus, &fold, &mut out) };
        match err {
            None => {}
            // The end of the map, this call's entries included above.
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                return Ok(Drained {
                    entries: out,
                    error: None,
                });
            }
            Some(e) if first && out.is_empty() => return Err(e),
            Some(e) => {
                return Ok(Drained {
                    entries: out,
                    error: Some(e),
                });
            }
        }
        token = next;
        first = false;
    }
}

/// How many entries a call returned. The kernel writes `count` with a
/// result (success, or ENOENT at the end of the map), and otherwise leaves
/// the `CHUNK` asked for: entries only it reported are read.
fn entries_returned(err: Option<&std::io::Error>, count: u32) -> usize {
    let written = match err {
        None => true,
        Some(e) if e.raw_os_error() == Some(libc::ENOENT) => true,
        Some(_) => count != CHUNK as u32,
    };
    if written {
        (count as usize).min(CHUNK)
    } else {
        0
    }
}

/// Appends the first `n` entries of a call's buffers to `out`, each
/// entry's per-CPU values (one per CPU, 8-byte aligned) folded.
///
/// # Safety
/// The first `n` (≤ `CHUNK`) keys are initialised and `values` holds `n`
/// entries of `cpus` values of `V`.
unsafe fn unpack<K: Copy, V: Copy>(
    keys: &[MaybeUninit<K>],
    values: &[u64],
    n: usize,
    cpus: usize,
    fold: impl Fn(&[V]) -> V,
    out: &mut Vec<(K, V)>,
) {
    let stride = size_of::<V>().next_multiple_of(8);
    let entry = stride * cpus;
    let bytes = values.as_ptr().cast::<u8>();
    let mut per_cpu: Vec<V> = Vec::with_capacity(cpus);
    for (i, key) in keys.iter().take(n).enumerate() {
        per_cpu.clear();
        for cpu in 0..cpus {
            // SAFETY: inside the value buffer (i < n, cpu < cpus), which
            // holds n entries; V is plain data (a map value type).
            per_cpu.push(unsafe {
                bytes
                    .add(i * entry + cpu * stride)
                    .cast::<V>()
                    .read_unaligned()
            });
        }
        // SAFETY: the first n keys are initialised.
        out.push((unsafe { key.assume_init() }, fold(&per_cpu)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_counts_the_kernel_wrote_are_read() {
        let enoent = std::io::Error::from_raw_os_error(libc::ENOENT);
        let efault = std::io::Error::from_raw_os_error(libc::EFAULT);
        let enospc = std::io::Error::from_raw_os_error(libc::ENOSPC);
        assert_eq!(entries_returned(None, 17), 17);
        assert_eq!(entries_returned(Some(&enoent), 3), 3);
        assert_eq!(entries_returned(Some(&enoent), 0), 0);
        // An error that leaves `count` as asked: nothing was reported.
        assert_eq!(entries_returned(Some(&efault), CHUNK as u32), 0);
        // One that writes it (ENOSPC: a bucket larger than the chunk) is believed.
        assert_eq!(entries_returned(Some(&enospc), 0), 0);
        assert_eq!(entries_returned(None, u32::MAX), CHUNK);
    }

    #[test]
    fn unpacks_per_cpu_values_at_an_8_byte_stride() {
        // Two entries over three CPUs of a 4-byte value: each value in its own
        // 8-byte cell.
        let keys = [MaybeUninit::new(7u16), MaybeUninit::new(9u16)];
        let values: Vec<u64> = vec![1, 2, 3, 10, 20, 30];
        let mut out = Vec::new();
        // SAFETY: two keys set; two entries of three values.
        unsafe {
            unpack(&keys, &values, 2, 3, |v: &[u32]| v.iter().sum(), &mut out);
        }
        assert_eq!(out, vec![(7, 6), (9, 60)]);
    }
}
