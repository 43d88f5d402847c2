//! Attach/detach lifecycle: a clean stop and a crash both leave nothing
//! attached in the kernel, and a second run after a crash works.

use std::collections::BTreeSet;

use osprey_e2e::{
    agent::{self, Agent},
    eventually,
    exposition::samples,
    is_root, require,
};

/// Kernel ids of the programs the agent says it loaded.
fn program_ids(agent: &Agent) -> BTreeSet<u32> {
    eventually(10, "osprey_bpf_program_info", || {
        let ids: BTreeSet<u32> = samples(&agent.scrape().1)
            .into_iter()
            .filter(|s| s.name == "osprey_bpf_program_info")
            .filter_map(|s| s.labels.get("id")?.parse().ok())
            .collect();
        // flow_ingress, flow_egress, skb_drop, tcp_retransmit, tcp_state,
        // sched_wakeup, sched_wakeup_new, sched_switch, sched_exit, block_io,
        // oom_victim (attached), clock_sample and symbol_name (loaded, only
        // ever test-run).
        (ids.len() == 13).then_some(ids)
    })
}

/// Ids of every program loaded in the kernel right now.
fn loaded_in_kernel() -> BTreeSet<u32> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|p| p.id())
        .collect()
}

fn start(args: &[&str]) -> Agent {
    Agent::start(args).unwrap_or_else(|e| panic!("agent failed to start: {e}"))
}

#[test]
fn crash_leaves_nothing_attached_and_a_second_run_works_then_stops_cleanly() {
    require!(is_root(), "root is needed to load eBPF");
    require!(
        agent::binary().is_some(),
        "OSPREY_AGENT_BIN unset: run `cargo xtask test`"
    );

    let first = start(&[]);
    let ids = program_ids(&first);
    assert!(
        ids.is_subset(&loaded_in_kernel()),
        "{ids:?} not loaded in the kernel"
    );
    first.kill_hard();
    eventually(
        10,
        "the crashed agent's programs to leave the kernel",
        || loaded_in_kernel().is_disjoint(&ids).then_some(()),
    );

    let second = start(&[]);
    let ids = program_ids(&second);
    assert!(ids.is_subset(&loaded_in_kernel()));
    assert!(second.stop(), "SIGTERM must exit 0");
    eventually(
        10,
        "the stopped agent's programs to leave the kernel",
        || loaded_in_kernel().is_disjoint(&ids).then_some(()),
    );
}

#[test]
fn runqueue_probes_can_be_left_off() {
    let Some(agent) = agent::for_test(&["--runqueue-latency", "false"]) else {
        return;
    };
    // The thirteen less the four scheduler programs.
    let programs: BTreeSet<String> = eventually(10, "osprey_bpf_program_info", || {
        let names: BTreeSet<String> = samples(&agent.scrape().1)
            .into_iter()
            .filter(|s| s.name == "osprey_bpf_program_info")
            .filter_map(|s| s.labels.get("program").cloned())
            .collect();
        (names.len() == 9).then_some(names)
    });
    assert!(
        programs.iter().all(|p| !p.starts_with("sched_")),
        "{programs:?}"
    );
    for kept in [
        "flow_egress",
        "flow_ingress",
        "skb_drop",
        "block_io",
        "oom_victim",
    ] {
        assert!(programs.contains(kept), "{kept} missing from {programs:?}");
    }
    assert!(agent.stop(), "SIGTERM must exit 0");
}

#[test]
fn bad_config_is_a_clear_error() {
    require!(
        agent::binary().is_some(),
        "OSPREY_AGENT_BIN unset: run `cargo xtask test`"
    );
    let out = std::process::Command::new(agent::binary().unwrap())
        .args(["--flow-map-entries", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("flow_map_entries must be at least 1"),
        "{stderr}"
    );
}

/// SIGTERM drains the last interval: with a drain interval far longer than
/// the test, our flow reaches the flow log only through the final drain,
/// and /healthz said ok while the agent ran.
#[test]
fn sigterm_applies_the_last_interval_before_exit() {
    let log = std::env::temp_dir().join(format!("osprey-last-{}.jsonl", std::process::id()));
    let _ = std::fs::remove_file(&log);
    let Some(agent) = agent::for_test(&[
        "--drain-interval-ms",
        "600000",
        "--flow-log",
        log.to_str().unwrap(),
    ]) else {
        return;
    };
    let health = ureq::get(&format!("{}/healthz", agent.base_url))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert_eq!(health, "ok\n");
    let pair = osprey_e2e::netns::PodPair::new("lt", "10.212.0.1", "10.212.0.2", 24);
    let sent = osprey_e2e::traffic::udp_send(&pair, 7500, 4, 100);
    assert!(agent.stop(), "the agent exits 0 on SIGTERM");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    let ours: Vec<serde_json::Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .filter(|r: &serde_json::Value| {
            r["source_ip"] == "10.212.0.1"
                && r["source_port"] == sent
                && r["destination_port"] == 7500
        })
        .collect();
    let packets: u64 = ours
        .iter()
        .filter(|r| r["traffic_direction"] == "egress")
        .map(|r| r["packets"].as_u64().unwrap())
        .sum();
    assert_eq!(packets, 4, "the final drain's records: {ours:?}");
}
