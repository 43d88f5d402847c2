//! Block IO per cgroup from `block:block_bio_queue`, which runs in the task
//! that submits the bio: direct IO, reads that miss the page cache and
//! `fsync`-driven writeback are charged to the task's cgroup; background
//! writeback by kernel flusher threads is charged to theirs (the root).

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::bpf_get_current_cgroup_id,
    macros::{map, tracepoint},
    maps::PerCpuHashMap,
    programs::TracePointContext,
};
use osprey_abi::{BLOCK_READ, BLOCK_WRITE, BlockKey, BlockStats, DEFAULT_CGROUP_MAP_ENTRIES};

use crate::{
    offsets::{self, BIO_DEV, BIO_NR_SECTOR, BIO_RWBS},
    shared::count_resource_loss,
};

#[map]
static BLOCK_IO: PerCpuHashMap<BlockKey, BlockStats> =
    PerCpuHashMap::with_max_entries(DEFAULT_CGROUP_MAP_ENTRIES, 0);

#[tracepoint]
pub fn block_io(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets from this kernel's tracepoint format.
    let fields = unsafe {
        (
            ctx.read_at::<u32>(offsets::get(&BIO_DEV)),
            ctx.read_at::<u32>(offsets::get(&BIO_NR_SECTOR)),
            ctx.read_at::<[u8; 2]>(offsets::get(&BIO_RWBS)),
        )
    };
    let (Ok(dev), Ok(sectors), Ok(rwbs)) = fields else {
        return 0;
    };
    // rwbs: an optional F (preflush) then R, W, D (discard), E (erase) or N.
    let op = if rwbs[0] == b'F' { rwbs[1] } else { rwbs[0] };
    let op = match op {
        b'R' => BLOCK_READ,
        b'W' => BLOCK_WRITE,
        _ => return 0,
    };
    if sectors == 0 {
        return 0;
    }
    let key = BlockKey {
        cgroup_id: unsafe { bpf_get_current_cgroup_id() },
        dev,
        op,
    };
    let bytes = (sectors as u64) << 9;
    if let Some(s) = BLOCK_IO.get_ptr_mut(&key) {
        // SAFETY: per-CPU value; only this CPU writes it.
        unsafe {
            (*s).bytes += bytes;
            (*s).ios += 1;
        }
        return 0;
    }
    let fresh = BlockStats { bytes, ios: 1 };
    if BLOCK_IO.insert(&key, &fresh, BPF_NOEXIST as u64).is_err() {
        match BLOCK_IO.get_ptr_mut(&key) {
            // SAFETY: as above.
            Some(s) => unsafe {
                (*s).bytes += bytes;
                (*s).ios += 1;
            },
            None => count_resource_loss(|loss| loss.block_map_full += 1),
        }
    }
    0
}
