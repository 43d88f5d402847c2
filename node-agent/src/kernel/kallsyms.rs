//! Kernel text addresses named: where the kernel freed a dropped packet
//! (`skb:kfree_skb`'s `location`) becomes a function name.
//!
//! The kernel names them itself when the `symbol_name` program is loaded (a
//! test run per new address, the kernel's own symbol search, microseconds).
//! Otherwise `/proc/kallsyms` is read: ~120k lines, tens of milliseconds of
//! kernel time a pass, and megabytes if kept, so the addresses a drain has
//! not seen before are looked up together, in one pass, and remembered.
//! Either way the names are cached (bounded): a kernel frees packets in a
//! few dozen places.

use std::{
    collections::HashMap,
    io::{BufRead, BufReader},
    os::fd::{AsFd, AsRawFd},
    path::PathBuf,
    sync::Arc,
};

use aya::{
    maps::{Array, MapData},
    programs::ProgramFd,
};
use osprey_abi::SymbolName;

use crate::kernel::test_run::test_run_raw_tracepoint_with;

/// Addresses remembered; past this the cache starts again (a kernel has far
/// fewer places that free packets).
const CACHE: usize = 4_096;

/// What an address resolves to when it cannot be named (no kallsyms, or
/// addresses hidden by `kptr_restrict` to a process without CAP_SYSLOG).
pub const UNKNOWN: &str = "unknown";

/// The `symbol_name` program (loaded, never attached) and the array it
/// writes a name to.
pub struct SymbolProgram {
    program: ProgramFd,
    out: Array<MapData, SymbolName>,
}

impl std::fmt::Debug for SymbolProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SymbolProgram").finish_non_exhaustive()
    }
}

impl SymbolProgram {
    pub fn new(program: ProgramFd, out: Array<MapData, SymbolName>) -> Self {
        Self { program, out }
    }

    /// The function `addr` is in, as the kernel names it; `None` for an
    /// address in no function. The slot is cleared first, so a run that
    /// fails before writing cannot hand back the previous address's name.
    pub fn name(&mut self, addr: u64) -> std::io::Result<Option<String>> {
        self.out
            .set(0, SymbolName::default(), 0)
            .map_err(std::io::Error::other)?;
        test_run_raw_tracepoint_with(self.program.as_fd().as_raw_fd(), &[addr])?;
        let out = self.out.get(&0, 0).map_err(std::io::Error::other)?;
        if out.written <= 0 {
            return Err(std::io::Error::other(format!(
                "bpf_snprintf returned {}",
                out.written
            )));
        }
        Ok(printed_name(&out.name))
    }
}

/// The function name of `%ps`'s output: `name` or `name [module]`; an
/// address in no function prints as `0x…`.
fn printed_name(buf: &[u8]) -> Option<String> {
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    let text = std::str::from_utf8(&buf[..end]).ok()?;
    let name = text.split(' ').next()?;
    (!name.is_empty() && !name.starts_with("0x")).then(|| name.to_owned())
}

#[derive(Debug)]
pub struct Kallsyms {
    path: PathBuf,
    /// The kernel names addresses; the file is read only if it cannot.
    kernel: Option<SymbolProgram>,
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
            kernel: None,
            names: HashMap::new(),
        }
    }

    /// Names addresses with the `symbol_name` program, the file only for
    /// those it fails on.
    pub fn with_kernel(mut self, kernel: SymbolProgram) -> Self {
        self.kernel = Some(kernel);
        self
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
        if let Some(kernel) = &mut self.kernel {
            let mut failed = Vec::new();
            for addr in new {
                match kernel.name(addr) {
                    Ok(name) => {
                        let name = name.as_deref().unwrap_or(UNKNOWN);
                        self.names.insert(addr, name.into());
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, addr, "symbol_name failed; reading kallsyms");
                        failed.push(addr);
                    }
                }
            }
            new = failed;
            if new.is_empty() {
                return;
            }
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
    fn the_kernels_printed_name_is_the_function() {
        let mut buf = [0u8; 32];
        buf[..24].copy_from_slice(b"br_handle_frame [bridge]");
        assert_eq!(printed_name(&buf).as_deref(), Some("br_handle_frame"));
        assert_eq!(
            printed_name(b"icmpv6_rcv\0junk").as_deref(),
            Some("icmpv6_rcv")
        );
        assert_eq!(printed_name(b"0xffffffff81a00400\0"), None);
        assert_eq!(printed_name(b"\0"), None);
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
