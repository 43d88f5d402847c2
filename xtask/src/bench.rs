//! `cargo xtask bench`: the flow probe's cost, measured side by side in one
//! run. Two network namespaces joined by a veth pair (default offloads, as on
//! a node); iperf3 TCP bulk and UDP 64-byte streams with the agent stopped
//! (baseline) and running, alternated `reps` times; medians and ratios; and
//! the kernel's own per-program statistics (kernel.bpf_stats_enabled).

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    thread::sleep,
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::sh;

/// The programs whose own cost the bench reports.
const PROGRAMS: [&str; 2] = ["flow_egress", "flow_ingress"];

const NS_A: &str = "osprey-bench-a";
const NS_B: &str = "osprey-bench-b";
const IP_A: &str = "10.250.0.1";
const IP_B: &str = "10.250.0.2";

struct Pods;

impl Pods {
    fn create() -> Result<Self> {
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

#[derive(Clone, Copy)]
enum Stream {
    TcpBulk,
    Udp64,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Self::TcpBulk => "TCP bulk throughput (Gbit/s)",
            Self::Udp64 => "UDP 64 B packets (kpps)",
        }
    }
}

/// One iperf3 run from pod A to pod B; Gbit/s for TCP, kpps received for UDP.
fn iperf(stream: Stream, secs: u64) -> Result<f64> {
    let mut server = Command::new("ip")
        .args(["netns", "exec", NS_B, "iperf3", "-s", "-1", "-B", IP_B])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting iperf3 server")?;
    sleep(Duration::from_millis(300));
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        NS_A,
        "iperf3",
        "-J",
        "-c",
        IP_B,
        "-t",
        &secs.to_string(),
    ]);
    if let Stream::Udp64 = stream {
        cmd.args(["-u", "-b", "0", "-l", "64"]);
    }
    let out = sh::output(&mut cmd).context("iperf3 client failed")?;
    let _ = server.wait();
    let json: serde_json::Value = serde_json::from_str(&out).context("iperf3 JSON")?;
    let end = &json["end"];
    Ok(match stream {
        Stream::TcpBulk => {
            end["sum_received"]["bits_per_second"]
                .as_f64()
                .context("bps")?
                / 1e9
        }
        Stream::Udp64 => {
            let sum = &end["sum"];
            let packets = sum["packets"].as_f64().context("packets")?;
            let lost = sum["lost_packets"].as_f64().unwrap_or(0.0);
            let seconds = sum["seconds"].as_f64().context("seconds")?;
            (packets - lost) / seconds / 1e3
        }
    })
}

/// `osprey-agent hook-floor`: the empty cgroup_skb pair, attached while this lives.
struct EmptyHooks(Child);

impl EmptyHooks {
    fn attach(agent: &Path) -> Result<Self> {
        let mut child = Command::new(agent)
            .arg("hook-floor")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .context("starting osprey-agent hook-floor")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
        if line.trim() != "osprey-agent: empty hooks attached" {
            let _ = child.kill();
            bail!("the empty hooks were not attached: {line}");
        }
        Ok(Self(child))
    }
}

impl Drop for EmptyHooks {
    fn drop(&mut self) {
        terminate(&mut self.0);
    }
}

/// The same floor at the device instead of the socket: an empty classifier
/// (classic BPF `ret 0`, which the kernel runs as eBPF; direct-action, so
/// TC_ACT_OK) on pod A's veth egress and pod B's veth ingress, under a
/// clsact qdisc — what a TC-based design (Cilium's, Hubble's) pays per packet
/// before doing any work. Removed on drop.
struct EmptyTcHooks;

impl EmptyTcHooks {
    fn attach() -> Result<Self> {
        let hooks = Self;
        for (ns, dev, dir) in [
            (NS_A, "osp-bench-a", "egress"),
            (NS_B, "osp-bench-b", "ingress"),
        ] {
            let tc = |args: &[&str]| {
                sh::run(
                    Command::new("ip")
                        .args(["netns", "exec", ns, "tc"])
                        .args(args),
                )
            };
            tc(&["qdisc", "add", "dev", dev, "clsact"])?;
            tc(&[
                "filter",
                "add",
                "dev",
                dev,
                dir,
                "bpf",
                "da",
                "bytecode",
                "1,6 0 0 0,",
            ])?;
        }
        Ok(hooks)
    }
}

impl Drop for EmptyTcHooks {
    fn drop(&mut self) {
        for (ns, dev) in [(NS_A, "osp-bench-a"), (NS_B, "osp-bench-b")] {
            let _ = sh::succeeds(Command::new("ip").args([
                "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "clsact",
            ]));
        }
    }
}

/// SIGTERM (a clean detach), then wait.
fn terminate(child: &mut Child) {
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
    fn start(agent: &Path, bpf_stats: bool) -> Result<Self> {
        Self::start_with(agent, bpf_stats, &[])
    }

    pub(crate) fn start_with(agent: &Path, bpf_stats: bool, extra: &[&str]) -> Result<Self> {
        let mut child = Command::new(agent)
            .args(["--listen", "127.0.0.1:0", "--drain-interval-ms", "1000"])
            .args(["--bpf-stats", if bpf_stats { "true" } else { "false" }])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .context("starting the agent")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line)?;
        let Some(url) = line.trim().strip_prefix("osprey-agent: serving ") else {
            bail!("the agent did not start: {line}");
        };
        Ok(Self {
            url: url.to_owned(),
            child,
        })
    }

    /// (runs, run time ns) of each program in `PROGRAMS`, from the agent's metrics.
    fn program_stats(&self) -> Result<Vec<(f64, f64)>> {
        let text = ureq::get(&self.url).call()?.into_string()?;
        let value = |metric: &str, program: &str| -> f64 {
            let prefix = format!("{metric}{{program=\"{program}\"}} ");
            text.lines()
                .find_map(|l| l.strip_prefix(&prefix)?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        Ok(PROGRAMS
            .iter()
            .map(|p| {
                (
                    value("osprey_bpf_program_runs_total", p),
                    value("osprey_bpf_program_run_time_nanoseconds_total", p),
                )
            })
            .collect())
    }
}

impl Drop for RunningAgent {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
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

pub fn run(agent: &Path, reps: usize, secs: u64) -> Result<()> {
    if !sh::is_root() {
        bail!("bench loads eBPF and creates namespaces: run it as root");
    }
    let _pods = Pods::create()?;
    println!(
        "\nOsprey flow probe cost: veth between two namespaces, {reps} alternating reps of {secs}s, medians\n"
    );
    println!(
        "| stream | probes detached | empty hook pair | empty TC pair | probes attached | ratio: empty hooks | ratio: empty TC | ratio: Osprey | flow_egress ns/run | flow_ingress ns/run |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for stream in [Stream::TcpBulk, Stream::Udp64] {
        let (mut base, mut empty, mut with) = (Vec::new(), Vec::new(), Vec::new());
        let mut empty_tc = Vec::new();
        let mut ns_per_run: Vec<Vec<f64>> = vec![Vec::new(); PROGRAMS.len()];
        for _ in 0..reps {
            base.push(iperf(stream, secs)?);
            {
                // The same hooks with empty programs: what the hook alone costs.
                let _hooks = EmptyHooks::attach(agent)?;
                sleep(Duration::from_millis(300));
                empty.push(iperf(stream, secs)?);
            }
            {
                let _hooks = EmptyTcHooks::attach()?;
                sleep(Duration::from_millis(300));
                empty_tc.push(iperf(stream, secs)?);
            }
            {
                // Throughput with the probes attached, kernel stats off (as in production).
                let _agent = RunningAgent::start(agent, false)?;
                sleep(Duration::from_millis(300));
                with.push(iperf(stream, secs)?);
            }
            // A separate leg with kernel stats on, for the probe's own ns per run.
            let agent = RunningAgent::start(agent, true)?;
            sleep(Duration::from_millis(300));
            let before = agent.program_stats()?;
            iperf(stream, secs.min(2))?;
            sleep(Duration::from_millis(1200)); // the agent refreshes stats each drain
            let after = agent.program_stats()?;
            for (i, ((runs0, ns0), (runs1, ns1))) in before.iter().zip(&after).enumerate() {
                if runs1 > runs0 {
                    ns_per_run[i].push((ns1 - ns0) / (runs1 - runs0));
                }
            }
        }
        let (b, e, w) = (median(base), median(empty), median(with));
        let t = median(empty_tc);
        let ns: Vec<String> = ns_per_run
            .into_iter()
            .map(|v| {
                if v.is_empty() {
                    "-".to_owned()
                } else {
                    format!("{:.0}", median(v))
                }
            })
            .collect();
        println!(
            "| {} | {b:.2} | {e:.2} | {t:.2} | {w:.2} | {:.3} | {:.3} | {:.3} | {} |",
            stream.name(),
            e / b,
            t / b,
            w / b,
            ns.join(" | ")
        );
    }
    println!(
        "\nratio = with / detached (1.000 = no cost); the empty hook pair is two cgroup_skb programs \
         that only return (`osprey-agent hook-floor`), the floor any cgroup_skb design pays; the empty TC pair is an empty classifier on A's veth egress and B's \
         veth ingress (clsact), the floor a TC design pays. ns/run = Δrun_time_ns / Δrun_cnt of each \
         program from the kernel's bpf stats (which add ~30 ns of their own to each run); one run handles one skb (a TCP GSO \
         skb carries up to ~45 segments; a UDP 64 B skb is one packet)."
    );
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

/// (CPU seconds, peak RSS in MiB) of a process, from /proc.
pub(crate) fn cpu_and_rss(pid: u32) -> Result<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("stat")?
        .1
        .split_whitespace()
        .collect();
    // utime and stime are fields 14 and 15 (1-based); after ")" index 11 and 12.
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let rss_kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0.0);
    Ok((ticks / 100.0, rss_kib / 1024.0))
}

/// Agent CPU and RSS while pod A opens `rate` new flows per second.
fn agent_cost(agent: &Path, rate: u32, secs: u64) -> Result<(f64, f64)> {
    let running = RunningAgent::start(agent, false)?;
    sleep(Duration::from_millis(500));
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
    let (cpu1, rss) = cpu_and_rss(pid)?;
    let wall = t0.elapsed().as_secs_f64();
    Ok(((cpu1 - cpu0) / wall * 1000.0, rss))
}

pub fn flow_rates(agent: &Path, reps: usize, secs: u64) -> Result<()> {
    let _pods = Pods::create()?;
    println!(
        "\nAgent cost with many flows: UDP from pod A, one datagram per flow, medians of {reps}\n"
    );
    println!("| new flows/s | agent mCPU | mCPU per 1k flows/s | agent RSS (MiB) |");
    println!("|---|---|---|---|");
    for rate in [1_000u32, 10_000] {
        let (mut cpu, mut rss) = (Vec::new(), Vec::new());
        for _ in 0..reps {
            let (c, r) = agent_cost(agent, rate, secs)?;
            cpu.push(c);
            rss.push(r);
        }
        let (c, r) = (median(cpu), median(rss));
        println!(
            "| {rate} | {c:.1} | {:.1} | {r:.1} |",
            c / (f64::from(rate) / 1000.0)
        );
    }
    println!(
        "\nEach second pod A sends to `rate` distinct destination ports (the same set each \
         second), so the agent holds `rate` live flow series; mCPU = agent CPU time / wall time."
    );
    Ok(())
}
