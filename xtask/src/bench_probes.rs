//! `cargo xtask bench --only probes`: what the flow programs cost the
//! traffic, side by side in one run. iperf3 TCP bulk and UDP 64-byte streams
//! from pod A to pod B, each rep in six setups (probes detached, an empty
//! cgroup_skb pair, an empty TC pair under clsact and through tcx links, the
//! agent with every probe and with the network probes only), in an order
//! that rotates every rep so drift of the machine falls on each setup alike;
//! ratios of the rate and of the busy CPU per unit of work are taken within
//! a rep and their median reported with their range. Then each
//! program's own cost from the kernel's statistics (BPF_ENABLE_STATS): the
//! flow programs' ns per run, the empty programs' ns per run under the same
//! statistics (the timing's and the hook call's own share), and, from the
//! namespaces' TCP counters, ns per packet on the wire.

use std::{
    any::Any,
    collections::HashMap,
    path::Path,
    process::{Child, Command, Stdio},
    thread::sleep,
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::{
    bench::{IP_B, NS_A, NS_B, Pods, RunningAgent, median, spawn_quiet, terminate},
    sh,
};

#[derive(Clone, Copy)]
pub(crate) enum Stream {
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

/// One iperf3 run from pod A to pod B.
pub(crate) struct Run {
    /// Gbit/s for TCP, kpps received for UDP.
    rate: f64,
    /// Busy CPU time of the machine (both cores, steal excluded) per unit of
    /// the rate's work: µs per Gbit for TCP, µs per kilopacket for UDP.
    cpu: f64,
}

/// Busy and total time of all CPUs so far, in clock ticks, from /proc/stat
/// (busy = everything but idle, iowait and steal).
fn cpu_ticks() -> Result<(f64, f64)> {
    let stat = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = stat.lines().next().context("/proc/stat is empty")?;
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    let total: f64 = v.iter().take(8).sum();
    let unbusy = v.get(3).copied().unwrap_or(0.0)
        + v.get(4).copied().unwrap_or(0.0)
        + v.get(7).copied().unwrap_or(0.0);
    Ok((total - unbusy, total))
}

pub(crate) fn iperf(stream: Stream, secs: u64) -> Result<Run> {
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
    if std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2) {
        // Client on CPU 0, server on CPU 1, in every run: where the scheduler
        // puts the two otherwise swings a run by ±10 % on two vCPUs. (On a
        // veth the receive path, hooks included, runs on the sender's CPU.)
        cmd.args(["-A", "0,1"]);
    }
    if let Stream::Udp64 = stream {
        cmd.args(["-u", "-b", "0", "-l", "64"]);
    }
    let (busy0, _) = cpu_ticks()?;
    let out = sh::output(&mut cmd).context("iperf3 client failed")?;
    let (busy1, _) = cpu_ticks()?;
    let _ = server.wait();
    let json: serde_json::Value = serde_json::from_str(&out).context("iperf3 JSON")?;
    let end = &json["end"];
    // Work done: Gbit received (TCP) or kilopackets received (UDP).
    let (rate, work) = match stream {
        Stream::TcpBulk => {
            let sum = &end["sum_received"];
            let bps = sum["bits_per_second"].as_f64().context("bps")?;
            let bytes = sum["bytes"].as_f64().context("bytes")?;
            (bps / 1e9, bytes * 8.0 / 1e9)
        }
        Stream::Udp64 => {
            let sum = &end["sum"];
            let packets = sum["packets"].as_f64().context("packets")?;
            let lost = sum["lost_packets"].as_f64().unwrap_or(0.0);
            let seconds = sum["seconds"].as_f64().context("seconds")?;
            ((packets - lost) / seconds / 1e3, (packets - lost) / 1e3)
        }
    };
    let busy_us = (busy1 - busy0) * 1e6 / clock_ticks_per_sec();
    Ok(Run {
        rate,
        cpu: busy_us / work,
    })
}

/// The unit of /proc/stat (USER_HZ).
fn clock_ticks_per_sec() -> f64 {
    unsafe extern "C" {
        fn sysconf(name: i32) -> i64;
    }
    const SC_CLK_TCK: i32 = 2;
    // SAFETY: sysconf(3) with a valid name.
    let hz = unsafe { sysconf(SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// Empty programs held by `osprey-agent hook-floor` processes, attached
/// while this lives: the cgroup_skb pair ([`EmptyHooks::cgroup`]) or a tcx
/// classifier pair ([`EmptyHooks::tcx`]).
struct EmptyHooks(Vec<Child>);

impl EmptyHooks {
    /// The empty cgroup_skb pair on the root cgroup.
    fn cgroup(agent: &Path, bpf_stats: bool) -> Result<Self> {
        let mut hooks = Self(Vec::new());
        hooks.hold(
            Command::new(agent)
                .arg("hook-floor")
                .args(bpf_stats.then_some("--bpf-stats")),
        )?;
        Ok(hooks)
    }

    /// The same floor at the device through tcx links (the kernel's TC hook
    /// since 6.6, no qdisc; what Cilium uses on such kernels): an empty
    /// classifier on A's veth egress and B's veth ingress, each held by a
    /// `hook-floor --tcx` inside its pod's namespace.
    fn tcx(agent: &Path) -> Result<Self> {
        let mut hooks = Self(Vec::new());
        for (ns, dev, ingress) in [(NS_A, "osp-bench-a", false), (NS_B, "osp-bench-b", true)] {
            hooks.hold(
                Command::new("ip")
                    .args(["netns", "exec", ns])
                    .arg(agent)
                    .args(["hook-floor", "--tcx", dev])
                    .args(ingress.then_some("--ingress")),
            )?;
        }
        Ok(hooks)
    }

    /// Starts one `hook-floor` and keeps it once it says it has attached
    /// (on an error, dropping `self` stops the ones already held).
    fn hold(&mut self, cmd: &mut Command) -> Result<()> {
        let (mut child, line) = spawn_quiet(cmd).context("starting osprey-agent hook-floor")?;
        if line.trim() != "osprey-agent: empty hooks attached" {
            let _ = child.kill();
            bail!("the empty hooks were not attached ({cmd:?}): {line}");
        }
        self.0.push(child);
        Ok(())
    }
}

impl Drop for EmptyHooks {
    fn drop(&mut self) {
        for child in &mut self.0 {
            terminate(child);
        }
    }
}

/// The same floor at the device instead of the socket: an empty classifier
/// (classic BPF `ret 0`, which the kernel runs as eBPF; direct-action, so
/// TC_ACT_OK) on pod A's veth egress and pod B's veth ingress, under a
/// clsact qdisc — what a TC-based design pays per packet before doing any
/// work, on kernels without tcx (Cilium before 6.6). Removed on drop.
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

/// How a stream runs: the setups a rep measures.
#[derive(Clone, Copy)]
enum Setup {
    Detached,
    EmptyHooks,
    EmptyTc,
    EmptyTcx,
    Osprey,
    /// The agent with `runqueue_latency = false`: the network probes only.
    OspreyNetwork,
    /// The agent on probes built with the former per-CPU flow maps
    /// (`percpu-flows`), for the before/after of the shared ones.
    OspreyPerCpuFlows,
}

const SETUPS: [Setup; 7] = [
    Setup::Detached,
    Setup::EmptyHooks,
    Setup::EmptyTc,
    Setup::EmptyTcx,
    Setup::Osprey,
    Setup::OspreyNetwork,
    Setup::OspreyPerCpuFlows,
];

/// The probes with per-CPU flow maps, built beside the default ones.
const PERCPU_FLOWS_DIR: &str = "target/bpf-percpu-flows";

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Self::Detached => "probes detached",
            Self::EmptyHooks => "empty cgroup_skb pair",
            Self::EmptyTc => "empty TC pair (clsact)",
            Self::EmptyTcx => "empty TC pair (tcx)",
            Self::Osprey => "Osprey, all probes",
            Self::OspreyNetwork => "Osprey, network probes",
            Self::OspreyPerCpuFlows => "Osprey, all probes, former per-CPU flow maps",
        }
    }

    fn osprey(self) -> bool {
        matches!(
            self,
            Self::Osprey | Self::OspreyNetwork | Self::OspreyPerCpuFlows
        )
    }

    /// Attaches the setup's programs; they stay until the value is dropped.
    /// `percpu_flows` is the probe object with the former flow maps.
    fn attach(self, agent: &Path, percpu_flows: &Path) -> Result<Option<Box<dyn Any>>> {
        let attached: Option<Box<dyn Any>> = match self {
            Self::Detached => None,
            Self::EmptyHooks => Some(Box::new(EmptyHooks::cgroup(agent, false)?)),
            Self::EmptyTc => Some(Box::new(EmptyTcHooks::attach()?)),
            Self::EmptyTcx => Some(Box::new(EmptyHooks::tcx(agent)?)),
            // Kernel statistics off, as in production.
            Self::Osprey => Some(Box::new(RunningAgent::start(agent, false)?)),
            Self::OspreyNetwork => Some(Box::new(RunningAgent::start_with(
                agent,
                false,
                &["--runqueue-latency", "false"],
            )?)),
            Self::OspreyPerCpuFlows => Some(Box::new(RunningAgent::start_with(
                agent,
                false,
                &["--probes", &percpu_flows.to_string_lossy()],
            )?)),
        };
        sleep(Duration::from_millis(300));
        Ok(attached)
    }
}

/// The value, and the median with the range of per-rep ratios, as a cell.
fn ratio_cell(ratios: &[f64]) -> String {
    let lo = ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = ratios.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{:.3} ({lo:.3}–{hi:.3})", median(ratios.to_vec()))
}

/// (runs, run time ns) of every loaded program, by name, from the kernel.
pub(crate) fn prog_stats(agent: &Path) -> Result<HashMap<String, (f64, f64)>> {
    let out =
        sh::output(Command::new(agent).arg("prog-stats")).context("osprey-agent prog-stats")?;
    let mut stats = HashMap::new();
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if let [name, runs, ns] = f[..] {
            let e = stats.entry(name.to_owned()).or_insert((0.0, 0.0));
            e.0 += runs.parse::<f64>()?;
            e.1 += ns.parse::<f64>()?;
        }
    }
    Ok(stats)
}

/// TCP segments both pods sent, from their namespaces' MIB (OutSegs counts
/// every segment of a GSO skb, as a wire would).
fn tcp_segments() -> Result<f64> {
    let mut out_segs = 0.0;
    for ns in [NS_A, NS_B] {
        let snmp =
            sh::output(Command::new("ip").args(["netns", "exec", ns, "cat", "/proc/net/snmp"]))
                .context("reading a pod's /proc/net/snmp")?;
        let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
        let (names, values) = (
            tcp.next().context("Tcp MIB")?,
            tcp.next().context("Tcp MIB")?,
        );
        let field = |want: &str| -> Result<f64> {
            let i = names
                .split_whitespace()
                .position(|n| n == want)
                .context("Tcp MIB field")?;
            Ok(values
                .split_whitespace()
                .nth(i)
                .context("Tcp MIB value")?
                .parse()?)
        };
        out_segs += field("OutSegs")?;
    }
    Ok(out_segs)
}

/// Every program the agent attaches: what all of them cost during a stream
/// (the scheduler's tracepoints fire on every context switch the stream causes).
const AGENT_PROGRAMS: [&str; 11] = [
    "flow_egress",
    "flow_ingress",
    "sched_switch",
    "sched_wakeup",
    "sched_wakeup_new",
    "sched_exit",
    "skb_drop",
    "tcp_retransmit",
    "tcp_state",
    "block_io",
    "oom_victim",
];

/// What one program did during a stream: runs per second and ns per run.
type Activity = HashMap<&'static str, (f64, f64)>;

/// ns per run of `programs` (egress, ingress) over one stream, kernel
/// statistics on; and ns per wire packet where a run is a GSO skb. Also
/// the activity of every program in `AGENT_PROGRAMS` meanwhile.
fn program_cost(
    agent: &Path,
    stream: Stream,
    programs: [&str; 2],
    secs: u64,
) -> Result<([(f64, f64); 2], Activity)> {
    let (stats0, segs0) = (prog_stats(agent)?, tcp_segments()?);
    let t0 = std::time::Instant::now();
    iperf(stream, secs)?;
    let (stats1, segs1) = (prog_stats(agent)?, tcp_segments()?);
    let wall = t0.elapsed().as_secs_f64();
    let mut activity = Activity::new();
    for name in AGENT_PROGRAMS {
        let (r0, n0) = stats0.get(name).copied().unwrap_or_default();
        if let Some((r1, n1)) = stats1.get(name).copied()
            && r1 > r0
        {
            activity.insert(name, ((r1 - r0) / wall, (n1 - n0) / (r1 - r0)));
        }
    }
    // Every segment one pod sends, the other receives: the egress and the
    // ingress program see the same wire packets.
    let wire = segs1 - segs0;
    let mut cost = [(f64::NAN, f64::NAN); 2];
    for (i, name) in programs.iter().enumerate() {
        let (r0, n0) = stats0.get(*name).copied().unwrap_or_default();
        let (r1, n1) = stats1.get(*name).copied().context("program not loaded")?;
        if r1 > r0 {
            let packets = match stream {
                Stream::TcpBulk => wire,
                Stream::Udp64 => r1 - r0, // one datagram per skb
            };
            cost[i] = ((n1 - n0) / (r1 - r0), (n1 - n0) / packets);
        }
    }
    Ok((cost, activity))
}

pub fn run(agent: &Path, reps: usize, secs: u64) -> Result<()> {
    if !sh::is_root() {
        bail!("bench loads eBPF and creates namespaces: run it as root");
    }
    let percpu_flows = crate::build::probes_with(&["percpu-flows"], PERCPU_FLOWS_DIR)?;
    let _pods = Pods::create()?;
    println!(
        "\nOsprey flow probe cost: veth between two namespaces, {reps} reps of {secs}s, setups in a rotating order; medians (ratios: median of per-rep ratios, range in brackets)\n"
    );
    println!(
        "| stream | setup | rate | ratio to detached | CPU per unit | CPU ratio to detached | ratio ÷ empty cgroup_skb pair | CPU ratio ÷ empty cgroup_skb pair |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut costs = Vec::new();
    for stream in [Stream::TcpBulk, Stream::Udp64] {
        let n = SETUPS.len();
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); n];
        let mut cpus: Vec<Vec<f64>> = vec![Vec::new(); n];
        // Per rep, each setup over detached (rate; CPU) and rate over the empty hooks.
        let mut rate_ratios: Vec<Vec<f64>> = vec![Vec::new(); n];
        let mut cpu_ratios: Vec<Vec<f64>> = vec![Vec::new(); n];
        let mut over_empty: Vec<Vec<f64>> = vec![Vec::new(); n];
        let mut cpu_over_empty: Vec<Vec<f64>> = vec![Vec::new(); n];
        // Per program (flow egress, flow ingress, empty egress, empty
        // ingress, then the flow pair on per-CPU flow maps): ns/run, ns/packet.
        let mut cost: [Vec<(f64, f64)>; 6] = Default::default();
        let mut activity: Vec<Activity> = Vec::new();
        for rep in 0..reps {
            let mut runs: Vec<Option<Run>> = (0..n).map(|_| None).collect();
            for k in 0..n {
                let i = (rep + k) % n;
                let _attached = SETUPS[i].attach(agent, &percpu_flows)?;
                runs[i] = Some(iperf(stream, secs)?);
            }
            let runs: Vec<Run> = runs.into_iter().map(Option::unwrap).collect();
            for i in 0..n {
                rates[i].push(runs[i].rate);
                cpus[i].push(runs[i].cpu);
                rate_ratios[i].push(runs[i].rate / runs[0].rate);
                cpu_ratios[i].push(runs[i].cpu / runs[0].cpu);
                over_empty[i].push(runs[i].rate / runs[1].rate);
                cpu_over_empty[i].push(runs[i].cpu / runs[1].cpu);
            }
            // Each program's own cost, statistics on: the flow programs, then
            // the empty pair under the same statistics.
            let stat_secs = secs.min(2);
            {
                let _agent = RunningAgent::start(agent, true)?;
                sleep(Duration::from_millis(300));
                let (c, a) =
                    program_cost(agent, stream, ["flow_egress", "flow_ingress"], stat_secs)?;
                cost[0].push(c[0]);
                cost[1].push(c[1]);
                activity.push(a);
            }
            {
                let _hooks = EmptyHooks::cgroup(agent, true)?;
                sleep(Duration::from_millis(300));
                let (c, _) =
                    program_cost(agent, stream, ["noop_egress", "noop_ingress"], stat_secs)?;
                cost[2].push(c[0]);
                cost[3].push(c[1]);
            }
            {
                let probes = percpu_flows.to_string_lossy();
                let _agent = RunningAgent::start_with(agent, true, &["--probes", &probes])?;
                sleep(Duration::from_millis(300));
                let (c, _) =
                    program_cost(agent, stream, ["flow_egress", "flow_ingress"], stat_secs)?;
                cost[4].push(c[0]);
                cost[5].push(c[1]);
            }
        }
        for (i, setup) in SETUPS.iter().enumerate() {
            let osprey = setup.osprey();
            let over = |r: &[f64]| if osprey { ratio_cell(r) } else { String::new() };
            println!(
                "| {} | {} | {:.2} | {} | {:.1} | {} | {} | {} |",
                stream.name(),
                setup.name(),
                median(rates[i].clone()),
                ratio_cell(&rate_ratios[i]),
                median(cpus[i].clone()),
                ratio_cell(&cpu_ratios[i]),
                over(&over_empty[i]),
                over(&cpu_over_empty[i]),
            );
        }
        costs.push((stream, cost, activity));
    }
    println!(
        "\nrate: Gbit/s (TCP) or kpps received (UDP). ratio = setup / detached within a rep (1.000 = no \
         cost), median of the reps with their range. CPU per unit: busy CPU time of both cores (/proc/stat, \
         steal excluded) per Gbit (TCP) or per 1000 packets (UDP), in µs; a CPU ratio above 1 is the extra \
         work per packet the setup adds, which a CPU-bound stream loses in rate, without the VM's noise in \
         the rate itself. The empty cgroup_skb pair is two cgroup_skb programs that only return \
         (`osprey-agent hook-floor`), the floor any cgroup_skb design pays; the empty TC pairs are an empty \
         classifier on A's veth egress and B's veth ingress, under a clsact qdisc or through tcx links, the \
         floor a TC design pays. \"Network probes\" is the agent with `runqueue_latency = false`; the \
         last two columns set Osprey beside the empty cgroup_skb pair: what the programs' work costs \
         beyond the hook they sit on."
    );
    println!(
        "\nEach program's own cost, kernel statistics on (medians of {reps}):\n\n\
         | stream | program | ns/run | empty program ns/run | ns/run above empty | wire packets per run | ns/packet above empty |\n\
         |---|---|---|---|---|---|---|"
    );
    for (stream, cost, _) in &costs {
        let programs = [
            (0, "flow_egress"),
            (1, "flow_ingress"),
            (4, "flow_egress (per-CPU flow maps)"),
            (5, "flow_ingress (per-CPU flow maps)"),
        ];
        for (i, program) in programs {
            let run = median(cost[i].iter().map(|c| c.0).collect());
            let per_packet = median(cost[i].iter().map(|c| c.1).collect());
            let empty = median(cost[2 + i % 2].iter().map(|c| c.0).collect());
            let packets = run / per_packet;
            println!(
                "| {} | {program} | {run:.0} | {empty:.0} | {:.0} | {packets:.1} | {:.1} |",
                stream.name(),
                run - empty,
                (run - empty) / packets,
            );
        }
    }
    println!(
        "\nns/run = Δrun_time_ns / Δrun_cnt from the kernel; an empty program's ns/run is what the \
         statistics' two clock reads and the call cost around any run, so \"above empty\" is the \
         program's own work. A TCP run handles one GSO skb of several wire segments (counted by the \
         namespaces' TCP OutSegs); a UDP 64 B run is one packet."
    );
    println!(
        "\nEvery attached program during the stream, kernel statistics on (medians of {reps}; \
         CPU ms/s = runs/s × ns/run, the statistics' own ~30 ns a run included):\n\n\
         | stream | program | runs/s | ns/run | CPU ms/s |\n|---|---|---|---|---|"
    );
    for (stream, _, activity) in &costs {
        let mut total = 0.0;
        for name in AGENT_PROGRAMS {
            let seen: Vec<&(f64, f64)> = activity.iter().filter_map(|a| a.get(name)).collect();
            // Programs that ran in at least half the reps.
            if seen.len() * 2 < activity.len().max(1) {
                continue;
            }
            let rate = median(seen.iter().map(|a| a.0).collect());
            let ns = median(seen.iter().map(|a| a.1).collect());
            total += rate * ns / 1e6;
            println!(
                "| {} | {name} | {rate:.0} | {ns:.0} | {:.2} |",
                stream.name(),
                rate * ns / 1e6
            );
        }
        println!("| {} | all | | | {total:.2} |", stream.name());
    }
    // The same programs without traffic: warm caches, a stream of one flow.
    println!(
        "\nEach program on built packets, `osprey-agent prog-bench` (BPF_PROG_TEST_RUN, 1M runs, fastest of 7 rounds):\n"
    );
    print!(
        "{}",
        sh::output(Command::new(agent).arg("prog-bench")).context("osprey-agent prog-bench")?
    );
    Ok(())
}
