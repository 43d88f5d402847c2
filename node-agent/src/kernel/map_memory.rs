//! What the kernel maps cost: each map of the agent's programs with its
//! definition (type, key and value sizes, entries) and the kernel's own
//! figure of its memory (`memlock` in the map fd's fdinfo, charged to the
//! agent's memory cgroup), and the projection of that figure to another
//! number of possible CPUs: per-CPU maps hold one value per possible CPU
//! for each entry, preallocated, so that part scales with the CPU count.

use std::{
    collections::BTreeSet,
    os::fd::{AsFd, AsRawFd},
};

use aya::{
    maps::MapInfo,
    programs::{ProgramInfo, loaded_programs},
};

/// `bpf_map_type` values (uapi `linux/bpf.h`).
const HASH: u32 = 1;
const PERCPU_HASH: u32 = 5;
const PERCPU_ARRAY: u32 = 6;
const LRU_PERCPU_HASH: u32 = 10;
/// `struct htab_elem` before its key, on 64-bit kernels.
const HTAB_ELEM: u64 = 48;

/// One kernel map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapFootprint {
    pub name: String,
    pub map_type: u32,
    pub key_size: u32,
    pub value_size: u32,
    pub max_entries: u32,
    /// The kernel's figure (`memlock` in fdinfo), at this host's CPU count.
    pub memory_bytes: u64,
}

const fn round8(v: u32) -> u64 {
    (v as u64).div_ceil(8) * 8
}

impl MapFootprint {
    fn of(info: &MapInfo) -> Option<Self> {
        let fd = info.fd().ok()?;
        let fdinfo =
            std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_fd().as_raw_fd()))
                .ok()?;
        let memory_bytes = fdinfo
            .lines()
            .find_map(|l| l.strip_prefix("memlock:"))
            .and_then(|v| v.trim().parse().ok())?;
        Some(Self {
            name: info.name_as_str().unwrap_or_default().to_owned(),
            map_type: info.map_type().map(|t| t as u32).unwrap_or(u32::MAX),
            key_size: info.key_size(),
            value_size: info.value_size(),
            max_entries: info.max_entries(),
            memory_bytes,
        })
    }

    /// Bytes added per possible CPU: a per-CPU map's values (every entry,
    /// preallocated, the worst case); a preallocated hash map's spare
    /// element per CPU. Per-CPU bookkeeping of a few dozen bytes per map is
    /// left out.
    pub fn per_cpu_bytes(&self) -> u64 {
        let entries = u64::from(self.max_entries);
        match self.map_type {
            PERCPU_HASH | LRU_PERCPU_HASH | PERCPU_ARRAY => entries * round8(self.value_size),
            HASH => HTAB_ELEM + round8(self.key_size) + round8(self.value_size),
            _ => 0,
        }
    }

    /// The kernel's figure at `cpus` possible CPUs, from `here` now.
    pub fn projected(&self, here: usize, cpus: usize) -> u64 {
        let delta = cpus as i64 - here as i64;
        (self.memory_bytes as i64 + delta * self.per_cpu_bytes() as i64).max(0) as u64
    }
}

/// This host's possible CPUs (what per-CPU maps are sized by).
pub fn possible_cpus() -> usize {
    aya::util::nr_cpus().unwrap_or(1)
}

/// The maps the given programs use, each once.
pub fn of_programs<'a>(programs: impl Iterator<Item = &'a ProgramInfo>) -> Vec<MapFootprint> {
    let ids: BTreeSet<u32> = programs
        .filter_map(|p| p.map_ids().ok().flatten())
        .flatten()
        .collect();
    ids.into_iter()
        .filter_map(|id| MapFootprint::of(&MapInfo::from_id(id).ok()?))
        .collect()
}

/// The BPF maps this process holds open, found through its own fds
/// (`/proc/self/fd`, `fdinfo`) and named through them: no capability
/// beyond holding the fds, where looking a map up by id needs
/// `CAP_SYS_ADMIN` (the least-privilege pod has none). Each map once.
pub fn of_own_fds() -> Vec<MapFootprint> {
    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else {
        return Vec::new();
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for entry in fds.flatten() {
        let is_map =
            std::fs::read_link(entry.path()).is_ok_and(|l| l.as_os_str() == "anon_inode:bpf-map");
        let fd = entry
            .file_name()
            .to_str()
            .and_then(|f| f.parse::<i32>().ok());
        let Some(fd) = fd.filter(|_| is_map) else {
            continue;
        };
        if let Some((id, map)) = footprint_of_fd(fd)
            && seen.insert(id)
        {
            out.push(map);
        }
    }
    out
}

/// A map fd's id and footprint, from its fdinfo and the kernel's map info.
fn footprint_of_fd(fd: i32) -> Option<(u32, MapFootprint)> {
    let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")).ok()?;
    let field = |name: &str| -> Option<u64> {
        fdinfo
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
            .and_then(|v| v.trim().parse().ok())
    };
    // SAFETY: `bpf_map_info` is plain integers; zero is its empty value.
    let mut info: aya_obj::generated::bpf_map_info = unsafe { std::mem::zeroed() };
    // The info member of `union bpf_attr`: the kernel writes up to
    // `info_len` bytes into `info`, which outlives the call.
    let mut attr = crate::kernel::test_run::zeroed_attr();
    attr.info.bpf_fd = fd as u32;
    attr.info.info_len = std::mem::size_of_val(&info) as u32;
    attr.info.info = &raw mut info as u64;
    crate::kernel::test_run::sys_bpf(
        aya_obj::generated::bpf_cmd::BPF_OBJ_GET_INFO_BY_FD,
        &mut attr,
    )
    .ok()?;
    let name: Vec<u8> = info
        .name
        .iter()
        .take_while(|c| **c != 0)
        .map(|c| *c as u8)
        .collect();
    Some((
        info.id,
        MapFootprint {
            name: String::from_utf8_lossy(&name).into_owned(),
            map_type: field("map_type")? as u32,
            key_size: field("key_size")? as u32,
            value_size: field("value_size")? as u32,
            max_entries: field("max_entries")? as u32,
            memory_bytes: field("memlock")?,
        },
    ))
}

/// The maps of the programs loaded on this host under these names (kernel
/// names: the first 15 bytes): the running agent's, for `osprey-agent
/// map-memory`.
pub fn of_loaded(names: &[String]) -> Vec<MapFootprint> {
    let short: BTreeSet<&str> = names.iter().map(|n| &n[..n.len().min(15)]).collect();
    let programs: Vec<ProgramInfo> = loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| p.name_as_str().is_some_and(|n| short.contains(n)))
        .collect();
    of_programs(programs.iter())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(map_type: u32, key: u32, value: u32, entries: u32, memory: u64) -> MapFootprint {
        MapFootprint {
            name: "m".into(),
            map_type,
            key_size: key,
            value_size: value,
            max_entries: entries,
            memory_bytes: memory,
        }
    }

    #[test]
    fn per_cpu_values_scale_with_the_cpus_the_rest_does_not() {
        // A per-CPU flow map: 65,536 entries of a 64-byte value per CPU.
        let flows = map(PERCPU_HASH, 48, 64, 65_536, 16 << 20);
        assert_eq!(flows.per_cpu_bytes(), 4 << 20);
        assert_eq!(flows.projected(2, 64), (16 << 20) + 62 * (4 << 20));
        // A 2 MiB ring buffer does not grow with CPUs.
        let ring = map(27, 0, 0, 2 << 20, (2 << 20) + 4096);
        assert_eq!(ring.projected(2, 128), ring.memory_bytes);
        // A value of 12 bytes takes 16 per CPU.
        assert_eq!(map(PERCPU_ARRAY, 4, 12, 10, 0).per_cpu_bytes(), 160);
    }
}
