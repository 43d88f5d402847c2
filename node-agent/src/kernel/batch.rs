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

/// Reads and deletes every entry of the per-CPU hash map behind `fd`, whose
/// keys are `K` and per-CPU values `V`, over `cpus` possible CPUs; each
/// entry's values are folded with `fold`. An error of the first call (a
/// kernel without batch operations) is returned before anything is deleted;
/// an error later leaves the rest of the map for the next drain.
pub fn drain_per_cpu_hash<K: Copy, V: Copy>(
    fd: BorrowedFd<'_>,
    cpus: usize,
    fold: impl Fn(&[V]) -> V,
) -> std::io::Result<Vec<(K, V)>> {
    // Each CPU's value is 8-byte aligned in the value buffer.
    let stride = size_of::<V>().next_multiple_of(8);
    let entry = stride * cpus;
    let mut keys: Vec<MaybeUninit<K>> = vec![MaybeUninit::uninit(); CHUNK];
    let mut values: Vec<u64> = vec![0; CHUNK * entry / 8];
    let mut out = Vec::new();
    let mut per_cpu: Vec<V> = Vec::with_capacity(cpus);
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
        // SAFETY: the `batch` member, filled above; the kernel wrote `count`.
        let count = unsafe { attr.batch.count };
        let n = (count as usize).min(CHUNK);
        let bytes = values.as_ptr().cast::<u8>();
        for (i, key) in keys.iter().take(n).enumerate() {
            per_cpu.clear();
            for cpu in 0..cpus {
                // SAFETY: inside the value buffer (i < CHUNK, cpu < cpus),
                // which the kernel filled for the first n entries; V is plain
                // data (a map value type).
                per_cpu.push(unsafe {
                    bytes
                        .add(i * entry + cpu * stride)
                        .cast::<V>()
                        .read_unaligned()
                });
            }
            // SAFETY: the kernel wrote the first n keys.
            out.push((unsafe { key.assume_init() }, fold(&per_cpu)));
        }
        match err {
            None => {}
            // The end of the map, this call's entries included above.
            Some(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            Some(e) if first => return Err(e),
            Some(e) => {
                tracing::warn!(error = %e, "batch drain stopped; the rest waits for the next drain");
                return Ok(out);
            }
        }
        token = next;
        first = false;
    }
}
