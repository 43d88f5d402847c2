//! `cargo xtask layout`: which of the agent's functions run on a node, so the
//! linker places them side by side.
//!
//! The kernel maps a process's code a page-cache folio at a time, and at
//! least 64 KiB around each page a fault reads (fault-around): one function
//! that runs brings its neighbours in with it, and they stay resident. Linked
//! in the compiler's order, the functions that run are spread over most of
//! the agent's 13 MB of code (7.6 MiB of it resident after 100 scrapes).
//!
//! This task builds the agent instrumented (`-Cprofile-generate`, its own
//! target dir), runs it through the benches' workloads (start-up, scrapes of
//! the node and 100 cgroups, new flows at 1k and 10k per second, HTTP
//! requests parsed, shutdown) and merges the counts with LLVM's
//! `llvm-profdata`. It then writes to [`ORDER_FILE`], as a normal build links
//! them: every function that ran, hottest first, then the functions the
//! profile cannot see (the standard library's precompiled code, the
//! allocator shim, `_start`), which would otherwise each pull a folio of cold
//! code in. `node-agent/build.rs` hands the file to the linker
//! (`--symbol-ordering-file`); a name it no longer finds is skipped, so a
//! stale file costs residency, never a build.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use crate::{bench, bench_http, bench_scrape, build, sh};

/// The agent's symbol ordering file, relative to the workspace root.
pub const ORDER_FILE: &str = "node-agent/osprey-agent.order";
/// LLVM's profile tool, the same major version as rustc's LLVM (setup
/// installs it with LLVM for the kernel programs).
const PROFDATA: &str = "llvm-profdata-22";

pub fn run() -> Result<()> {
    let root = sh::root();
    let dir = root.join("target/layout");
    let profiles = dir.join("profiles");
    let _ = std::fs::remove_dir_all(&profiles);
    std::fs::create_dir_all(&profiles)?;
    let object = build::probes()?;
    sh::run(
        sh::cargo()
            .args(["build", "--release", "--bin", "osprey-agent"])
            .env(
                "RUSTFLAGS",
                format!("-Cprofile-generate={}", profiles.display()),
            )
            .env("CARGO_TARGET_DIR", &dir),
    )?;
    let agent = dir.join("release/osprey-agent");
    std::fs::copy(&object, agent.with_file_name("osprey-probes.bpf.o"))
        .with_context(|| format!("copying {}", object.display()))?;
    // Only the agent's own profiles: a build script run above wrote its own.
    for entry in std::fs::read_dir(&profiles)? {
        std::fs::remove_file(entry?.path())?;
    }

    bench::no_other_agent()?;
    bench_scrape::run(&agent, None, 1)?;
    bench::flow_rates(&agent, None, 1, 4)?;
    bench_http::run(&agent, None, 1, 4)?;

    let merged = dir.join("agent.profdata");
    let raw: Vec<PathBuf> = std::fs::read_dir(&profiles)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    if raw.is_empty() {
        bail!(
            "the instrumented agent wrote no profile into {}",
            profiles.display()
        );
    }
    sh::run(
        Command::new(PROFDATA)
            .args(["merge", "-o"])
            .arg(&merged)
            .args(&raw),
    )?;
    let shown = Command::new(PROFDATA)
        .args(["show", "--all-functions", "--counts"])
        .arg(&merged)
        .output()
        .with_context(|| format!("running {PROFDATA} show"))?;
    if !shown.status.success() {
        bail!(
            "{PROFDATA} show failed: {}",
            String::from_utf8_lossy(&shown.stderr)
        );
    }
    let profile = Profile::parse(&String::from_utf8_lossy(&shown.stdout));
    // The names as linked: a normal build, with whatever order file is there.
    let linked = symbols(&build::all()?)?;
    let order = profile.order(&linked);
    let path = root.join(ORDER_FILE);
    write(&path, &order)?;
    eprintln!(
        "xtask: {} of the agent's {} functions ran or are not instrumented; written to {}",
        order.len(),
        linked.len(),
        path.display()
    );
    Ok(())
}

/// The agent's function symbols, in address order.
fn symbols(binary: &Path) -> Result<Vec<String>> {
    let out = Command::new("nm")
        .args(["--defined-only", "--numeric-sort"])
        .arg(binary)
        .output()
        .context("running nm")?;
    if !out.status.success() {
        bail!("nm {} failed", binary.display());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, kind, name) = (f.next()?, f.next()?, f.next()?);
            matches!(kind, "t" | "T" | "w" | "W").then(|| name.to_owned())
        })
        .collect())
}

/// What `llvm-profdata show --all-functions --counts` says of each function.
struct Profile {
    /// Every function instrumented, with its largest block count (0: it did
    /// not run). A function with internal linkage is listed once per copy.
    counts: HashMap<String, u64>,
}

impl Profile {
    fn parse(shown: &str) -> Self {
        let mut counts: HashMap<String, u64> = HashMap::new();
        let mut name: Option<&str> = None;
        for line in shown.lines() {
            let trimmed = line.trim();
            if line.starts_with("  ") && !line.starts_with("    ") && trimmed.ends_with(':') {
                // A function with internal linkage is named `<unit>;<symbol>`.
                let full = trimmed.trim_end_matches(':');
                name = full.rsplit([';', ':']).next();
            } else if let Some(list) = trimmed.strip_prefix("Block counts: ")
                && let Some(n) = name.take()
            {
                let max = list
                    .trim_matches(['[', ']'])
                    .split(',')
                    .filter_map(|c| c.trim().parse::<u64>().ok())
                    .max()
                    .unwrap_or(0);
                let slot = counts.entry(n.to_owned()).or_default();
                *slot = (*slot).max(max);
            }
        }
        Self { counts }
    }

    /// The order for the linker, as `linked` names them: the functions that
    /// ran, hottest first, then those the profile cannot see (the standard
    /// library's precompiled code, the allocator shim, start-up) in their
    /// linked order. Cross-unit inlining renames a function `<name>.llvm.<n>`
    /// after the profile named it; both name the same function.
    fn order(&self, linked: &[String]) -> Vec<String> {
        let base = |n: &str| match n.rfind(".llvm.") {
            Some(i) => n[..i].to_owned(),
            None => n.to_owned(),
        };
        let mut ran: Vec<(&String, u64)> = Vec::new();
        let mut unseen: Vec<&String> = Vec::new();
        for name in linked {
            match self.counts.get(&base(name)) {
                Some(&count) if count > 0 => ran.push((name, count)),
                Some(_) => {}
                None => unseen.push(name),
            }
        }
        ran.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
        let mut seen = std::collections::HashSet::new();
        ran.into_iter()
            .map(|(n, _)| n)
            .chain(unseen)
            .filter(|n| seen.insert(*n))
            .cloned()
            .collect()
    }
}

fn write(path: &Path, order: &[String]) -> Result<()> {
    let mut text = String::from(
        "# The agent's functions that ran under `cargo xtask layout` (start-up, scrapes,\n\
         # flows, HTTP, shutdown), hottest first, then those its profile cannot see\n\
         # (precompiled std, the allocator shim): the linker places them side by side\n\
         # (node-agent/build.rs). Regenerate with `cargo xtask layout`.\n",
    );
    for symbol in order {
        text.push_str(symbol);
        text.push('\n');
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_order_is_what_ran_hottest_first_then_what_the_profile_cannot_see() {
        let shown = "Counters:\n  _ZN3foo3bar17h0123456789abcdefE:\n    Hash: 0x1\n    \
                     Counters: 2\n    Block counts: [7, 0]\n  \
                     foo.1-cgu.0;_ZN3foo4cold17hfedcba9876543210E:\n    Hash: 0x2\n    \
                     Counters: 1\n    Block counts: [0]\n  \
                     foo.1-cgu.3;_ZN3foo3hot17h1111111111111111E:\n    Hash: 0x3\n    \
                     Counters: 1\n    Block counts: [90]\n\
                     Instrumentation level: IR\n";
        let linked: Vec<String> = [
            "_start",
            "_ZN3foo4cold17hfedcba9876543210E",
            "_ZN3foo3bar17h0123456789abcdefE",
            "_ZN3foo3hot17h1111111111111111E.llvm.123456",
            "__rust_alloc",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            Profile::parse(shown).order(&linked),
            [
                "_ZN3foo3hot17h1111111111111111E.llvm.123456",
                "_ZN3foo3bar17h0123456789abcdefE",
                "_start",
                "__rust_alloc",
            ]
        );
    }
}
