//! Kernel text addresses named by `/proc/kallsyms`: where the kernel freed a
//! dropped packet (`skb:kfree_skb`'s `location`) becomes a function name.
//!
//! The table is ~200k lines; keeping it would cost megabytes for the few
//! dozen places drops come from. Names are resolved on demand instead: the
//! addresses a drain has not seen before are looked up together, in one pass
//! over the file, and remembered (a bounded cache).

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    path::PathBuf,
    sync::Arc,
};

/// Addresses remembered; past this the cache starts again (a kernel has far
/// fewer places that free packets).
const CACHE: usize = 4_096;

/// What an address resolves to when it cannot be named (no kallsyms, or
/// addresses hidden by `kptr_restrict` to a process without CAP_SYSLOG).
pub const UNKNOWN: &str = "unknown";

#[derive(Debug)]
pub struct Kallsyms {
    path: PathBuf,
    names: HashMap<u64, Arc<str>>,
}

impl Default for Kallsyms {
    fn default() -> Self {
        Self::at("/proc/kallsyms")
    }
}

impl Kallsyms {
    pub fn at(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            names: HashMap::new(),
        }
    }

    /// The function containing `addr`, if resolved before.
    pub fn get(&self, addr: u64) -> Option<Arc<str>> {
        self.names.get(&addr).cloned()
    }

    /// The function containing `addr`, resolved now if not before.
    pub fn name(&mut self, addr: u64) -> Arc<str> {
        if let Some(n) = self.get(addr) {
            return n;
        }
        self.resolve([addr]);
        self.get(addr).unwrap_or_else(|| UNKNOWN.into())
    }

    /// Resolves every address of `addrs` not seen before, in one pass over
    /// the table; one that cannot be named is remembered as [`UNKNOWN`].
    pub fn resolve(&mut self, addrs: impl IntoIterator<Item = u64>) {
        let mut new: Vec<u64> = addrs
            .into_iter()
            .filter(|a| !self.names.contains_key(a))
            .collect();
        if new.is_empty() {
            return;
        }
        new.sort_unstable();
        new.dedup();
        if self.names.len() + new.len() > CACHE {
            self.names.clear();
        }
        let found = std::fs::File::open(&self.path)
            .map(|f| containing(BufReader::new(f), &new))
            .unwrap_or_default();
        for (addr, name) in new.iter().zip(found) {
            let name = name.unwrap_or_else(|| UNKNOWN.to_owned());
            self.names.insert(*addr, name.into());
        }
    }
}

/// For each of the sorted `addrs`, the text symbol with the greatest address
/// at or below it (kallsyms lists functions, so that is the function the
/// address is in), or none.
fn containing(table: impl BufRead, addrs: &[u64]) -> Vec<Option<String>> {
    let mut best: Vec<Option<(u64, String)>> = vec![None; addrs.len()];
    for line in table.lines().map_while(Result::ok) {
        let mut f = line.split_ascii_whitespace();
        let (Some(addr), Some(kind), Some(name)) = (f.next(), f.next(), f.next()) else {
            continue;
        };
        if !matches!(kind, "t" | "T") {
            continue;
        }
        let Ok(at) = u64::from_str_radix(addr, 16) else {
            continue;
        };
        if at == 0 {
            continue; // hidden by kptr_restrict
        }
        // The addresses at or above this symbol: it is their best so far if
        // it is above their current best.
        let from = addrs.partition_point(|&a| a < at);
        for (i, slot) in best.iter_mut().enumerate().skip(from) {
            if slot.as_ref().is_none_or(|(b, _)| *b < at) {
                *slot = Some((at, name.to_owned()));
            } else if i > from {
                // Later addresses have a best at least as high: done.
                break;
            }
        }
    }
    best.into_iter().map(|b| b.map(|(_, name)| name)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TABLE: &str = "\
ffffffff81000000 T _stext
ffffffff81a00000 t ndisc_recv_ns
ffffffff81a00400 T icmpv6_rcv
ffffffff81b00000 d some_data
ffffffff81c00000 T br_handle_frame [bridge]
";

    #[test]
    fn an_address_is_named_by_the_function_it_is_in() {
        let addrs = [
            0xffffffff80000000, // below every symbol
            0xffffffff81a00010,
            0xffffffff81a00400,
            0xffffffff81b00010, // past data: still in icmpv6_rcv's range
            0xffffffff81c00020,
        ];
        let got = containing(TABLE.as_bytes(), &addrs);
        assert_eq!(
            got,
            [
                None,
                Some("ndisc_recv_ns".to_owned()),
                Some("icmpv6_rcv".to_owned()),
                Some("icmpv6_rcv".to_owned()),
                Some("br_handle_frame".to_owned()),
            ]
        );
    }

    #[test]
    fn hidden_addresses_name_nothing_and_resolve_to_unknown() {
        let dir = std::env::temp_dir().join(format!("osprey-kallsyms-{}", std::process::id()));
        std::fs::write(&dir, "0000000000000000 T icmpv6_rcv\n").unwrap();
        let mut k = Kallsyms::at(&dir);
        k.resolve([0xffffffff81a00400]);
        assert_eq!(k.get(0xffffffff81a00400).as_deref(), Some(UNKNOWN));
        std::fs::remove_file(&dir).unwrap();
    }
}
