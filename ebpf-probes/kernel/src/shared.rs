//! Maps shared by every program: which of the double-buffered maps is being
//! written, and the loss counters.

use aya_ebpf::{
    macros::map,
    maps::{Array, PerCpuArray},
};
use osprey_abi::{FlowLoss, ResourceLoss};

/// Index 0: which of the `*_0` / `*_1` maps the programs write into.
#[map]
pub static ACTIVE_FLOW_MAP: Array<u32> = Array::with_max_entries(1, 0);

#[map]
pub static FLOW_LOSS: PerCpuArray<FlowLoss> = PerCpuArray::with_max_entries(1, 0);

/// What the resource probes (scheduler, block, OOM) could not account.
#[map]
pub static RESOURCE_LOSS: PerCpuArray<ResourceLoss> = PerCpuArray::with_max_entries(1, 0);

/// Whether the programs should write into the `*_0` maps.
#[inline(always)]
pub fn first_map_active() -> bool {
    ACTIVE_FLOW_MAP.get(0).copied().unwrap_or(0) == 0
}

/// Adds to this CPU's loss counters.
#[inline(always)]
pub fn count_loss(f: impl FnOnce(&mut FlowLoss)) {
    if let Some(loss) = FLOW_LOSS.get_ptr_mut(0) {
        // SAFETY: per-CPU value of an array map: valid, and only this CPU writes it.
        f(unsafe { &mut *loss });
    }
}

/// Adds to this CPU's resource loss counters.
#[inline(always)]
pub fn count_resource_loss(f: impl FnOnce(&mut ResourceLoss)) {
    if let Some(loss) = RESOURCE_LOSS.get_ptr_mut(0) {
        // SAFETY: per-CPU value of an array map: valid, and only this CPU writes it.
        f(unsafe { &mut *loss });
    }
}

/// Adds `n` to `map[key]`, inserting it if new; counts a full map with `full`.
/// The map is shared by every CPU (one value per key, not one per CPU: its
/// memory does not grow with the CPU count), so the add is atomic; these
/// are rare events (drops, retransmits, connection outcomes), so CPUs
/// seldom meet on one key.
#[inline(always)]
pub fn add_count<K>(
    map: &aya_ebpf::maps::HashMap<K, u64>,
    key: &K,
    n: u64,
    full: impl FnOnce(&mut FlowLoss),
) {
    if let Some(v) = map.get_ptr_mut(key) {
        // SAFETY: a map value, valid while the program runs; every writer
        // adds atomically.
        unsafe { atomic_add(v, n) };
        return;
    }
    match map.insert(key, &n, aya_ebpf::bindings::BPF_NOEXIST as u64) {
        Ok(()) => {}
        Err(e) if e == -17 => {
            if let Some(v) = map.get_ptr_mut(key) {
                // SAFETY: as above.
                unsafe { atomic_add(v, n) };
            }
        }
        Err(_) => count_loss(full),
    }
}

/// `*v += n` as one BPF atomic add (`lock xadd`): `core`'s atomics have no
/// read-modify-write on this target, the intrinsic does.
#[inline(always)]
pub unsafe fn atomic_add(v: *mut u64, n: u64) {
    // SAFETY: the caller's pointer to a live map value.
    unsafe {
        core::intrinsics::atomic_xadd::<u64, u64, { core::intrinsics::AtomicOrdering::Relaxed }>(
            v, n,
        )
    };
}

/// `*v += n` on a 32-bit counter, as one BPF atomic add.
#[cfg_attr(feature = "percpu-flows", allow(dead_code))]
#[inline(always)]
pub unsafe fn atomic_add32(v: *mut u32, n: u32) {
    // SAFETY: the caller's pointer to a live map value.
    unsafe {
        core::intrinsics::atomic_xadd::<u32, u32, { core::intrinsics::AtomicOrdering::Relaxed }>(
            v, n,
        )
    };
}
