//! The real agent binary, started as a child process and stopped on drop.

use std::{
    io::{BufRead, BufReader},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

/// Path of the agent built by `cargo xtask test` (OSPREY_AGENT_BIN), if any.
pub fn binary() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("OSPREY_AGENT_BIN")?);
    path.exists().then_some(path)
}

pub struct Agent {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base_url: String,
}

impl Agent {
    /// Starts the agent on a free loopback port with `args` and waits until it serves.
    pub fn start(args: &[&str]) -> Result<Self, String> {
        let bin = binary()
            .ok_or("OSPREY_AGENT_BIN is not set to a built agent (run `cargo xtask test`)")?;
        let mut child = Command::new(&bin)
            .args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", bin.display()))?;
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .map_err(|e| e.to_string())?;
        let Some(url) = line.trim().strip_prefix("osprey-agent: serving ") else {
            let status = child.wait().map_err(|e| e.to_string())?;
            return Err(format!(
                "agent exited ({status}) before serving; see its stderr above"
            ));
        };
        let base_url = url.trim_end_matches("/metrics").to_owned();
        Ok(Self { child, base_url })
    }

    pub fn metrics_url(&self) -> String {
        format!("{}/metrics", self.base_url)
    }

    pub fn port(&self) -> u16 {
        self.base_url.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// Fetches /metrics; returns (content type, body).
    pub fn scrape(&self) -> (String, String) {
        let resp = ureq::get(&self.metrics_url())
            .timeout(Duration::from_secs(10))
            .call()
            .expect("scraping the agent");
        let ctype = resp.header("content-type").unwrap_or_default().to_owned();
        (ctype, resp.into_string().expect("reading /metrics"))
    }

    /// Runs `osprey-agent observe ARGS` against this agent; what it printed
    /// (the compact form, like `hubble observe`).
    pub fn observe_text(&self, args: &[&str]) -> String {
        let out = Command::new(binary().unwrap())
            .args(["observe", "--server", &self.base_url])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "observe {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs `osprey-agent observe -o json ARGS` against this agent; the records it printed.
    pub fn observe(&self, args: &[&str]) -> Vec<serde_json::Value> {
        self.observe_text(&[&["-o", "json"][..], args].concat())
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the agent gets no chance to clean up.
    pub fn kill_hard(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited 0.
    pub fn stop(mut self) -> bool {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().is_ok_and(|s| s.success())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
            let _ = self.child.wait();
        }
    }
}

/// The agent for an end-to-end test, started with `args`; None (the test
/// skips, with the reason printed) when not root or not built, except with
/// `CI=true`, where that fails the test. An agent that cannot start fails it.
/// `for_test` with a 200 ms drain and both ends of the Hubble families
/// named by address (no pods here), plus `extra` flags.
pub fn for_test_by_ip(extra: &[&str]) -> Option<Agent> {
    let mut args = vec![
        "--drain-interval-ms",
        "200",
        "--hubble-source-context",
        "ip",
        "--hubble-destination-context",
        "ip",
    ];
    args.extend_from_slice(extra);
    for_test(&args)
}

pub fn for_test(args: &[&str]) -> Option<Agent> {
    crate::require!(
        crate::is_root(),
        "root is needed to load eBPF and create network namespaces"
    );
    crate::require!(
        binary().is_some(),
        "OSPREY_AGENT_BIN unset: run `cargo xtask test`"
    );
    match Agent::start(args) {
        Ok(agent) => Some(agent),
        Err(e) => panic!("the agent must start and load its probes: {e}"),
    }
}
