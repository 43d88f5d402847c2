//! Helpers for Osprey's end-to-end tests: network namespaces as "pods", the
//! real agent binary, a real Prometheus. Everything is cleaned up by RAII guards.

pub mod agent;
pub mod apiserver;
pub mod bridge;
pub mod certs;
pub mod cgroup;
pub mod collector;
pub mod dashboard_stack;
pub mod dns;
pub mod exposition;
pub mod grafana;
pub mod http;
pub mod netns;
pub mod peers;
pub mod podman;
pub mod prometheus;
pub mod rotel;
pub mod traffic;

/// A precondition that a test cannot run without (root, eBPF, a peer binary).
/// In CI (see [`in_ci`]) a missing precondition fails the test; locally the
/// test is skipped (see [`skip`]: the skip is reported outside cargo's output
/// capture and counted in `cargo xtask test`'s summary) and the enclosing
/// function returns its `Default`: `()` for a test, `None` / `false` for a
/// precondition check.
#[macro_export]
macro_rules! require {
    ($cond:expr, $($reason:tt)+) => {
        if !$cond {
            let reason = format!($($reason)+);
            if $crate::in_ci() {
                panic!("required for this test (CI is set): {reason}");
            }
            $crate::skip(&reason);
            return Default::default();
        }
    };
}

/// Whether this is a CI run: the `CI` variable is set, to any value (`.ci/run`
/// sets `CI=true`). The one definition every CI check of the repository
/// uses: node-agent's unit tests skip through [`require!`] too.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok()
}

/// The variable through which `cargo xtask test` collects skipped tests: a
/// file each skip appends one line to (`<test name>\t<reason>`).
pub const SKIP_LOG_VAR: &str = "OSPREY_SKIP_LOG";

/// Records that the running test is skipped for `reason`. cargo captures a
/// passing test's output, so the line goes to the process's stderr directly
/// (not through `eprintln!`, which the harness captures), and, under
/// `cargo xtask test`, to the skip log its summary counts.
pub fn skip(reason: &str) {
    use std::io::Write;
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("<unnamed test>");
    let line = format!("SKIPPED: {name}: {reason}\n");
    let _ = std::io::stderr().write_all(line.as_bytes());
    if let Some(path) = std::env::var_os(SKIP_LOG_VAR) {
        let reason = reason.replace(['\n', '\t'], " ");
        let _ = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(format!("{name}\t{reason}\n").as_bytes()));
    }
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Polls `f` every 200 ms until it returns Some, or panics after `secs` with `what`.
pub fn eventually<T>(secs: u64, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        if std::time::Instant::now() > deadline {
            panic!("timed out after {secs}s waiting for {what}");
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// Polls `f` every 200 ms until it says done, for at most `secs`; returns the
/// last value either way, so the caller's assertions explain a mismatch.
pub fn settle<T>(secs: u64, mut f: impl FnMut() -> (bool, T)) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        let (done, v) = f();
        if done || std::time::Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

/// A port free on loopback now (for a peer that binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
