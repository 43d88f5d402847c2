//! `osprey-agent`: the agent (no subcommand), and its CLI tools (`observe`,
//! `events`) and bench helpers. The pipeline lives in the library.

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;
use node_agent::{
    agent, cli, events,
    kernel::{hook_floor, prog_bench},
    observe,
};

fn main() -> Result<()> {
    // Two malloc arenas instead of glibc's up to eight per CPU. The agent's
    // threads (runtime workers, the one a scrape's `block_in_place` hands
    // its worker to, the drain and ring readers) each took an arena of their
    // own and kept its freed pages: 0.8 MiB of anonymous RSS more than with
    // two after 500 scrapes of a standalone node (GLIBC_TUNABLES, same build).
    // SAFETY: mallopt sets an allocator parameter; no thread has started.
    unsafe { libc::mallopt(libc::M_ARENA_MAX, 2) };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = cli::Cli::parse();
    match cli.command {
        Some(cli::Command::Observe(args)) => return observe::client::run(*args),
        Some(cli::Command::Events(args)) => return events::client::run(args),
        Some(cli::Command::HookFloor {
            probes,
            cgroup,
            bpf_stats,
            tcx,
            ingress,
        }) => return hook_floor(probes, cgroup, tcx.map(|d| (d, ingress)), bpf_stats),
        Some(cli::Command::ProgBench {
            probes,
            repeat,
            rounds,
        }) => {
            let path = agent::probes_path(&probes.unwrap_or_default())?;
            return prog_bench::run(path, repeat, rounds);
        }
        Some(cli::Command::MapMemory { probes }) => {
            let path = agent::probes_path(&probes.unwrap_or_default())?;
            return map_memory(&path);
        }
        Some(cli::Command::ProgStats) => {
            for (name, runs, ns) in hook_floor::loaded_program_stats()? {
                println!("{name} {runs} {ns}");
            }
            return Ok(());
        }
        None => {}
    }
    let sched_fields = cli.run.sched_fields();
    let config = cli.run.into_config()?;
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?
        .block_on(agent::run(config, sched_fields))
}

/// `osprey-agent hook-floor`: the empty hooks stay attached until SIGINT or SIGTERM.
fn hook_floor(
    probes: Option<PathBuf>,
    cgroup: Option<PathBuf>,
    tcx: Option<(String, bool)>,
    bpf_stats: bool,
) -> Result<()> {
    let floor = match (tcx, cgroup) {
        (Some((device, ingress)), _) => hook_floor::HookFloor::Tcx { device, ingress },
        (None, Some(c)) => hook_floor::HookFloor::Cgroup(c),
        (None, None) => hook_floor::HookFloor::Cgroup(node_agent::cgroup::v2_root()?),
    };
    let path = agent::probes_path(&probes.unwrap_or_default())?;
    let _hooks = hook_floor::attach_empty_hooks(path, floor, bpf_stats)?;
    println!("osprey-agent: empty hooks attached");
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(agent::shutdown_signal());
    Ok(())
}

/// `osprey-agent map-memory`: a line per map of the running agent, then the
/// totals: `name type key value entries memory per_cpu at16 at64 at128`.
fn map_memory(probes: &std::path::Path) -> Result<()> {
    use node_agent::kernel::map_memory::{of_loaded, possible_cpus};
    let object = std::fs::read(probes)?;
    let object = aya_obj::Object::parse(&object)?;
    let names: Vec<String> = object.programs.keys().cloned().collect();
    let maps = of_loaded(&names);
    if maps.is_empty() {
        anyhow::bail!(
            "no loaded program of {} (is the agent running?)",
            probes.display()
        );
    }
    let here = possible_cpus();
    let mut totals = [0u64; 4];
    for m in &maps {
        let row = [
            m.memory_bytes,
            m.projected(here, 16),
            m.projected(here, 64),
            m.projected(here, 128),
        ];
        println!(
            "{} {} {} {} {} {} {} {} {} {}",
            m.name,
            m.map_type,
            m.key_size,
            m.value_size,
            m.max_entries,
            row[0],
            m.per_cpu_bytes(),
            row[1],
            row[2],
            row[3]
        );
        for (t, v) in totals.iter_mut().zip(row) {
            *t += v;
        }
    }
    println!(
        "TOTAL cpus={here} {} {} {} {}",
        totals[0], totals[1], totals[2], totals[3]
    );
    Ok(())
}
