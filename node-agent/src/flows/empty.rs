//! Reading and emptying the idle kernel maps the drain hands over: per-CPU
//! and shared hash maps, in batch calls where the kernel has them
//! (`kernel::batch`), else key by key; every failure counted, nothing
//! deleted that was not read.

use std::sync::atomic::{AtomicBool, Ordering};

use aya::maps::{MapData, MapError, PerCpuHashMap};
use tracing::warn;

/// Reads and deletes every entry of a per-CPU map, folding each entry's
/// per-CPU values with `fold`. Nothing writes to the idle map, so read and
/// delete lose nothing. In a few batch calls where the kernel has them;
/// else key by key. A failed call or an entry that cannot be read or
/// removed is counted in `errors`; what stays in the map is read next time
/// round.
pub(super) fn drain_map<K: aya::Pod, V: aya::Pod>(
    map: &mut PerCpuHashMap<MapData, K, V>,
    errors: &mut u64,
    fold: impl Fn(&[V]) -> V,
) -> Vec<(K, V)> {
    use aya::maps::IterableMap;
    static NO_BATCH: AtomicBool = AtomicBool::new(false);
    if let Ok(cpus) = aya::util::nr_cpus()
        && let Some(entries) = drain_batch(map.map(), cpus, &fold, &NO_BATCH, errors)
    {
        return entries;
    }
    let keys = list_keys(map.keys(), errors);
    drain_keys(keys, errors, |key| {
        let per_cpu = map.get(key, 0).ok()?;
        map.remove(key).ok()?;
        Some(fold(&per_cpu))
    })
}

/// Reads and deletes every entry of a map shared by the CPUs (one value
/// per key), as `drain_map` does a per-CPU map's.
pub(super) fn drain_shared<K: aya::Pod, V: aya::Pod>(
    map: &mut aya::maps::HashMap<MapData, K, V>,
    errors: &mut u64,
) -> Vec<(K, V)> {
    use aya::maps::IterableMap;
    static NO_BATCH: AtomicBool = AtomicBool::new(false);
    // A shared map's batch layout is a per-CPU map's with one CPU.
    if let Some(entries) = drain_batch(map.map(), 1, &|v: &[V]| v[0], &NO_BATCH, errors) {
        return entries;
    }
    let keys = list_keys(map.keys(), errors);
    drain_keys(keys, errors, |key| {
        let n = map.get(key, 0).ok()?;
        map.remove(key).ok()?;
        Some(n)
    })
}

/// Every entry of `map` in batches (values of `cpus` CPUs folded with
/// `fold`), or None when this kernel has no batch operations (remembered in
/// `no_batch`, so the caller drains key by key from then on).
fn drain_batch<K: Copy, V: Copy>(
    map: &MapData,
    cpus: usize,
    fold: &impl Fn(&[V]) -> V,
    no_batch: &AtomicBool,
    errors: &mut u64,
) -> Option<Vec<(K, V)>> {
    use std::os::fd::AsFd;
    if no_batch.load(Ordering::Relaxed) {
        return None;
    }
    match crate::kernel::batch::drain_per_cpu_hash(map.fd().as_fd(), cpus, fold) {
        Ok(drained) => {
            if let Some(e) = drained.error {
                warn!(error = %e, "batch drain stopped; the rest waits for the next drain");
                *errors += 1;
            }
            Some(drained.entries)
        }
        Err(e) => {
            warn!(error = %e, "no batch map operations in this kernel: draining key by key");
            no_batch.store(true, Ordering::Relaxed);
            None
        }
    }
}

/// The keys listed before the first error (the rest wait for the next drain).
fn list_keys<K>(keys: impl Iterator<Item = Result<K, MapError>>, errors: &mut u64) -> Vec<K> {
    let mut out = Vec::new();
    for key in keys {
        match key {
            Ok(key) => out.push(key),
            Err(_) => {
                *errors += 1;
                break;
            }
        }
    }
    out
}

/// Each key's value through `take` (read, then remove): an entry that
/// cannot be read is not removed, and one that cannot be removed is not
/// delivered; either stays for the next drain, counted in `errors`.
fn drain_keys<K, V>(
    keys: Vec<K>,
    errors: &mut u64,
    mut take: impl FnMut(&K) -> Option<V>,
) -> Vec<(K, V)> {
    let mut out = Vec::with_capacity(keys.len());
    for key in keys {
        match take(&key) {
            Some(v) => out.push((key, v)),
            None => *errors += 1,
        }
    }
    out
}
