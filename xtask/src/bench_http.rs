//! `cargo xtask bench --only http`: what reading HTTP from the wire costs.
//! wrk (Debian) in pod A drives keep-alive requests with small responses at
//! a minimal HTTP/1.1 server in pod B (`xtask httpd`), side by side in one
//! run: probes detached, the agent with HTTP parsing off
//! (`--http-capture-bytes 0`), and with it on. Rounds interleave the three;
//! medians are reported.
//!
//! Two layouts: `shared` (everything on every CPU, the load saturating
//! them, so the agent's own CPU comes out of the workload's) and `pinned`
//! (wrk and the server on CPU 1, the agent on CPU 0: what the probes cost
//! the workload in its own context, the agent's CPU reported beside it).
//!
//! - requests/s and p99 latency, from wrk;
//! - kernel ns per request: the flow programs' run time (kernel BPF stats,
//!   in a separate pass with stats on, pinned so the agent does not preempt
//!   a program mid-run and inflate its time) over the requests wrk
//!   completed. Both ends are on this node, so each request is seen twice
//!   (four HTTP starts); per side is half of it;
//! - agent CPU per 1k requests/s, from /proc.
//!
//! With `--against <agent>`, that agent with HTTP on is a fourth setup in
//! every round, and its CPU per request is paired round by round with this
//! build's.

use std::{
    io::{BufRead, BufReader, Write},
    net::{TcpListener, TcpStream},
    path::Path,
    process::{Child, Command, Stdio},
    thread::sleep,
    time::Duration,
};

use anyhow::{Context, Result, bail};

use crate::{
    bench::{IP_B, NS_A, NS_B, Pods, RunningAgent, cpu_and_rss, gauge, median, range, terminate},
    bench_probes::{Stream, iperf, prog_stats},
    sh,
};

const PORT: u16 = 8080;
const CONNECTIONS: &str = "8";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Setup {
    Detached,
    HttpOff,
    HttpOn,
    /// The `--against` agent, HTTP on.
    AgainstOn,
}

impl Setup {
    fn name(self) -> &'static str {
        match self {
            Setup::Detached => "probes detached",
            Setup::HttpOff => "agent, HTTP off",
            Setup::HttpOn => "agent, HTTP on",
            Setup::AgainstOn => "--against agent, HTTP on",
        }
    }

    fn start(self, agent: &Path, bpf_stats: bool) -> Result<Option<RunningAgent>> {
        self.start_against(agent, None, bpf_stats)
    }

    fn start_against(
        self,
        agent: &Path,
        against: Option<&Path>,
        bpf_stats: bool,
    ) -> Result<Option<RunningAgent>> {
        Ok(match self {
            Setup::Detached => None,
            Setup::HttpOff => Some(RunningAgent::start_with(
                agent,
                bpf_stats,
                &["--http-capture-bytes", "0"],
            )?),
            Setup::HttpOn => Some(RunningAgent::start_with(agent, bpf_stats, &[])?),
            Setup::AgainstOn => Some(RunningAgent::start_with(
                against.context("no --against agent")?,
                bpf_stats,
                &[],
            )?),
        })
    }
}

/// One wrk run.
struct Load {
    requests: f64,
    per_sec: f64,
    p99_ms: f64,
}

/// Where the load and the agent run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    Shared,
    Pinned,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::Shared => "shared CPUs",
            Layout::Pinned => "pinned (load on CPU 1, agent on CPU 0)",
        }
    }

    /// The CPUs of the load and of the agent (`taskset` lists).
    fn cpus(self) -> (&'static str, &'static str) {
        match self {
            Layout::Shared => ("0-1023", "0-1023"),
            Layout::Pinned => ("1", "0"),
        }
    }
}

/// Sets the CPUs of every thread of `pid` (threads started later inherit it).
fn pin(pid: u32, cpus: &str) -> Result<()> {
    sh::output(
        Command::new("taskset")
            .args(["-a", "-p", "-c", cpus])
            .arg(pid.to_string()),
    )
    .map(drop)
    .with_context(|| format!("taskset {cpus} {pid}"))
}

fn wrk(secs: u64, cpus: &str) -> Result<Load> {
    let out = sh::output(Command::new("taskset").args(["-c", cpus, "ip"]).args([
        "netns",
        "exec",
        NS_A,
        "wrk",
        "-t1",
        "-c",
        CONNECTIONS,
        "-d",
        &format!("{secs}s"),
        "--latency",
        &format!("http://{IP_B}:{PORT}/"),
    ]))
    .context("wrk (cargo xtask setup installs it)")?;
    let field = |prefix: &str| -> Option<String> {
        out.lines()
            .find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_owned()))
    };
    let per_sec: f64 = field("Requests/sec:")
        .context("wrk: no Requests/sec")?
        .parse()?;
    let requests: f64 = out
        .lines()
        .find_map(|l| {
            l.split_once(" requests in ")
                .map(|(n, _)| n.trim().to_owned())
        })
        .context("wrk: no request count")?
        .parse()?;
    let p99 = field("99%").context("wrk: no 99th percentile")?;
    let p99_ms = match p99 {
        v if v.ends_with("us") => v.trim_end_matches("us").parse::<f64>()? / 1e3,
        v if v.ends_with("ms") => v.trim_end_matches("ms").parse::<f64>()?,
        v if v.ends_with('s') => v.trim_end_matches('s').parse::<f64>()? * 1e3,
        v => bail!("wrk: unreadable latency {v}"),
    };
    Ok(Load {
        requests,
        per_sec,
        p99_ms,
    })
}

/// The flow programs' total runs and run time (ns), from the kernel's stats.
fn flow_programs(agent: &Path) -> Result<(f64, f64)> {
    Ok(prog_stats(agent)?
        .into_iter()
        .filter(|(name, _)| name.starts_with("flow_"))
        .fold((0.0, 0.0), |(r, n), (_, (runs, ns))| (r + runs, n + ns)))
}

fn flow_program_ns(agent: &Path) -> Result<f64> {
    Ok(flow_programs(agent)?.1)
}

pub fn run(agent: &Path, against: Option<&Path>, reps: usize, secs: u64) -> Result<()> {
    let which = Command::new("wrk")
        .arg("--version")
        .stdout(Stdio::null())
        .status();
    if which.is_err() {
        bail!("wrk is not installed (cargo xtask setup installs it)");
    }
    let _pods = Pods::create()?;
    let mut server = Server::start()?;
    let setups = setups(against);
    let layouts = if std::thread::available_parallelism()?.get() >= 2 {
        vec![Layout::Shared, Layout::Pinned]
    } else {
        vec![Layout::Shared]
    };
    let mut tables = Vec::new();
    for &layout in &layouts {
        tables.push((
            layout,
            measure(agent, against, &server, layout, reps, secs)?,
        ));
    }
    // Kernel time per request, with the kernel's stats on (they cost a
    // little themselves, equally in both).
    let kernel_layout = *layouts.last().expect("a layout");
    let (load_cpus, agent_cpus) = kernel_layout.cpus();
    pin(server.0.id(), load_cpus)?;
    let mut kernel_ns = vec![Vec::new(); setups.len()];
    for _ in 0..reps {
        for (i, setup) in [Setup::HttpOff, Setup::HttpOn].iter().enumerate() {
            let running = setup.start(agent, true)?;
            if let Some(a) = &running {
                pin(a.child.id(), agent_cpus)?;
            }
            sleep(Duration::from_millis(800));
            let before = flow_program_ns(agent)?;
            let load = wrk(secs, load_cpus)?;
            let after = flow_program_ns(agent)?;
            kernel_ns[i + 1].push((after - before) / load.requests);
        }
    }
    pin(server.0.id(), Layout::Shared.cpus().0)?;
    // What the test for an HTTP start costs packets that are not HTTP: a
    // TCP bulk stream (iperf3), ns per program run, HTTP off and on.
    let mut bulk_ns = vec![Vec::new(); 3];
    for _ in 0..reps {
        for (i, setup) in [Setup::HttpOff, Setup::HttpOn].iter().enumerate() {
            let _running = setup.start(agent, true)?;
            sleep(Duration::from_millis(800));
            let (r0, n0) = flow_programs(agent)?;
            iperf(Stream::TcpBulk, secs)?;
            let (r1, n1) = flow_programs(agent)?;
            bulk_ns[i + 1].push((n1 - n0) / (r1 - r0));
        }
    }
    server.stop();

    let kernel = |i: usize| median(kernel_ns[i].clone());
    println!();
    println!(
        "HTTP read from the wire ({CONNECTIONS} keep-alive connections, 2-byte responses, {reps} rounds of {secs} s; medians)"
    );
    for (layout, t) in &tables {
        println!();
        println!("{}:", layout.name());
        println!();
        println!(
            "| | requests/s | vs detached | p99 latency | kernel ns / request | agent mCPU per 1k req/s |"
        );
        println!("|---|---|---|---|---|---|");
        for (i, setup) in setups.iter().enumerate() {
            let cell = |v: &Vec<f64>, f: &dyn Fn(f64) -> String| {
                if v.is_empty() {
                    "–".to_owned()
                } else {
                    f(median(v.clone()))
                }
            };
            println!(
                "| {} | {:.0} | {:.3} | {:.3} ms | {} | {} |",
                setup.name(),
                median(t.rate[i].clone()),
                median(t.rate[i].clone()) / median(t.rate[0].clone()),
                median(t.p99[i].clone()),
                cell(&kernel_ns[i], &|v| format!("{v:.0}")),
                cell(&t.mcpu[i], &|v| format!("{v:.1}")),
            );
        }
        println!();
        println!(
            "HTTP parsing ({}): requests/s on/off {:.3} (target ≥ 0.98); p99 {:+.3} ms; agent {:+.1} mCPU per 1k req/s over HTTP off, {:.1} in all (target ≤ 10)",
            layout.name(),
            median(t.rate[2].clone()) / median(t.rate[1].clone()),
            median(t.p99[2].clone()) - median(t.p99[1].clone()),
            median(t.mcpu[2].clone()) - median(t.mcpu[1].clone()),
            median(t.mcpu[2].clone()),
        );
        if against.is_some() {
            let (on, base) = (&t.mcpu[2], &t.mcpu[3]);
            let paired: Vec<f64> = on.iter().zip(base).map(|(a, b)| a / b).collect();
            println!(
                "HTTP on, this build / --against ({}): agent mCPU per 1k req/s {:.3}× (paired by round, {}), requests/s {:.3}×",
                layout.name(),
                median(paired.clone()),
                range(&paired),
                median(t.rate[2].clone()) / median(t.rate[3].clone()),
            );
        }
        let (lost, requests) = t
            .lost
            .iter()
            .fold((0.0, 0.0), |(l, r), (a, b)| (l + a, r + b));
        println!(
            "HTTP records lost to a full ring ({}): {lost:.0} over {reps} rounds, of about {:.0} (four starts per request)",
            layout.name(),
            requests * 4.0,
        );
    }
    let extra = kernel(2) - kernel(1);
    println!();
    println!(
        "Kernel ({}): {:+.0} ns per request with both ends on this node (four starts), {:+.0} ns per request seen from one side (target ≤ 200)",
        kernel_layout.name(),
        extra,
        extra / 2.0,
    );
    println!(
        "Not HTTP (iperf3 TCP bulk, default offloads): flow programs {:.0} ns per run with HTTP off, {:.0} with it on ({:+.0} ns per socket-layer segment for the test of an HTTP start)",
        median(bulk_ns[1].clone()),
        median(bulk_ns[2].clone()),
        median(bulk_ns[2].clone()) - median(bulk_ns[1].clone()),
    );
    Ok(())
}

/// requests/s, p99 and agent mCPU per 1k requests/s, per setup; and the
/// HTTP records the ring had no room for, with HTTP on.
struct Table {
    rate: Vec<Vec<f64>>,
    p99: Vec<Vec<f64>>,
    mcpu: Vec<Vec<f64>>,
    /// (records lost to a full ring, requests) per round.
    lost: Vec<(f64, f64)>,
}

/// What the kernel counted as lost to a full HTTP ring.
const HTTP_RING_FULL: &str = "osprey_probe_lost_events_total{probe=\"http\"}";

/// Detached, HTTP off, HTTP on, and the `--against` agent if given.
fn setups(against: Option<&Path>) -> Vec<Setup> {
    let mut setups = vec![Setup::Detached, Setup::HttpOff, Setup::HttpOn];
    if against.is_some() {
        setups.push(Setup::AgainstOn);
    }
    setups
}

/// `reps` interleaved rounds of the setups in one layout.
fn measure(
    agent: &Path,
    against: Option<&Path>,
    server: &Server,
    layout: Layout,
    reps: usize,
    secs: u64,
) -> Result<Table> {
    let setups = setups(against);
    let (load_cpus, agent_cpus) = layout.cpus();
    pin(server.0.id(), load_cpus)?;
    let mut t = Table {
        rate: vec![Vec::new(); setups.len()],
        p99: vec![Vec::new(); setups.len()],
        mcpu: vec![Vec::new(); setups.len()],
        lost: Vec::new(),
    };
    for round in 0..reps {
        for (i, setup) in setups.iter().enumerate() {
            let running = setup.start_against(agent, against, false)?;
            if let Some(a) = &running {
                pin(a.child.id(), agent_cpus)?;
            }
            sleep(Duration::from_millis(800));
            let before = match &running {
                Some(a) => cpu_and_rss(a.child.id())?.0,
                None => 0.0,
            };
            let load = wrk(secs, load_cpus)?;
            if let Some(a) = &running {
                let cpu = cpu_and_rss(a.child.id())?.0 - before;
                // mCPU per 1k requests/s = CPU-s per second / (k requests per second) × 1000.
                t.mcpu[i].push(cpu / secs as f64 / (load.per_sec / 1e3) * 1e3);
                if *setup == Setup::HttpOn {
                    // After a drain interval, so the last one is in.
                    sleep(Duration::from_millis(1200));
                    t.lost.push((gauge(a, HTTP_RING_FULL), load.requests));
                }
            }
            eprintln!(
                "xtask: http {} round {} {:>16}: {:.0} req/s, p99 {:.3} ms",
                layout.name(),
                round + 1,
                setup.name(),
                load.per_sec,
                load.p99_ms
            );
            t.rate[i].push(load.per_sec);
            t.p99[i].push(load.p99_ms);
        }
    }
    Ok(t)
}

/// `xtask httpd` inside pod B.
struct Server(Child);

impl Server {
    fn start() -> Result<Self> {
        let exe = std::env::current_exe()?;
        let child = Command::new("ip")
            .args(["netns", "exec", NS_B])
            .arg(exe)
            .args(["httpd", "--listen", &format!("{IP_B}:{PORT}")])
            .spawn()
            .context("starting xtask httpd in pod B")?;
        sleep(Duration::from_millis(500));
        Ok(Self(child))
    }

    fn stop(&mut self) {
        terminate(&mut self.0);
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `xtask httpd`: a minimal keep-alive HTTP/1.1 server (a thread per
/// connection) answering every request with a 2-byte body.
pub fn httpd(listen: &str) -> Result<()> {
    let listener = TcpListener::bind(listen).with_context(|| format!("binding {listen}"))?;
    for conn in listener.incoming() {
        let conn = conn?;
        std::thread::spawn(move || serve(conn));
    }
    Ok(())
}

fn serve(conn: TcpStream) -> std::io::Result<()> {
    conn.set_nodelay(true)?;
    let mut writer = conn.try_clone()?;
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    loop {
        // The request line and headers, up to the blank line (no bodies).
        loop {
            line.clear();
            if reader.read_line(&mut line)? == 0 {
                return Ok(());
            }
            if line == "\r\n" {
                break;
            }
        }
        writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")?;
    }
}
