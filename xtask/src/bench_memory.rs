//! `cargo xtask bench --only memory`: the agent's memory at default
//! settings, kernel maps included. Each map of the running agent with the
//! kernel's figure of its memory here (`osprey-agent map-memory`: memlock
//! in the map's fdinfo) and its projection to 16, 64 and 128 possible CPUs
//! from its definition (per-CPU values × CPUs); the agent's RSS idle and
//! while pod A opens 10,000 flows per second (≈ 10k live flows per drain).

use std::{path::Path, process::Command, thread::sleep, time::Duration};

use anyhow::{Context, Result, bail};

use crate::{
    bench::{Pods, RunningAgent, agent_cost, cpu_and_rss, median, range},
    sh,
};

const MIB: f64 = 1024.0 * 1024.0;
/// Targets (issue: total agent memory, RSS plus maps, worst case).
const TARGETS: [(usize, f64); 2] = [(16, 128.0), (64, 256.0)];

struct MapRow {
    name: String,
    kind: &'static str,
    entries: u64,
    here: f64,
    per_cpu: f64,
    at: [f64; 3],
}

fn kind(map_type: u32) -> &'static str {
    match map_type {
        1 => "hash",
        2 => "array",
        5 => "percpu_hash",
        6 => "percpu_array",
        9 => "lru_hash",
        10 => "lru_percpu_hash",
        12 => "array_of_maps",
        13 => "hash_of_maps",
        27 => "ringbuf",
        _ => "other",
    }
}

fn maps(agent: &Path) -> Result<(usize, Vec<MapRow>)> {
    let out =
        sh::output(Command::new(agent).arg("map-memory")).context("osprey-agent map-memory")?;
    let mut rows = Vec::new();
    let mut cpus = 0;
    for line in out.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.first() == Some(&"TOTAL") {
            cpus = f[1].trim_start_matches("cpus=").parse()?;
            continue;
        }
        if f.len() != 10 {
            bail!("map-memory: unreadable line {line}");
        }
        let n = |i: usize| -> Result<f64> { Ok(f[i].parse::<f64>()?) };
        rows.push(MapRow {
            name: f[0].to_owned(),
            kind: kind(f[1].parse()?),
            entries: f[4].parse()?,
            here: n(5)?,
            per_cpu: n(6)?,
            at: [n(7)?, n(8)?, n(9)?],
        });
    }
    rows.sort_by(|a, b| b.at[1].total_cmp(&a.at[1]));
    Ok((cpus, rows))
}

pub fn run(agent: &Path, reps: usize, secs: u64) -> Result<()> {
    let running = RunningAgent::start(agent, false)?;
    sleep(Duration::from_secs(3));
    let (cpus, rows) = maps(agent)?;
    let (_, idle_rss) = cpu_and_rss(running.child.id())?;
    drop(running);
    let _pods = Pods::create()?;
    let mut busy = Vec::new();
    for _ in 0..reps {
        busy.push(agent_cost(agent, 10_000, secs)?.1);
    }
    let busy_rss = median(busy.clone());

    println!();
    println!(
        "Agent memory at default settings: kernel maps (measured at {cpus} possible CPUs, projected from their definitions) and RSS"
    );
    println!();
    println!(
        "| map | type | entries | here (MiB) | per CPU (KiB) | 16 CPUs | 64 CPUs | 128 CPUs |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let mut total = [0.0; 4];
    for r in &rows {
        println!(
            "| `{}` | {} | {} | {:.2} | {:.1} | {:.1} | {:.1} | {:.1} |",
            r.name,
            r.kind,
            r.entries,
            r.here / MIB,
            r.per_cpu / 1024.0,
            r.at[0] / MIB,
            r.at[1] / MIB,
            r.at[2] / MIB
        );
        total[0] += r.here;
        for i in 0..3 {
            total[i + 1] += r.at[i];
        }
    }
    println!(
        "| **all maps** | | | **{:.1}** | | **{:.1}** | **{:.1}** | **{:.1}** |",
        total[0] / MIB,
        total[1] / MIB,
        total[2] / MIB,
        total[3] / MIB
    );
    println!(
        "| agent RSS at 10k new flows/s ({reps} runs, {}) | | | {busy_rss:.1} | | | | |",
        range(&busy)
    );
    println!("| agent RSS idle | | | {idle_rss:.1} | | | | |");
    let with_rss = |maps: f64| maps / MIB + busy_rss;
    println!(
        "| **total (maps + RSS at 10k flows/s)** | | | **{:.1}** | | **{:.1}** | **{:.1}** | **{:.1}** |",
        with_rss(total[0]),
        with_rss(total[1]),
        with_rss(total[2]),
        with_rss(total[3])
    );
    println!();
    for (cpus, target) in TARGETS {
        let i = if cpus == 16 { 1 } else { 2 };
        let got = with_rss(total[i]);
        println!(
            "At {cpus} possible CPUs: {got:.1} MiB (target ≤ {target} MiB): {}",
            if got <= target { "met" } else { "NOT met" }
        );
    }
    Ok(())
}
