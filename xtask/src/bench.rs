//! `cargo xtask bench`: what Osprey costs, measured side by side in one run.
//! The shared parts: two network namespaces ("pods") joined by a veth pair
//! (default offloads, as on a node), the agent under test, medians; and the
//! agent's CPU and RSS under many new flows per second. The probes' cost to
//! traffic is in `bench_probes`, the scrape cost in `bench_scrape`.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    thread::sleep,
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::sh;

pub(crate) const NS_A: &str = "osprey-bench-a";
pub(crate) const NS_B: &str = "osprey-bench-b";
pub(crate) const IP_A: &str = "10.250.0.1";
pub(crate) const IP_B: &str = "10.250.0.2";

pub(crate) struct Pods;

impl Pods {
    pub(crate) fn create() -> Result<Self> {
        Self::delete();
        for ns in [NS_A, NS_B] {
            sh::run(Command::new("ip").args(["netns", "add", ns]))?;
            sh::run(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]))?;
        }
        sh::run(Command::new("ip").args([
            "link",
            "add",
            "osp-bench-a",
            "netns",
            NS_A,
            "type",
            "veth",
            "peer",
            "name",
            "osp-bench-b",
            "netns",
            NS_B,
        ]))?;
        for (ns, dev, ip) in [(NS_A, "osp-bench-a", IP_A), (NS_B, "osp-bench-b", IP_B)] {
            sh::run(Command::new("ip").args([
                "-n",
                ns,
                "addr",
                "add",
                &format!("{ip}/24"),
                "dev",
                dev,
            ]))?;
            sh::run(Command::new("ip").args(["-n", ns, "link", "set", dev, "up"]))?;
        }
        Ok(Self)
    }

    fn delete() {
        for ns in [NS_A, NS_B] {
            let _ = sh::succeeds(Command::new("ip").args(["netns", "del", ns]));
        }
    }
}

impl Drop for Pods {
    fn drop(&mut self) {
        Self::delete();
    }
}

/// SIGTERM (a clean detach), then wait.
pub(crate) fn terminate(child: &mut Child) {
    // SAFETY: kill(2) on our own child.
    unsafe {
        unsafe extern "C" {
            fn kill(pid: i32, sig: i32) -> i32;
        }
        kill(child.id() as i32, 15);
    }
    let _ = child.wait();
}

pub(crate) struct RunningAgent {
    pub(crate) child: Child,
    pub(crate) url: String,
}

impl RunningAgent {
    pub(crate) fn start(agent: &Path, bpf_stats: bool) -> Result<Self> {
        Self::start_with(agent, bpf_stats, &[])
    }

    pub(crate) fn start_with(agent: &Path, bpf_stats: bool, extra: &[&str]) -> Result<Self> {
        Self::start_at(agent, "127.0.0.1:0", bpf_stats, extra)
    }

    /// Listening at `listen` (the series bench: the agent's own port, as a
    /// scraper finds it on a node, so that its scrapes are one server's flows).
    pub(crate) fn start_at(
        agent: &Path,
        listen: &str,
        bpf_stats: bool,
        extra: &[&str],
    ) -> Result<Self> {
        let (child, line) = spawn_quiet(
            Command::new(agent)
                .args(["--listen", listen, "--drain-interval-ms", "1000"])
                .args(["--bpf-stats", if bpf_stats { "true" } else { "false" }])
                .args(extra),
        )
        .context("starting the agent")?;
        let Some(url) = line.trim().strip_prefix("osprey-agent: serving ") else {
            bail!("the agent did not start: {line}");
        };
        Ok(Self {
            url: url.to_owned(),
            child,
        })
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

/// The value of an unlabelled sample on the agent's /metrics.
pub(crate) fn gauge(agent: &RunningAgent, name: &str) -> f64 {
    ureq::get(&agent.url)
        .call()
        .ok()
        .and_then(|r| r.into_string().ok())
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
        })
        .unwrap_or(0.0)
}

/// Starts an osprey-agent command with warnings only, and returns it with
/// the first line it prints (what it says once it is ready).
pub(crate) fn spawn_quiet(cmd: &mut Command) -> Result<(Child, String)> {
    let mut child = cmd.env("RUST_LOG", "warn").stdout(Stdio::piped()).spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
    Ok((child, line))
}

/// "min–max" of a sample, for the tables: the spread the median hides.
pub(crate) fn range(v: &[f64]) -> String {
    let min = v.iter().copied().fold(f64::INFINITY, f64::min);
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let digits = if max < 10.0 { 3 } else { 1 };
    format!("{min:.digits$}–{max:.digits$}")
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Refuses to measure while another agent runs: its probes would count the
/// baseline's packets too, and skew every ratio.
pub fn no_other_agent() -> Result<()> {
    let others: Vec<String> = std::fs::read_dir("/proc")?
        .filter_map(|e| {
            let pid = e.ok()?.file_name().into_string().ok()?;
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            // A zombie has an empty command line and nothing attached.
            (comm.trim() == "osprey-agent" && !cmdline.is_empty()).then_some(pid)
        })
        .collect();
    if !others.is_empty() {
        bail!(
            "osprey-agent is already running (pid {}): its probes would skew the baseline; stop it first",
            others.join(", ")
        );
    }
    Ok(())
}

/// `xtask flowgen`: sends one UDP datagram per flow, `rate` distinct flows per
/// second (distinct destination ports), for `secs` seconds. Run inside pod A.
pub fn flowgen(target: &str, rate: u32, secs: u64) -> Result<()> {
    use std::net::UdpSocket;
    let sock = UdpSocket::bind("0.0.0.0:0")?;
    let start = std::time::Instant::now();
    let mut sent: u64 = 0;
    let payload = [0u8; 32];
    while start.elapsed() < Duration::from_secs(secs) {
        // Catch up to the schedule, 1 ms at a time.
        let due = (start.elapsed().as_secs_f64() * f64::from(rate)) as u64;
        while sent < due {
            let port = 1024 + (sent % u64::from(rate)) as u16;
            sock.send_to(&payload, (target, port))?;
            sent += 1;
        }
        sleep(Duration::from_millis(1));
    }
    Ok(())
}

/// (CPU seconds, RSS in MiB) of a process: CPU from its process CPU-time
/// clock (every thread's run time in ns, exited threads included; /proc's
/// utime + stime are in 10 ms ticks, too coarse for a few per cent of a run
/// that uses 200 ms), RSS from /proc/PID/status.
pub(crate) fn cpu_and_rss(pid: u32) -> Result<(f64, f64)> {
    let mut clock: libc::clockid_t = 0;
    // SAFETY: both calls write only to the out-parameters given.
    let ts = unsafe {
        let rc = libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock);
        if rc != 0 {
            bail!("clock_getcpuclockid({pid}): error {rc}");
        }
        let mut ts: libc::timespec = std::mem::zeroed();
        if libc::clock_gettime(clock, &mut ts) != 0 {
            bail!(
                "clock_gettime(cpu clock of {pid}): {}",
                std::io::Error::last_os_error()
            );
        }
        ts
    };
    let cpu = ts.tv_sec as f64 + ts.tv_nsec as f64 / 1e9;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok((cpu, mib(&status, "VmRSS:")))
}

/// The MiB of the first line of `/proc` text (status, smaps) that starts
/// with `field` ("VmRSS:", "Rss:"), its value being in kB; 0 if none.
fn mib(text: &str, field: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// A process's resident memory in MiB, by what it is.
#[derive(Clone, Copy, Default)]
pub(crate) struct Rss {
    /// VmRSS: everything below, the libraries and the stacks.
    pub total: f64,
    /// RssAnon: the process's own heap and stacks.
    pub anon: f64,
    /// The resident pages of its executable: clean, shared with the page
    /// cache, and more of them the larger the binary (the kernel maps the
    /// neighbours of each page a fault reads, 64 KiB at a time).
    pub exe: f64,
    /// Its mappings of BPF ring buffers: kernel memory (each map's own
    /// figure in `osprey-agent map-memory`), mapped whole at mmap, the data
    /// pages twice so a record can be read across the wrap.
    pub rings: f64,
}

impl Rss {
    /// Read from `/proc/PID/status` and `/proc/PID/smaps`.
    pub(crate) fn of(pid: u32) -> Result<Self> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let exe = std::fs::read_link(format!("/proc/{pid}/exe"))?;
        let exe = exe.to_string_lossy();
        let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps"))?;
        let (mut in_exe, mut in_ring) = (false, false);
        let mut rss = Rss {
            total: mib(&status, "VmRSS:"),
            anon: mib(&status, "RssAnon:"),
            ..Rss::default()
        };
        for line in smaps.lines() {
            match line.split_whitespace().next() {
                Some("Rss:") if in_exe => rss.exe += mib(line, "Rss:"),
                Some("Rss:") if in_ring => rss.rings += mib(line, "Rss:"),
                Some(first) if first.contains('-') && !first.ends_with(':') => {
                    in_ring = line.ends_with("anon_inode:bpf-map");
                    in_exe = line.ends_with(&*exe);
                }
                _ => {}
            }
        }
        Ok(rss)
    }
}

/// Agent CPU and RSS while pod A opens `rate` new flows per second.
pub(crate) fn agent_cost(agent: &Path, rate: u32, secs: u64) -> Result<(f64, f64)> {
    agent_cost_with(agent, &[], rate, secs).map(|(cpu, rss)| (cpu, rss.total))
}

/// [`agent_cost`] of the agent run with `extra` flags, its RSS by kind.
pub(crate) fn agent_cost_with(
    agent: &Path,
    extra: &[&str],
    rate: u32,
    secs: u64,
) -> Result<(f64, Rss)> {
    let running = RunningAgent::start_with(agent, false, extra)?;
    // Past start-up (the first cgroup walk, the first drains).
    sleep(Duration::from_millis(2000));
    let pid = running.child.id();
    let (cpu0, _) = cpu_and_rss(pid)?;
    let t0 = std::time::Instant::now();
    let exe = std::env::current_exe()?;
    sh::run(
        Command::new("ip")
            .args(["netns", "exec", NS_A])
            .arg(exe)
            .args([
                "flowgen",
                "--target",
                IP_B,
                "--rate",
                &rate.to_string(),
                "--secs",
                &secs.to_string(),
            ]),
    )?;
    sleep(Duration::from_millis(1500)); // the last drains
    let (cpu1, _) = cpu_and_rss(pid)?;
    let wall = t0.elapsed().as_secs_f64();
    Ok(((cpu1 - cpu0) / wall * 1000.0, Rss::of(pid)?))
}

/// Agent cost per flow rate; with `against` (another agent binary, e.g. the
/// last release), both run in the same invocation, alternating rep by rep,
/// and the table gains their ratio. This build also runs with HTTP capture
/// off, the feature set of an agent from before the HTTP probe.
/// One rep of one agent at one rate: mCPU and RSS.
#[derive(Clone, Copy)]
struct Cost {
    cpu: f64,
    rss: Rss,
}

impl Cost {
    fn column(run: &[Cost], of: impl Fn(&Cost) -> f64) -> Vec<f64> {
        run.iter().map(of).collect()
    }
}

pub fn flow_rates(agent: &Path, against: Option<&Path>, reps: usize, secs: u64) -> Result<()> {
    let _pods = Pods::create()?;
    let mut agents: Vec<(&str, &Path, &[&str])> = vec![("this build", agent, &[])];
    if let Some(a) = against {
        agents.push((
            "this build, HTTP capture off",
            agent,
            &["--http-capture-bytes", "0"],
        ));
        agents.push(("--against", a, &[]));
    }
    println!(
        "\nAgent cost with many flows: UDP from pod A, one datagram per flow, medians of {reps}\n"
    );
    println!(
        "| new flows/s | agent | agent mCPU (range) | mCPU per 1k flows/s | agent RSS MiB (range) | of which anonymous | executable | BPF ring mappings |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for rate in [1_000u32, 10_000] {
        // Per agent, one cost per rep; the agents take turns within a rep.
        let mut runs: Vec<Vec<Cost>> = vec![Vec::new(); agents.len()];
        for _ in 0..reps {
            for ((_, path, extra), run) in agents.iter().zip(&mut runs) {
                let (cpu, rss) = agent_cost_with(path, extra, rate, secs)?;
                run.push(Cost { cpu, rss });
            }
        }
        for ((name, _, _), run) in agents.iter().zip(&runs) {
            let (cpu, rss) = (
                Cost::column(run, |c| c.cpu),
                Cost::column(run, |c| c.rss.total),
            );
            let c = median(cpu.clone());
            println!(
                "| {rate} | {name} | {c:.1} ({}) | {:.1} | {:.1} ({}) | {:.1} | {:.1} | {:.1} |",
                range(&cpu),
                c / (f64::from(rate) / 1000.0),
                median(rss.clone()),
                range(&rss),
                median(Cost::column(run, |c| c.rss.anon)),
                median(Cost::column(run, |c| c.rss.exe)),
                median(Cost::column(run, |c| c.rss.rings)),
            );
        }
        if let Some((base, ours)) = runs.split_last().filter(|_| against.is_some()) {
            for ((name, _, _), run) in agents.iter().zip(ours) {
                let paired = |of: fn(&Cost) -> f64| -> Vec<f64> {
                    run.iter().zip(base).map(|(x, y)| of(x) / of(y)).collect()
                };
                let (cpu, rss) = (paired(|c| c.cpu), paired(|c| c.rss.total));
                let (anon, exe) = (paired(|c| c.rss.anon), paired(|c| c.rss.exe));
                println!(
                    "| {rate} | {name} / --against, paired by rep | {:.3}× ({}) | | {:.3}× ({}) | {:.3}× ({}) | {:.3}× ({}) | |",
                    median(cpu.clone()),
                    range(&cpu),
                    median(rss.clone()),
                    range(&rss),
                    median(anon.clone()),
                    range(&anon),
                    median(exe.clone()),
                    range(&exe),
                );
            }
        }
    }
    println!(
        "\nEach second pod A sends to `rate` distinct destination ports (the same set each \
         second), so the agent holds `rate` live flow series; mCPU = agent CPU time / wall time."
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::mib;

    #[test]
    fn proc_fields_read_in_mib() {
        let status = "Name:\tosprey-agent\nVmRSS:\t    2048 kB\nRssAnon:\t     512 kB\n";
        assert_eq!(mib(status, "VmRSS:"), 2.0);
        assert_eq!(mib(status, "RssAnon:"), 0.5);
        assert_eq!(mib(status, "RssFile:"), 0.0);
        assert_eq!(mib("Rss:                 128 kB", "Rss:"), 0.125);
    }
}
