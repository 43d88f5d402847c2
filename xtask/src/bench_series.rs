//! `cargo xtask bench --only series`: what a pod costs in series, scrape
//! bytes, agent RSS and CPU, at default settings, on the node of
//! `series-node` (the tests' bridged node with kubelet-style cgroups, pods
//! named by the stand-in API server, HTTP and UDP to one server pod) at 10,
//! 50 and 100 pods. Series are counted as Prometheus stores them: one per
//! sample line of the scrape (each histogram bucket is one); a real
//! Prometheus 3.5 scraping the same agent checks that count, and stores it
//! again with `convert_classic_histograms_to_nhcb`, where a histogram is
//! one series.

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    bench::{RunningAgent, cpu_and_rss, gauge, terminate},
    bench_collector::{Proc, tmp},
};

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
    /// The series a real Prometheus 3.5 stores from the same agent: as
    /// classic histograms, and with `convert_classic_histograms_to_nhcb`
    /// (each histogram one series).
    stored: usize,
    stored_nhcb: usize,
}

/// Prometheus' own series per target (`up` and `scrape_*`), left out of
/// the stored counts.
const PER_TARGET: &str = r#"count({job="agent",__name__!~"up|scrape_.+"})"#;

/// A self-signed certificate for 127.0.0.1 in `dir` (`cert.pem`, `key.pem`).
fn certificate(dir: &Path) -> Result<()> {
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-days",
            "1",
            "-nodes",
            "-subj",
            "/CN=prometheus",
        ])
        .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
        .args(["-addext", "subjectAltName=IP:127.0.0.1"])
        .args(["-keyout", "key.pem", "-out", "cert.pem"])
        .current_dir(dir)
        .output()
        .context("openssl (cargo xtask setup installs it)")?;
    if !out.status.success() {
        bail!("openssl: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// `GET url` over HTTPS trusting `dir`'s certificate; the body.
fn https_get(dir: &Path, url: &str, query: Option<&str>) -> Option<String> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sf", "--max-time", "5", "--cacert"])
        .arg(dir.join("cert.pem"))
        .arg(url);
    if let Some(q) = query {
        cmd.args(["-G", "--data-urlencode", &format!("query={q}")]);
    }
    let out = cmd.output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A Prometheus 3.5 scraping `target` every 2 s, with classic histograms
/// converted to native ones with custom buckets when `nhcb`.
struct Prometheus {
    proc: Proc,
    url: String,
}

impl Prometheus {
    /// Its web UI and API answer over HTTPS, as a node's other TLS traffic:
    /// the bench's readiness checks and queries are then TCP, not HTTP
    /// requests the agent would count into new series of its own while
    /// Prometheus stores them.
    fn start(bin: &Path, target: &str, nhcb: bool) -> Result<Self> {
        let dir = tmp(if nhcb { "series-nhcb" } else { "series" })?;
        certificate(&dir)?;
        // Prometheus' own port (and the next), not an ephemeral one, as on a node.
        let port = if nhcb { 9091 } else { 9090 };
        let convert = if nhcb {
            "    convert_classic_histograms_to_nhcb: true\n"
        } else {
            ""
        };
        std::fs::write(
            dir.join("p.yml"),
            format!(
                "global:\n  scrape_interval: 2s\nscrape_configs:\n  - job_name: agent\n{convert}    static_configs:\n      - targets: ['{target}']\n"
            ),
        )?;
        std::fs::write(
            dir.join("web.yml"),
            "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n",
        )?;
        let child = Command::new(bin)
            .arg(format!("--config.file={}", dir.join("p.yml").display()))
            .arg(format!(
                "--web.config.file={}",
                dir.join("web.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=error")
            .current_dir(&dir)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let prometheus = Self {
            url: format!("https://127.0.0.1:{port}"),
            proc: Proc { child, dir },
        };
        let started = Instant::now();
        while https_get(
            &prometheus.proc.dir,
            &format!("{}/-/ready", prometheus.url),
            None,
        )
        .is_none()
        {
            if started.elapsed() > Duration::from_secs(30) {
                bail!("Prometheus at {} was not ready in 30 s", prometheus.url);
            }
            sleep(Duration::from_millis(200));
        }
        Ok(prometheus)
    }

    /// The value of an instant query (0 when it has none).
    fn query(&self, q: &str) -> f64 {
        https_get(
            &self.proc.dir,
            &format!("{}/api/v1/query", self.url),
            Some(q),
        )
        .and_then(|body| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|v| v["data"]["result"][0]["value"][1].as_str()?.parse().ok())
        .unwrap_or(0.0)
    }
}

/// What both Prometheus store after a few scrapes of the agent.
fn stored(bin: &Path, agent_url: &str) -> Result<(usize, usize)> {
    let target = agent_url
        .trim_start_matches("http://")
        .trim_end_matches("/metrics");
    let classic = Prometheus::start(bin, target, false)?;
    let nhcb = Prometheus::start(bin, target, true)?;
    // Three scrapes at least; then until each has stored a scrape (a
    // large scrape can miss the 2 s timeout while both CPUs are busy).
    sleep(Duration::from_secs(7));
    let settled = |p: &Prometheus| -> Result<usize> {
        let started = Instant::now();
        loop {
            let n = p.query(PER_TARGET) as usize;
            if n > 0 {
                return Ok(n);
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!(
                    "Prometheus at {} stored no scrape of the agent in 60 s",
                    p.url
                );
            }
            sleep(Duration::from_secs(1));
        }
    };
    Ok((settled(&classic)?, settled(&nhcb)?))
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

fn measure(agent: &Path, prometheus3: &Path, pods: usize, secs: u64) -> Result<Row> {
    let node = SeriesNode::start(agent, pods)?;
    let running = RunningAgent::start_at(
        agent,
        "127.0.0.1:9811",
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
    // After the CPU window: their scrapes are not the agent's idle cost.
    let (stored, stored_nhcb) = stored(prometheus3, &running.url)?;
    drop(running);
    drop(node);
    Ok(Row {
        pods,
        families,
        bytes,
        rss_mib,
        cpu_m: (cpu1 - cpu0) / secs as f64 * 1e3,
        stored,
        stored_nhcb,
    })
}

pub fn run(agent: &Path, prometheus3: &Path, secs: u64) -> Result<()> {
    let mut rows = Vec::new();
    for pods in PODS {
        let row = measure(agent, prometheus3, pods, secs)?;
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
    println!();
    println!(
        "Series as a real Prometheus 3.5 stores them, scraping the same agent every 2 s (`up` and `scrape_*` left out):"
    );
    println!();
    println!(
        "| pods | counted from the scrape, per pod | stored, per pod | stored with `convert_classic_histograms_to_nhcb` (a histogram is one series), per pod |"
    );
    println!("|---|---|---|---|");
    for r in &rows {
        let per = |v: usize| v as f64 / r.pods as f64;
        println!(
            "| {} | {:.1} | {:.1} | **{:.1}** |",
            r.pods,
            per(r.series()),
            per(r.stored),
            per(r.stored_nhcb)
        );
    }
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
