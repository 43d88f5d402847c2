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
/// round. The entries go into `into` (emptied first), a buffer the caller
/// keeps from drain to drain.
pub(super) fn drain_map<K: aya::Pod, V: aya::Pod>(
    map: &mut PerCpuHashMap<MapData, K, V>,
    errors: &mut u64,
    fold: impl Fn(&[V]) -> V,
    into: Vec<(K, V)>,
) -> Vec<(K, V)> {
    use aya::maps::IterableMap;
    static NO_BATCH: AtomicBool = AtomicBool::new(false);
    let into = match aya::util::nr_cpus() {
        Ok(cpus) => match drain_batch(map.map(), cpus, &fold, &NO_BATCH, errors, into) {
            Ok(entries) => return entries,
            Err(into) => into,
        },
        Err(_) => into,
    };
    let keys = list_keys(map.keys(), errors);
    drain_keys(keys, errors, into, |key| {
        let per_cpu = map.get(key, 0).ok()?;
        map.remove(key).ok()?;
        Some(fold(&per_cpu))
    })
}

/// Reads and deletes every entry of a map shared by the CPUs (one value
/// per key), as `drain_map` does a per-CPU map's, into `into`.
pub(super) fn drain_shared<K: aya::Pod, V: aya::Pod>(
    map: &mut aya::maps::HashMap<MapData, K, V>,
    errors: &mut u64,
    into: Vec<(K, V)>,
) -> Vec<(K, V)> {
    use aya::maps::IterableMap;
    static NO_BATCH: AtomicBool = AtomicBool::new(false);
    // A shared map's batch layout is a per-CPU map's with one CPU.
    let into = match drain_batch(map.map(), 1, &|v: &[V]| v[0], &NO_BATCH, errors, into) {
        Ok(entries) => return entries,
        Err(into) => into,
    };
    let keys = list_keys(map.keys(), errors);
    drain_keys(keys, errors, into, |key| {
        let n = map.get(key, 0).ok()?;
        map.remove(key).ok()?;
        Some(n)
    })
}

/// A drained map's entries.
type Entries<K, V> = Vec<(K, V)>;

/// Every entry of `map` in batches (values of `cpus` CPUs folded with
/// `fold`) into `into`, or `into` back when this kernel has no batch
/// operations (remembered in `no_batch`, so the caller drains key by key
/// from then on).
fn drain_batch<K: Copy, V: Copy>(
    map: &MapData,
    cpus: usize,
    fold: &impl Fn(&[V]) -> V,
    no_batch: &AtomicBool,
    errors: &mut u64,
    into: Vec<(K, V)>,
) -> Result<Entries<K, V>, Entries<K, V>> {
    use std::os::fd::AsFd;
    if no_batch.load(Ordering::Relaxed) {
        return Err(into);
    }
    // The batch call fills a buffer it owns: `into` comes back only in a
    // result, so a kernel without batch operations costs a fresh one once.
    match crate::kernel::batch::drain_per_cpu_hash(map.fd().as_fd(), cpus, fold, into) {
        Ok(drained) => {
            if let Some(e) = drained.error {
                warn!(error = %e, "batch drain stopped; the rest waits for the next drain");
                *errors += 1;
            }
            Ok(drained.entries)
        }
        Err(e) => {
            warn!(error = %e, "no batch map operations in this kernel: draining key by key");
            no_batch.store(true, Ordering::Relaxed);
            Err(Vec::new())
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
    mut out: Vec<(K, V)>,
    mut take: impl FnMut(&K) -> Option<V>,
) -> Vec<(K, V)> {
    out.clear();
    out.reserve(keys.len());
    for key in keys {
        match take(&key) {
            Some(v) => out.push((key, v)),
            None => *errors += 1,
        }
    }
    out
}
