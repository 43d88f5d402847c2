//! Helpers for Osprey's end-to-end tests: network namespaces as "pods", the
//! real agent binary, a real Prometheus. Everything is cleaned up by RAII guards.

pub mod agent;
pub mod apiserver;
pub mod cgroup;
pub mod exposition;
pub mod netns;
pub mod prometheus;
pub mod traffic;

/// A precondition that a test cannot run without (root, eBPF, a peer binary).
/// With `CI=true` a missing precondition fails the test; locally the test is
/// skipped with the reason printed (the enclosing function returns its
/// `Default`: `()` for a test, `false` for a precondition check).
#[macro_export]
macro_rules! require {
    ($cond:expr, $($reason:tt)+) => {
        if !$cond {
            let reason = format!($($reason)+);
            if $crate::in_ci() {
                panic!("required for this test (CI=true): {reason}");
            }
            eprintln!("SKIPPED: {reason}");
            return Default::default();
        }
    };
}

pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
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
