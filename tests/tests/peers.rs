//! The peers `cargo xtask setup` installs outside Debian bookworm's packages
//! start and answer here: Prometheus 3, VictoriaMetrics, vmagent, rotel-agent.

use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use osprey_e2e::{eventually, free_port, peers, require_peer};

/// A started peer and its scratch directory, both gone on drop.
struct Running(Child, PathBuf);

impl Running {
    fn start(cmd: &mut Command, dir: PathBuf) -> Self {
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {cmd:?}: {e}"));
        Self(child, dir)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("osprey-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn get(url: &str) -> Option<String> {
    ureq::get(url)
        .timeout(Duration::from_secs(2))
        .call()
        .ok()?
        .into_string()
        .ok()
}

#[test]
fn prometheus3_receives_remote_write() {
    let bin = require_peer!(peers::PROMETHEUS3);
    let dir = scratch("prom3");
    std::fs::write(
        dir.join("prometheus.yml"),
        "global:\n  scrape_interval: 15s\n",
    )
    .unwrap();
    let port = free_port();
    let _prom = Running::start(
        Command::new(&bin)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--web.enable-remote-write-receiver")
            .arg("--log.level=warn"),
        dir,
    );
    let info = eventually(30, "Prometheus 3's buildinfo", || {
        get(&format!("http://127.0.0.1:{port}/api/v1/status/buildinfo"))
    });
    let info: serde_json::Value = serde_json::from_str(&info).unwrap();
    let version = info["data"]["version"].as_str().unwrap_or_default();
    assert!(version.starts_with("3."), "{info}");
    assert!(peers::promtool3().is_file());
}

#[test]
fn victoria_metrics_is_healthy() {
    let bin = require_peer!(peers::VICTORIA_METRICS);
    let dir = scratch("vm");
    let port = free_port();
    let _vm = Running::start(
        Command::new(&bin)
            .arg(format!("-storageDataPath={}", dir.join("data").display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg("-loggerLevel=ERROR"),
        dir,
    );
    let health = eventually(30, "VictoriaMetrics' /health", || {
        get(&format!("http://127.0.0.1:{port}/health"))
    });
    assert_eq!(health.trim(), "OK");
}

#[test]
fn vmagent_and_rotel_run() {
    let vmagent = require_peer!(peers::VMAGENT);
    let rotel = require_peer!(peers::ROTEL);
    for (bin, flag) in [(vmagent, "-help"), (rotel, "--help")] {
        let out = Command::new(&bin).arg(flag).output().unwrap();
        assert!(
            out.status.success(),
            "{} {flag}: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
