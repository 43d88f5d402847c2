//! `cargo xtask bench --only identity`: what naming a cluster costs the
//! agent. The stand-in API server (`fake-apiserver`, the tests' one) holds
//! 10,000 pods, 1,000 Services and 100 Nodes; the agent lists and watches
//! them all (`pod_scope = "cluster"`). Side by side in each round: the agent
//! standalone (`--kubernetes off`) and the agent with the cluster, RSS once
//! idle after the lists; medians. Then the lookup cost per flow end, from
//! `node-agent`'s `identity_lookup` example (the index the agent builds,
//! filled the same way).

use std::{
    path::Path,
    process::{Child, Command},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{
    bench::{RunningAgent, cpu_and_rss, gauge, median, range, spawn_quiet, terminate},
    sh,
};

const PODS: usize = 10_000;
const SERVICES: usize = 1_000;
const NODES: usize = 100;
/// Target: the cluster's identities cost the agent at most this much RSS.
const TARGET_MIB: f64 = 30.0;

struct ApiServer {
    child: Child,
    kubeconfig: String,
}

impl ApiServer {
    /// `fake-apiserver`, built beside the agent.
    fn start(agent: &Path) -> Result<Self> {
        let exe = agent.with_file_name("fake-apiserver");
        let (child, line) = spawn_quiet(Command::new(&exe).args([
            PODS.to_string(),
            SERVICES.to_string(),
            NODES.to_string(),
        ]))
        .with_context(|| format!("starting {}", exe.display()))?;
        let Some(kubeconfig) = line.trim().strip_prefix("kubeconfig: ") else {
            bail!("fake-apiserver did not start: {line}");
        };
        Ok(Self {
            kubeconfig: kubeconfig.to_owned(),
            child,
        })
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        terminate(&mut self.child);
    }
}

fn rss_mib(agent: &RunningAgent) -> Result<f64> {
    Ok(cpu_and_rss(agent.child.id())?.1)
}

pub fn run(agent: &Path, reps: usize) -> Result<()> {
    let (mut alone, mut named, mut extra, mut sync) = (vec![], vec![], vec![], vec![]);
    for round in 0..reps {
        let standalone = RunningAgent::start_with(agent, false, &["--kubernetes", "off"])?;
        sleep(Duration::from_secs(5));
        let base = rss_mib(&standalone)?;
        drop(standalone);

        let api = ApiServer::start(agent)?;
        let started = Instant::now();
        let running = RunningAgent::start_with(
            agent,
            false,
            &["--kubeconfig", &api.kubeconfig, "--node-name", "node-0"],
        )?;
        loop {
            let listed = gauge(&running, "osprey_kubernetes_pods") as usize == PODS
                && gauge(&running, "osprey_kubernetes_services") as usize == SERVICES
                && gauge(&running, "osprey_kubernetes_nodes") as usize == NODES;
            if listed {
                break;
            }
            if started.elapsed() > Duration::from_secs(120) {
                bail!("the agent did not list the cluster in 120 s");
            }
            sleep(Duration::from_millis(200));
        }
        sync.push(started.elapsed().as_secs_f64());
        sleep(Duration::from_secs(5));
        let with = rss_mib(&running)?;
        eprintln!(
            "xtask: identity round {}: standalone {base:.1} MiB, with the cluster {with:.1} MiB",
            round + 1
        );
        alone.push(base);
        named.push(with);
        extra.push(with - base);
    }
    println!();
    println!(
        "Identity cache ({PODS} pods, {SERVICES} Services, {NODES} Nodes from the stand-in API server; {reps} rounds, medians)"
    );
    println!();
    println!("| | agent RSS | range |");
    println!("|---|---|---|");
    println!(
        "| standalone (`--kubernetes off`) | {:.1} MiB | {} |",
        median(alone.clone()),
        range(&alone)
    );
    println!(
        "| with the cluster (pods, Services, Nodes watched) | {:.1} MiB | {} |",
        median(named.clone()),
        range(&named)
    );
    println!(
        "| **extra** | **{:.1} MiB** (target ≤ {TARGET_MIB}) | {} |",
        median(extra.clone()),
        range(&extra)
    );
    println!(
        "\nListed in {:.1} s (median, from the agent's start; pages of 500).",
        median(sync)
    );
    println!();
    sh::run(
        sh::cargo()
            .args(["run", "--release", "--quiet", "-p", "node-agent"])
            .args(["--example", "identity_lookup", "--"])
            .args([PODS.to_string(), SERVICES.to_string(), NODES.to_string()]),
    )
}
