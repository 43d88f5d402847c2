//! `cargo xtask bench`, scrape part: what one scrape of the node and 100
//! cgroups costs the agent, against Debian's prometheus-node-exporter
//! scraping the same node, side by side in one run.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};

use crate::bench::{Rss, RunningAgent, cpu_and_rss, median, range};

const CGROUPS: usize = 100;
const SCRAPES: usize = 100;
const NODE_EXPORTER: &str = "/usr/bin/prometheus-node-exporter";
/// node-exporter's collectors that cover the agent's node_* families.
const SAME_COLLECTORS: [&str; 10] = [
    "--collector.disable-defaults",
    "--collector.cpu",
    "--collector.loadavg",
    "--collector.meminfo",
    "--collector.netdev",
    "--collector.pressure",
    "--collector.filesystem",
    "--collector.diskstats",
    "--collector.netstat",
    "--collector.sockstat",
];

/// 100 cgroups in every hierarchy the agent reads, a sleeping process in each.
struct Cgroups {
    dirs: Vec<PathBuf>,
    sleepers: Vec<Child>,
}

impl Cgroups {
    fn create() -> Result<Self> {
        let v1 = Path::new("/sys/fs/cgroup/cpuacct/cpuacct.usage").exists();
        let roots: Vec<&str> = if v1 {
            vec!["cpuacct", "cpu", "memory", "blkio", "unified"]
        } else {
            vec![""]
        };
        let (mut dirs, mut sleepers) = (Vec::new(), Vec::new());
        for i in 0..CGROUPS {
            let mine: Vec<PathBuf> = roots
                .iter()
                .map(|r| {
                    Path::new("/sys/fs/cgroup")
                        .join(r)
                        .join(format!("osprey-bench-{i}"))
                })
                .collect();
            let mut join = String::new();
            for d in &mine {
                std::fs::create_dir_all(d).with_context(|| format!("mkdir {}", d.display()))?;
                join.push_str(&format!("echo $$ > {}/cgroup.procs; ", d.display()));
            }
            sleepers.push(
                Command::new("sh")
                    .arg("-c")
                    .arg(format!("{join}exec sleep 600"))
                    .spawn()?,
            );
            dirs.extend(mine);
        }
        Ok(Self { dirs, sleepers })
    }
}

impl Drop for Cgroups {
    fn drop(&mut self) {
        for s in &mut self.sleepers {
            let _ = s.kill();
            let _ = s.wait();
        }
        for d in &self.dirs {
            let _ = std::fs::remove_dir(d);
        }
    }
}

struct Target {
    role: Role,
    pid: u32,
    url: String,
}

/// What a target stands for in the ratios printed under the table.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// This build, node + cgroups.
    Full,
    /// This build with its cgroup files reopened per scrape.
    Reopen,
    /// This build, node collectors only.
    NodeOnly,
    /// node-exporter with the agent's node collectors.
    ExporterSame,
    /// node-exporter with its defaults.
    ExporterDefault,
    /// This build with HTTP capture off (the baseline's feature set).
    NoHttp,
    /// The `--against` agent.
    Against,
}

/// Where the target of `role` is in `targets`.
fn at(targets: &[(&str, Target)], role: Role) -> usize {
    targets
        .iter()
        .position(|(_, t)| t.role == role)
        .expect("every role has a target")
}

/// One target's figures, rep by rep.
#[derive(Clone, Default)]
struct Run {
    /// Median wall ms per scrape.
    wall: Vec<f64>,
    /// CPU ms per scrape.
    cpu: Vec<f64>,
    /// RSS MiB, in all, anonymous and the executable's.
    rss: Vec<f64>,
    anon: Vec<f64>,
    exe: Vec<f64>,
    /// Body bytes.
    bytes: usize,
}

/// (median wall ms per scrape, CPU ms per scrape, RSS, body bytes).
fn measure(t: &Target) -> Result<(f64, f64, Rss, usize)> {
    // One keep-alive connection: the scrapes must not open new flows that
    // the agent would then count and expose.
    let http = ureq::Agent::new();
    let get = || -> Result<String> { Ok(http.get(&t.url).call()?.into_string()?) };
    let body = get()?; // warm up
    let (cpu0, _) = cpu_and_rss(t.pid)?;
    let mut walls = Vec::with_capacity(SCRAPES);
    for _ in 0..SCRAPES {
        let t0 = Instant::now();
        get()?;
        walls.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let (cpu1, _) = cpu_and_rss(t.pid)?;
    Ok((
        median(walls),
        (cpu1 - cpu0) * 1e3 / SCRAPES as f64,
        Rss::of(t.pid)?,
        body.len(),
    ))
}

/// The kernel's slab memory (/proc/meminfo `Slab`), KiB.
fn slab_kib() -> Result<f64> {
    let text = std::fs::read_to_string("/proc/meminfo")?;
    text.lines()
        .find_map(|l| l.strip_prefix("Slab:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .context("no Slab line in /proc/meminfo")
}

struct Exporter(Child);

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn node_exporter(port: u16, args: &[&str]) -> Result<Exporter> {
    let child = Command::new(NODE_EXPORTER)
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting prometheus-node-exporter (cargo xtask setup installs it)")?;
    sleep(Duration::from_millis(1000));
    Ok(Exporter(child))
}

pub fn run(agent: &Path, against: Option<&Path>, reps: usize) -> Result<()> {
    let _cgroups = Cgroups::create()?;
    println!(
        "\nScrape cost: node + {CGROUPS} cgroups (each with a process), {SCRAPES} scrapes per rep, medians of {reps}\n"
    );
    println!(
        "| target | series bytes | wall ms / scrape | CPU ms / scrape | RSS MiB | of which anonymous | executable |"
    );
    println!("|---|---|---|---|---|---|---|");
    let full = RunningAgent::start_with(agent, false, &[])?;
    // The first scrape opens (and keeps) the cgroup files: the kernel's slab
    // grows by what the kept files cost.
    let slab0 = slab_kib()?;
    ureq::get(&full.url).call()?.into_string()?;
    let kept_kib = slab_kib()? - slab0;
    let reopen = RunningAgent::start_with(agent, false, &["--cgroup-open-files", "0"])?;
    let node_only = RunningAgent::start_with(agent, false, &["--cgroup-metrics-limit", "0"])?;
    let baseline = against
        .map(|a| RunningAgent::start_with(a, false, &[]))
        .transpose()?;
    // The baseline's feature set: an agent from before the HTTP probe parses
    // no scrape (the bench's own HTTP) and exposes no HTTP families.
    let no_http = against
        .map(|_| RunningAgent::start_with(agent, false, &["--http-capture-bytes", "0"]))
        .transpose()?;
    let same = node_exporter(19_101, &SAME_COLLECTORS)?;
    let defaults = node_exporter(19_102, &[])?;
    let mut targets = vec![
        (
            "osprey-agent: node + cgroups (all /metrics)",
            Target {
                role: Role::Full,
                pid: full.child.id(),
                url: full.url.clone(),
            },
        ),
        (
            "osprey-agent: node + cgroups, files reopened per scrape (--cgroup-open-files 0)",
            Target {
                role: Role::Reopen,
                pid: reopen.child.id(),
                url: reopen.url.clone(),
            },
        ),
        (
            "osprey-agent: node only (--cgroup-metrics-limit 0)",
            Target {
                role: Role::NodeOnly,
                pid: node_only.child.id(),
                url: node_only.url.clone(),
            },
        ),
        (
            "node-exporter: the same node collectors",
            Target {
                role: Role::ExporterSame,
                pid: same.0.id(),
                url: "http://127.0.0.1:19101/metrics".into(),
            },
        ),
        (
            "node-exporter: default collectors",
            Target {
                role: Role::ExporterDefault,
                pid: defaults.0.id(),
                url: "http://127.0.0.1:19102/metrics".into(),
            },
        ),
    ];
    if let (Some(b), Some(n)) = (&baseline, &no_http) {
        targets.push((
            "osprey-agent: node + cgroups, HTTP capture off (--http-capture-bytes 0)",
            Target {
                role: Role::NoHttp,
                pid: n.child.id(),
                url: n.url.clone(),
            },
        ));
        targets.push((
            "--against agent: node + cgroups (all /metrics)",
            Target {
                role: Role::Against,
                pid: b.child.id(),
                url: b.url.clone(),
            },
        ));
    }
    // Rep by rep, every target in turn: each sees the same moments of the
    // run (start-up of the others, cache and frequency), not one the first
    // minute and another the last. Odd reps go in reverse order, so that no
    // target always comes right after the same other one.
    let mut runs = vec![Run::default(); targets.len()];
    for rep in 0..reps {
        let mut turn: Vec<_> = targets.iter().zip(&mut runs).collect();
        if rep % 2 == 1 {
            turn.reverse();
        }
        for ((_, t), run) in turn {
            let (w, c, r, b) = measure(t)?;
            run.wall.push(w);
            run.cpu.push(c);
            run.rss.push(r.total);
            run.anon.push(r.anon);
            run.exe.push(r.exe);
            run.bytes = b;
        }
    }
    let mut rows = Vec::new();
    for ((name, _), run) in targets.iter().zip(&runs) {
        let row = (median(run.wall.clone()), median(run.cpu.clone()));
        println!(
            "| {name} | {} | {:.2} | {:.2} | {:.1} | {:.1} | {:.1} |",
            run.bytes,
            row.0,
            row.1,
            median(run.rss.clone()),
            median(run.anon.clone()),
            median(run.exe.clone()),
        );
        rows.push(row);
    }
    println!(
        "\nnode part, agent / node-exporter (same collectors): wall {:.2}×, CPU {:.2}×",
        rows[at(&targets, Role::NodeOnly)].0 / rows[at(&targets, Role::ExporterSame)].0,
        rows[at(&targets, Role::NodeOnly)].1 / rows[at(&targets, Role::ExporterSame)].1
    );
    if baseline.is_some() {
        let paired = |ours: usize, of: fn(&Run) -> &Vec<f64>| {
            let ratios: Vec<f64> = of(&runs[ours])
                .iter()
                .zip(of(&runs[at(&targets, Role::Against)]))
                .map(|(x, y)| x / y)
                .collect();
            format!("{:.2}× ({})", median(ratios.clone()), range(&ratios))
        };
        for (role, name) in [
            (Role::Full, "this build"),
            (Role::NoHttp, "this build, HTTP capture off"),
        ] {
            let ours = at(&targets, role);
            println!(
                "{name} / --against, node + cgroups, paired by rep: wall {}, CPU {}, RSS {} \
                 (anonymous {}, executable {})",
                paired(ours, |r| &r.wall),
                paired(ours, |r| &r.cpu),
                paired(ours, |r| &r.rss),
                paired(ours, |r| &r.anon),
                paired(ours, |r| &r.exe),
            );
        }
    }
    let open_files = ureq::get(&full.url)
        .call()?
        .into_string()?
        .lines()
        .find_map(|l| l.strip_prefix("osprey_cgroup_open_files "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    println!(
        "cgroup files kept open by the first agent: {open_files}; kernel slab grew {:.1} MiB at its \
         first scrape ({:.1} KiB per file). The second agent keeps none and pays an open and a \
         close per file per scrape.",
        kept_kib / 1024.0,
        kept_kib / open_files.max(1.0)
    );
    println!(
        "CPU ms / scrape = Δ(utime+stime) of the serving process over {SCRAPES} scrapes / {SCRAPES} \
         (10 ms ticks, so ±0.1 ms); wall = client-side request time (median)."
    );
    Ok(())
}
