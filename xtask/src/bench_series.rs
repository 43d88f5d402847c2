//! `cargo xtask bench --only series`: what a pod costs in series, scrape
//! bytes, agent RSS and CPU, at default settings, on the node of
//! `series-node` (the tests' bridged node with kubelet-style cgroups, pods
//! named by the stand-in API server, HTTP and UDP to one server pod) at 10,
//! 50 and 100 pods. Series are counted as Prometheus stores them: one per
//! sample line of the scrape (each histogram bucket is one).

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::bench::{RunningAgent, cpu_and_rss, gauge, terminate};

const PODS: [usize; 3] = [10, 50, 100];
/// Target: at most this many series per pod on average, at default settings.
const TARGET: f64 = 100.0;

/// The running `series-node`; closing its stdin makes it clean up.
struct SeriesNode {
    child: Child,
    kubeconfig: String,
}

impl SeriesNode {
    fn start(agent: &Path, pods: usize) -> Result<Self> {
        let exe = agent.with_file_name("series-node");
        let mut child = Command::new(&exe)
            .arg(pods.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {}", exe.display()))?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().context("no stdout")?).read_line(&mut line)?;
        let Some(kubeconfig) = line.trim().strip_prefix("kubeconfig: ") else {
            bail!("series-node did not start: {line}");
        };
        Ok(Self {
            kubeconfig: kubeconfig.to_owned(),
            child,
        })
    }
}

impl Drop for SeriesNode {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            sleep(Duration::from_millis(200));
        }
        terminate(&mut self.child);
    }
}

/// The group a sample's family belongs to in the table.
fn group(name: &str) -> &'static str {
    match name {
        n if n.starts_with("container_") => "container_*",
        n if n.starts_with("node_") => "node_*",
        n if n.starts_with("hubble_") => "hubble_*",
        n if n.starts_with("http_") => "http_*",
        n if n.starts_with("osprey_flow") || n.starts_with("osprey_tcp") => "osprey_flow/tcp_*",
        n if n.starts_with("osprey_") => "osprey_* (the agent's own)",
        _ => "other",
    }
}

/// One scrape: series per family (sample lines) and its size in bytes.
fn scrape(url: &str) -> Result<(BTreeMap<String, usize>, usize)> {
    let text = ureq::get(url)
        .set("Accept", "application/openmetrics-text;version=1.0.0")
        .call()?
        .into_string()?;
    let mut families = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let name = line.split(['{', ' ']).next().unwrap_or_default();
        let family = ["_bucket", "_sum", "_count", "_total", "_created"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        *families.entry(family.to_owned()).or_default() += 1;
    }
    Ok((families, text.len()))
}

struct Row {
    pods: usize,
    families: BTreeMap<String, usize>,
    bytes: usize,
    rss_mib: f64,
    cpu_m: f64,
}

impl Row {
    fn series(&self) -> usize {
        self.families.values().sum()
    }

    fn groups(&self) -> BTreeMap<&'static str, usize> {
        let mut g = BTreeMap::new();
        for (f, n) in &self.families {
            *g.entry(group(f)).or_default() += n;
        }
        g
    }
}

fn measure(agent: &Path, pods: usize, secs: u64) -> Result<Row> {
    let node = SeriesNode::start(agent, pods)?;
    let running = RunningAgent::start_with(
        agent,
        false,
        &[
            "--kubeconfig",
            &node.kubeconfig,
            "--node-name",
            "series-node",
        ],
    )?;
    let started = Instant::now();
    loop {
        if gauge(&running, "osprey_kubernetes_pods") as usize == pods {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the agent did not list {pods} pods in 60 s");
        }
        sleep(Duration::from_millis(300));
    }
    // Every pod has sent, every cgroup has been walked.
    sleep(Duration::from_secs(5));
    let (cpu0, _) = cpu_and_rss(running.child.id())?;
    sleep(Duration::from_secs(secs));
    let (cpu1, rss_mib) = cpu_and_rss(running.child.id())?;
    let (families, bytes) = scrape(&running.url)?;
    drop(running);
    drop(node);
    Ok(Row {
        pods,
        families,
        bytes,
        rss_mib,
        cpu_m: (cpu1 - cpu0) / secs as f64 * 1e3,
    })
}

pub fn run(agent: &Path, secs: u64) -> Result<()> {
    let mut rows = Vec::new();
    for pods in PODS {
        let row = measure(agent, pods, secs)?;
        eprintln!(
            "xtask: series with {pods} pods: {} series, {} bytes, {:.1} MiB, {:.1} mCPU",
            row.series(),
            row.bytes,
            row.rss_mib,
            row.cpu_m
        );
        rows.push(row);
    }
    let groups: Vec<&'static str> = {
        let mut g: Vec<_> = rows.iter().flat_map(|r| r.groups().into_keys()).collect();
        g.sort();
        g.dedup();
        g
    };
    println!();
    println!(
        "Series per pod at default settings (bridged node, kubelet cgroups: a pause and an app container per pod, HTTP + UDP to one server pod; {secs} s)"
    );
    println!();
    print!(
        "| pods | series | per pod | scrape bytes per pod | agent RSS per pod | agent mCPU per pod |"
    );
    for g in &groups {
        print!(" {g} per pod |");
    }
    println!();
    println!("|{}", "---|".repeat(6 + groups.len()));
    for r in &rows {
        let per = |v: f64| v / r.pods as f64;
        print!(
            "| {} | {} | **{:.1}** | {:.0} | {:.2} MiB | {:.2} |",
            r.pods,
            r.series(),
            per(r.series() as f64),
            per(r.bytes as f64),
            per(r.rss_mib),
            per(r.cpu_m),
        );
        let g = r.groups();
        for name in &groups {
            print!(" {:.1} |", per(*g.get(name).unwrap_or(&0) as f64));
        }
        println!();
    }
    let (first, last) = (&rows[0], &rows[rows.len() - 1]);
    let marginal = |a: f64, b: f64| (b - a) / (last.pods - first.pods) as f64;
    println!();
    println!(
        "Each pod past the first {}: +{:.1} series, +{:.0} scrape bytes, +{:.2} MiB RSS, +{:.2} mCPU. Target: ≤ {TARGET} series per pod on average.",
        first.pods,
        marginal(first.series() as f64, last.series() as f64),
        marginal(first.bytes as f64, last.bytes as f64),
        marginal(first.rss_mib, last.rss_mib),
        marginal(first.cpu_m, last.cpu_m),
    );
    // The smallest node shows the fixed part (node, agent, per-node
    // families); the largest, what each pod adds.
    for row in [first, last] {
        println!();
        println!(
            "Families by series per pod (the {} pods row, top 20):",
            row.pods
        );
        println!();
        let mut top: Vec<_> = row.families.iter().collect();
        top.sort_by(|a, b| b.1.cmp(a.1));
        println!("| family | series | per pod |");
        println!("|---|---|---|");
        for (f, n) in top.into_iter().take(20) {
            println!("| `{f}` | {n} | {:.1} |", *n as f64 / row.pods as f64);
        }
    }
    Ok(())
}
