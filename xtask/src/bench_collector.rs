//! `cargo xtask bench --only collector`: OTLP in → remote-write out, through
//! the collector (disk queue on, fsync per request) and through vmagent (its
//! disk queue on), side by side in one run, into the same Prometheus 3.5.
//! Each sender gets the same OTLP/HTTP load (requests of gauge points) and
//! is measured by its own process's CPU time (/proc), until Prometheus holds
//! every sample. Then: bytes per sample on the wire (v1 and v2), RSS while
//! the receiver is away for 60 s, and what fsync costs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value},
    metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
    },
    resource::v1::Resource,
};
use prost::Message;

use crate::bench::{cpu_and_rss, median, terminate};

pub(crate) const SERIES: u64 = 2_000;
pub(crate) const REQUESTS: u64 = 250;

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
    }
}

/// Request `i` of a run: every series once, at timestamp `t0 + i` ms.
fn request(run: &str, i: u64, t0_ms: u64) -> Vec<u8> {
    let ts = (t0_ms + i) * 1_000_000;
    let points = (0..SERIES)
        .map(|s| NumberDataPoint {
            attributes: vec![
                kv("series", &s.to_string()),
                kv("pod", &format!("pod-{}", s % 50)),
                kv("bench_run", run),
            ],
            time_unix_nano: ts,
            value: Some(number_data_point::Value::AsDouble((i * SERIES + s) as f64)),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", "bench"), kv("service.instance.id", run)],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "bench_points".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: points,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

pub(crate) struct Proc {
    pub(crate) child: Child,
    pub(crate) dir: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        terminate(&mut self.child);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub(crate) fn tmp(tag: &str) -> Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("osprey-bench-{tag}-{}", free_port()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

pub(crate) fn wait_http(url: &str) -> Result<()> {
    let t = Instant::now();
    while ureq::get(url)
        .timeout(Duration::from_secs(1))
        .call()
        .is_err()
    {
        if t.elapsed() > Duration::from_secs(30) {
            bail!("{url} did not come up");
        }
        sleep(Duration::from_millis(100));
    }
    Ok(())
}

/// A sender under test: where it takes OTLP/HTTP metrics and reports itself.
pub(crate) struct Sender {
    proc: Proc,
    pub(crate) otlp_url: String,
    metrics_url: String,
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Osprey,
    Vmagent,
}

fn osprey(bin: &Path, write_url: &str, version: &str, fsync: &str) -> Result<Sender> {
    osprey_with(bin, write_url, version, fsync, "")
}

/// `osprey` with `external` (TOML `key = "value"` lines) as the exporter's
/// external labels.
pub(crate) fn osprey_with(
    bin: &Path,
    write_url: &str,
    version: &str,
    fsync: &str,
    external: &str,
) -> Result<Sender> {
    let dir = tmp("collector")?;
    let (own, http) = (free_port(), free_port());
    let cfg = format!(
        "listen = \"127.0.0.1:{own}\"\notlp_grpc_listen = \"127.0.0.1:0\"\notlp_http_listen = \"127.0.0.1:{http}\"\nwal_dir = {:?}\n\
         [[remote_write]]\nname = \"bench\"\nurl = {write_url:?}\nversion = {version:?}\n[remote_write.queue]\nfsync = {fsync:?}\n\
         [remote_write.external_labels]\n{external}\n",
        dir.join("wal").display().to_string()
    );
    std::fs::write(dir.join("c.toml"), cfg)?;
    let child = Command::new(bin)
        .arg("--config")
        .arg(dir.join("c.toml"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .context("starting the collector")?;
    wait_http(&format!("http://127.0.0.1:{own}/healthz"))?;
    Ok(Sender {
        proc: Proc { child, dir },
        otlp_url: format!("http://127.0.0.1:{http}/v1/metrics"),
        metrics_url: format!("http://127.0.0.1:{own}/metrics"),
        kind: Kind::Osprey,
    })
}

fn vmagent(bin: &Path, write_url: &str) -> Result<Sender> {
    let dir = tmp("vmagent")?;
    let port = free_port();
    let child = Command::new(bin)
        .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
        .arg(format!("-remoteWrite.url={write_url}"))
        .arg(format!("-remoteWrite.tmpDataPath={}", dir.display()))
        .args([
            "-remoteWrite.forcePromProto",
            "-loggerLevel=ERROR",
            "-remoteWrite.flushInterval=200ms",
            // One queue: with several, one series's samples race each other
            // and Prometheus rejects the late ones as out of order.
            "-remoteWrite.queues=1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting vmagent")?;
    wait_http(&format!("http://127.0.0.1:{port}/health"))?;
    Ok(Sender {
        proc: Proc { child, dir },
        otlp_url: format!("http://127.0.0.1:{port}/opentelemetry/v1/metrics"),
        metrics_url: format!("http://127.0.0.1:{port}/metrics"),
        kind: Kind::Vmagent,
    })
}

impl Sender {
    pub(crate) fn pid(&self) -> u32 {
        self.proc.child.id()
    }

    /// Compressed remote-write bytes it sent.
    fn wire_bytes(&self) -> f64 {
        let text = ureq::get(&self.metrics_url)
            .call()
            .ok()
            .and_then(|r| r.into_string().ok())
            .unwrap_or_default();
        let want = match self.kind {
            Kind::Osprey => "osprey_collector_sent_total{exporter=\"bench\",kind=\"wire_bytes\"}",
            Kind::Vmagent => "vmagent_remotewrite_bytes_sent_total",
        };
        text.lines()
            .filter(|l| l.starts_with(want))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }
}

/// Posts `n` requests from two client threads, each its own instance
/// (`<run>-0`, `<run>-1`) so every series' samples arrive in order;
/// median request latency (ms).
fn load(url: &str, run: &str, n: u64, t0_ms: u64) -> Result<f64> {
    load_to(&[vec![url.to_owned()], vec![url.to_owned()]], run, n, t0_ms)
}

/// `load` with thread `k` posting each of its requests to every URL in
/// `targets[k]` (one replica each, or both of an HA pair).
pub(crate) fn load_to(targets: &[Vec<String>], run: &str, n: u64, t0_ms: u64) -> Result<f64> {
    let per_thread = n / targets.len() as u64;
    let handles: Vec<_> = targets
        .iter()
        .enumerate()
        .map(|(k, urls)| {
            let urls = urls.clone();
            let bodies: Vec<Vec<u8>> = (0..per_thread)
                .map(|i| request(&format!("{run}-{k}"), i, t0_ms))
                .collect();
            std::thread::spawn(move || -> Result<Vec<f64>> {
                let mut lat = Vec::new();
                for body in &bodies {
                    for url in &urls {
                        lat.push(post(url, body)?);
                    }
                }
                Ok(lat)
            })
        })
        .collect();
    let mut all = Vec::new();
    for h in handles {
        all.extend(h.join().map_err(|_| anyhow::anyhow!("load thread"))??);
    }
    Ok(median(all))
}

/// Posts one OTLP body until it is taken (backing off on 429 / 503);
/// the accepted attempt's latency (ms).
fn post(url: &str, body: &[u8]) -> Result<f64> {
    loop {
        let t = Instant::now();
        match ureq::post(url)
            .set("Content-Type", "application/x-protobuf")
            .send_bytes(body)
        {
            Ok(_) => return Ok(t.elapsed().as_secs_f64() * 1000.0),
            Err(ureq::Error::Status(429 | 503, _)) => sleep(Duration::from_millis(100)),
            Err(e) => bail!("POST {url}: {e}"),
        }
    }
}

pub(crate) fn query(prom: &str, q: &str) -> f64 {
    ureq::get(&format!("{prom}/api/v1/query"))
        .query("query", q)
        .call()
        .ok()
        .and_then(|r| r.into_json::<serde_json::Value>().ok())
        .and_then(|v| v["data"]["result"][0]["value"][1].as_str()?.parse().ok())
        .unwrap_or(0.0)
}

/// Starts a fresh sender for one run.
type Starter<'a> = Box<dyn Fn() -> Result<Sender> + 'a>;

struct Row {
    per_cpu_s: f64,
    wall_rate: f64,
    bytes_per_sample: f64,
    latency_ms: f64,
}

/// One throughput run: load, then wait until Prometheus holds every sample.
fn throughput(s: &Sender, prom: &str, run: &str) -> Result<Row> {
    let total = (SERIES * REQUESTS) as f64;
    let t0_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let (cpu0, _) = cpu_and_rss(s.pid())?;
    let start = Instant::now();
    let latency_ms = load(&s.otlp_url, run, REQUESTS, t0_ms)?;
    let q = format!(
        "sum(count_over_time({{__name__=~\"bench_points.*\",bench_run=~\"{run}-.*\"}}[1h]))"
    );
    while query(prom, &q) < total {
        if start.elapsed() > Duration::from_secs(300) {
            bail!(
                "{run}: Prometheus holds {} of {total} samples after 300 s",
                query(prom, &q)
            );
        }
        sleep(Duration::from_millis(200));
    }
    let wall = start.elapsed().as_secs_f64();
    let (cpu1, _) = cpu_and_rss(s.pid())?;
    Ok(Row {
        per_cpu_s: total / (cpu1 - cpu0),
        wall_rate: total / wall,
        bytes_per_sample: s.wire_bytes() / total,
        latency_ms,
    })
}

/// RSS (MiB) every second for 60 s while a sender takes 20k samples/s and
/// its receiver is away: (min, median, max) after the first 10 s.
fn stall(s: &Sender) -> Result<(f64, f64, f64)> {
    let t0_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let mut rss = Vec::new();
    let start = Instant::now();
    let mut i = 0;
    while start.elapsed() < Duration::from_secs(60) {
        for _ in 0..10 {
            let body = request("stall", i, t0_ms);
            let _ = ureq::post(&s.otlp_url)
                .set("Content-Type", "application/x-protobuf")
                .send_bytes(&body);
            i += 1;
        }
        if start.elapsed() > Duration::from_secs(10) {
            rss.push(cpu_and_rss(s.pid())?.1);
        }
        let next = Duration::from_secs(i / 10);
        if let Some(wait) = next.checked_sub(start.elapsed()) {
            sleep(wait);
        }
    }
    let (min, max) = rss
        .iter()
        .fold((f64::MAX, 0f64), |(a, b), &v| (a.min(v), b.max(v)));
    Ok((min, median(rss), max))
}

pub fn run(collector: &Path, prometheus3: &Path, vmagent_bin: &Path, reps: usize) -> Result<()> {
    let pdir = tmp("prom3")?;
    let pport = free_port();
    std::fs::write(pdir.join("p.yml"), "global: {}\n")?;
    let prom = Proc {
        child: Command::new(prometheus3)
            .arg(format!(
                "--storage.tsdb.path={}",
                pdir.join("data").display()
            ))
            .arg(format!("--config.file={}", pdir.join("p.yml").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{pport}"))
            .args(["--web.enable-remote-write-receiver", "--log.level=error"])
            .spawn()?,
        dir: pdir,
    };
    let purl = format!("http://127.0.0.1:{pport}");
    wait_http(&format!("{purl}/-/ready"))?;
    let write = format!("{purl}/api/v1/write");
    println!(
        "\nCollector: OTLP/HTTP in → remote-write out into Prometheus 3.5, {SERIES} series × {REQUESTS} requests per run, medians of {reps}\n"
    );
    println!(
        "| sender | samples/s per CPU-second | samples/s (wall) | bytes/sample on the wire | request latency ms (median) |"
    );
    println!("|---|---|---|---|---|");
    let senders: [(&str, Starter); 5] = [
        (
            "osprey-collector RW2, fsync always",
            Box::new(|| osprey(collector, &write, "2", "always")),
        ),
        (
            "osprey-collector RW1, fsync always",
            Box::new(|| osprey(collector, &write, "1", "always")),
        ),
        (
            "osprey-collector RW2, fsync never",
            Box::new(|| osprey(collector, &write, "2", "never")),
        ),
        (
            "vmagent (RW1, disk queue)",
            Box::new(|| vmagent(vmagent_bin, &write)),
        ),
        (
            "osprey-collector RW2, fsync always (again)",
            Box::new(|| osprey(collector, &write, "2", "always")),
        ),
    ];
    let mut table: Vec<Vec<Row>> = (0..senders.len()).map(|_| Vec::new()).collect();
    for rep in 0..reps {
        for (k, (_, make)) in senders.iter().enumerate() {
            let s = make()?;
            table[k].push(throughput(&s, &purl, &format!("r{rep}s{k}"))?);
        }
    }
    let mut osprey_rate = 0.0;
    let mut vm_rate = 0.0;
    for ((name, _), rows) in senders.iter().zip(table) {
        let m = |f: fn(&Row) -> f64| median(rows.iter().map(f).collect());
        let rate = m(|r| r.per_cpu_s);
        if name.starts_with("osprey-collector RW2, fsync always") && osprey_rate == 0.0 {
            osprey_rate = rate;
        }
        if name.starts_with("vmagent") {
            vm_rate = rate;
        }
        println!(
            "| {name} | {rate:.0} | {:.0} | {:.2} | {:.2} |",
            m(|r| r.wall_rate),
            m(|r| r.bytes_per_sample),
            m(|r| r.latency_ms)
        );
    }
    println!(
        "| osprey RW2 / vmagent | {:.2}× | | | |",
        osprey_rate / vm_rate
    );

    println!(
        "\nReceiver away for 60 s, 20k samples/s offered: sender RSS (MiB) from 10 s to 60 s\n"
    );
    println!("| sender | min | median | max | (max − min) / median |");
    println!("|---|---|---|---|---|");
    let dead = format!("http://127.0.0.1:{}/api/v1/write", free_port());
    for (name, s) in [
        ("osprey-collector", osprey(collector, &dead, "2", "always")?),
        ("vmagent", vmagent(vmagent_bin, &dead)?),
    ] {
        let (min, med, max) = stall(&s)?;
        println!(
            "| {name} | {min:.1} | {med:.1} | {max:.1} | {:.0} % |",
            (max - min) / med * 100.0
        );
    }
    crate::bench_scale::run(collector, &purl, &write, reps)?;
    drop(prom);
    Ok(())
}
