//! The collector scaling out (part of `cargo xtask bench --only collector`):
//! the same OTLP load through one replica, then spread over two (as agents
//! spread over a Service's endpoints), then into an HA pair (every request to
//! both, `replica = "a"` / `"b"`), into the same Prometheus 3.5. Replicas
//! share nothing, so the figure that must hold is samples per CPU-second;
//! the HA pair shows that `replica` is the only label that differs, which is
//! what Thanos Query's `--query.replica-label=replica` deduplicates.

use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};

use crate::bench::{cpu_and_rss, median};
use crate::bench_collector::{REQUESTS, SERIES, Sender, load_to, osprey_with, query};

/// One layout's run: replicas, and which replicas each of the two client
/// threads (each its own instance) posts every request to.
struct Layout {
    name: &'static str,
    /// Each replica's external labels (TOML lines).
    replicas: &'static [&'static str],
    /// Thread k's replicas (indices into `replicas`).
    targets: [&'static [usize]; 2],
}

const LAYOUTS: [Layout; 3] = [
    Layout {
        name: "one replica",
        replicas: &[""],
        targets: [&[0], &[0]],
    },
    Layout {
        name: "two replicas, agents spread over them",
        replicas: &["", ""],
        targets: [&[0], &[1]],
    },
    Layout {
        name: "HA pair (replica a / b), every request to both",
        replicas: &[
            "cluster = \"bench\"\nreplica = \"a\"",
            "cluster = \"bench\"\nreplica = \"b\"",
        ],
        targets: [&[0, 1], &[0, 1]],
    },
];

struct Run {
    delivered: f64,
    wall_rate: f64,
    per_cpu_s: f64,
}

fn selector(run: &str) -> String {
    format!("{{__name__=~\"bench_points.*\",bench_run=~\"{run}-.*\"}}")
}

/// Loads `layout` with fresh replicas and waits until Prometheus holds
/// every sample it was sent (an HA pair's twice).
fn measure(collector: &Path, write: &str, prom: &str, layout: &Layout, run: &str) -> Result<Run> {
    let senders: Vec<Sender> = layout
        .replicas
        .iter()
        .map(|ext| osprey_with(collector, write, "2", "always", ext))
        .collect::<Result<_>>()?;
    let targets: Vec<Vec<String>> = layout
        .targets
        .iter()
        .map(|t| t.iter().map(|&i| senders[i].otlp_url.clone()).collect())
        .collect();
    let copies = layout.targets[0].len() as f64;
    let delivered = (SERIES * REQUESTS) as f64 * copies;
    let cpu = |senders: &[Sender]| -> Result<f64> {
        senders
            .iter()
            .map(|s| Ok(cpu_and_rss(s.pid())?.0))
            .sum::<Result<f64>>()
    };
    let t0_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let cpu0 = cpu(&senders)?;
    let start = Instant::now();
    load_to(&targets, run, REQUESTS, t0_ms)?;
    let q = format!("sum(count_over_time({}[1h]))", selector(run));
    while query(prom, &q) < delivered {
        if start.elapsed() > Duration::from_secs(300) {
            bail!(
                "{run}: Prometheus holds {} of {delivered} samples after 300 s",
                query(prom, &q)
            );
        }
        sleep(Duration::from_millis(200));
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu_s = cpu(&senders)? - cpu0;
    Ok(Run {
        delivered,
        wall_rate: delivered / wall,
        per_cpu_s: delivered / cpu_s,
    })
}

pub fn run(collector: &Path, prom: &str, write: &str, reps: usize) -> Result<()> {
    println!(
        "\nScaling out: the same load ({SERIES} series × {REQUESTS} requests from two instances) through one replica, two, and an HA pair; remote-write v2, fsync always, medians of {reps}\n"
    );
    println!(
        "| layout | samples delivered | samples/s (wall, all replicas) | samples/s per CPU-second (all replicas) |"
    );
    println!("|---|---|---|---|");
    let mut ha_run = String::new();
    for (l, layout) in LAYOUTS.iter().enumerate() {
        let mut runs = Vec::new();
        for rep in 0..reps {
            let run = format!("scale{l}r{rep}");
            runs.push(measure(collector, write, prom, layout, &run)?);
            ha_run = run;
        }
        let m = |f: fn(&Run) -> f64| median(runs.iter().map(f).collect());
        println!(
            "| {} | {:.0} | {:.0} | {:.0} |",
            layout.name,
            m(|r| r.delivered),
            m(|r| r.wall_rate),
            m(|r| r.per_cpu_s)
        );
    }
    // The last run was the HA pair's: what a replica-label dedup returns.
    let sel = selector(&ha_run);
    let a = sel.replacen('{', "{replica=\"a\",", 1);
    let b = sel.replacen('{', "{replica=\"b\",", 1);
    println!(
        "\nHA pair in Prometheus: {} series with `replica`, {} after `max without (replica)`; {} of replica a's latest values equal replica b's, {} differ.",
        query(prom, &format!("count({sel})")),
        query(prom, &format!("count(max without (replica) ({sel}))")),
        query(prom, &format!("count({a} == ignoring (replica) {b})")),
        query(prom, &format!("count({a} != ignoring (replica) {b})")),
    );
    Ok(())
}
