//! Running commands: say what runs, fail with the command line when it fails.

use std::{path::Path, process::Command};

use anyhow::{Context, Result, bail};

/// Runs `cmd`, streaming its output; errors if it exits non-zero.
pub fn run(cmd: &mut Command) -> Result<()> {
    let line = describe(cmd);
    eprintln!("xtask: $ {line}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start `{line}`"))?;
    if !status.success() {
        bail!("`{line}` failed: {status}");
    }
    Ok(())
}

/// The variable through which tests report a skip (osprey-e2e's `skip`):
/// each appends `<test name>\t<reason>` to the file it names.
const SKIP_LOG_VAR: &str = "OSPREY_SKIP_LOG";

/// Runs `cargo test`, passing its output through, and ends with one closing
/// line totalling every test binary's "test result" line. A test that skipped
/// (a missing precondition outside CI) returned, so cargo counts it passed:
/// it is counted as skipped instead, and named with its reason.
pub fn run_tests(cmd: &mut Command) -> Result<()> {
    use std::io::{BufRead, BufReader};
    let skip_log = std::env::temp_dir().join(format!("osprey-skipped-{}", std::process::id()));
    let _ = std::fs::remove_file(&skip_log);
    cmd.env(SKIP_LOG_VAR, &skip_log);
    let line = describe(cmd);
    eprintln!("xtask: $ {line}");
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start `{line}`"))?;
    let (mut passed, mut failed, mut ignored) = (0u64, 0u64, 0u64);
    for text in BufReader::new(child.stdout.take().expect("piped")).lines() {
        let text = text?;
        println!("{text}");
        if let Some(rest) = text.strip_prefix("test result: ") {
            for part in rest.split(['.', ';']) {
                let mut words = part.split_whitespace();
                if let (Some(n), Some(what)) = (words.next(), words.next()) {
                    let n: u64 = n.parse().unwrap_or(0);
                    match what {
                        "passed" => passed += n,
                        "failed" => failed += n,
                        "ignored" => ignored += n,
                        _ => {}
                    }
                }
            }
        }
    }
    let status = child.wait()?;
    let skips = std::fs::read_to_string(&skip_log).unwrap_or_default();
    let _ = std::fs::remove_file(&skip_log);
    let skipped = skips.lines().filter(|l| !l.is_empty()).count() as u64;
    for skip in skips.lines().filter(|l| !l.is_empty()) {
        let (name, reason) = skip.split_once('\t').unwrap_or((skip, ""));
        println!("skipped: {name}: {reason}");
    }
    let passed = passed.saturating_sub(skipped);
    let skipped = ignored + skipped;
    println!("summary: {passed} passed, {failed} failed, {skipped} skipped");
    if !status.success() {
        bail!("`{line}` failed: {status}");
    }
    Ok(())
}

/// Runs `cmd` quietly and says whether it succeeded (for checks).
pub fn succeeds(cmd: &mut Command) -> bool {
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs `cmd` quietly and returns its stdout, or None if it failed.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(std::process::Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn describe(cmd: &Command) -> String {
    let mut line = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}

/// The workspace root (xtask lives one level below it).
pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent")
}

/// `cargo` as invoked by the user (through rustup's proxy), at the workspace root.
pub fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe extern "C" {
        fn geteuid() -> u32;
    }
    unsafe { geteuid() == 0 }
}
