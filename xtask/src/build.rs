//! `cargo xtask build`: the kernel programs (Debian's rustc, bpfel-unknown-none,
//! own target dir) and the host binaries, with the object placed next to the agent.

use std::path::PathBuf;

use anyhow::{Context, Result};

use crate::sh;

/// Where the kernel crate builds (a separate target dir: another compiler).
const BPF_TARGET_DIR: &str = "target/bpf";

pub fn probes() -> Result<PathBuf> {
    probes_with(&[], BPF_TARGET_DIR)
}

/// The kernel programs built with `features` of the probes crate into their
/// own target dir `dir` (the bench's variants: `percpu-flows`).
pub fn probes_with(features: &[&str], dir: &str) -> Result<PathBuf> {
    let root = sh::root();
    let cargo_bin = home_cargo_bin();
    let path = format!(
        "{}:{}",
        cargo_bin,
        std::env::var("PATH").unwrap_or_default()
    );
    sh::run(
        sh::cargo()
            .args([
                "build",
                "--release",
                "-p",
                "osprey-probes",
                "--target",
                "bpfel-unknown-none",
            ])
            .args(features.iter().flat_map(|f| ["--features", f]))
            .env("RUSTC", "/usr/bin/rustc")
            .env("RUSTC_BOOTSTRAP", "1")
            .env("RUSTFLAGS", "-C debuginfo=2 -C link-arg=--btf")
            .env("CARGO_TARGET_DIR", root.join(dir))
            .env_remove("RUSTC_WRAPPER")
            .env("PATH", path),
    )?;
    Ok(root
        .join(dir)
        .join("bpfel-unknown-none/release/osprey-probes"))
}

/// Builds probes and every host binary (release), and puts the probe object
/// next to the agent as `osprey-probes.bpf.o`. Returns the agent's path.
pub fn all() -> Result<PathBuf> {
    let object = probes()?;
    sh::run(sh::cargo().args(["build", "--release", "--bins"]))?;
    let out = sh::root().join("target/release");
    std::fs::copy(&object, out.join("osprey-probes.bpf.o"))
        .with_context(|| format!("copying {}", object.display()))?;
    Ok(out.join("osprey-agent"))
}

fn home_cargo_bin() -> String {
    std::env::var("CARGO_HOME")
        .map(|h| format!("{h}/bin"))
        .unwrap_or_else(|_| format!("{}/.cargo/bin", std::env::var("HOME").unwrap_or_default()))
}
