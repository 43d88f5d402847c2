//! The flow drain's hand-over is exact: a program that read the active map
//! index before a flip, and is still running when the drain starts (a vCPU
//! the hypervisor descheduled mid-program), has its packet in the batch
//! drained from the map it picked. The self-test program `handover_probe`
//! holds the map it picked for a millisecond or two before writing to it;
//! without the drain's RCU wait its packet lands after the drain read that
//! map, and this test fails.

use std::{
    os::fd::{AsFd, AsRawFd},
    thread,
    time::{Duration, Instant},
};

use node_agent::{
    flows::drain::{FlowBatch, FlowDrainer},
    kernel::{probes::Probes, test_run::test_run_raw_tracepoint},
};
use osprey_e2e::{agent, cgroup::TestCgroup, is_root, require};

/// Flips that must fall inside a run, and the rounds allowed for them.
const HELD: u64 = 10;
const MAX_ROUNDS: usize = 400;

/// The marker packets `handover_probe` wrote that a batch holds.
fn marked(batch: &FlowBatch) -> u64 {
    batch
        .flows
        .iter()
        .filter(|f| f.key == osprey_abi::handover_key(f.key.src_port))
        .map(|f| f.stats.packets)
        .sum()
}

#[test]
fn a_program_still_on_the_old_map_is_in_that_maps_drain() {
    require!(is_root(), "loading eBPF needs root");
    let object = agent::binary().map(|b| b.with_file_name("osprey-probes.bpf.o"));
    require!(
        object.as_ref().is_some_and(|o| o.exists()),
        "no probes object beside OSPREY_AGENT_BIN (run `cargo xtask test`)"
    );
    // The flow programs attach to an empty cgroup: no traffic of anyone's.
    let cgroup = TestCgroup::new("handover");
    let (mut probes, maps, _) = Probes::load_and_attach(
        object.unwrap(),
        cgroup.v2_dir().clone(),
        1024,
        false,
        None,
        0,
    )
    .expect("the probes load");
    let program = probes
        .test_program("handover_probe")
        .expect("handover_probe loads");
    let fd = program.as_fd().as_raw_fd();
    let mut drainer = FlowDrainer::new(maps);
    // How long the program holds its map (a raw tracepoint's test run is
    // not timed by the kernel).
    let start = Instant::now();
    test_run_raw_tracepoint(fd).expect("test run of handover_probe");
    let run = start.elapsed();
    assert!(
        run > Duration::from_micros(100),
        "handover_probe ran {run:?}: too short to catch"
    );
    drainer.drain().expect("a first drain");

    // Rounds until the flip has fallen inside the program's run, after it
    // read the index, `HELD` times. On a busy machine the run can start
    // after the flip (the thread or the syscall was late) or end before
    // it; the flip's delay steps later after the one and earlier after the
    // other, from a quarter of the run. Every round checks that the packet
    // is drained once.
    let step = run / 16;
    let mut flip_after = run / 4;
    let (mut held, mut early, mut late) = (0, 0, 0);
    for round in 0..MAX_ROUNDS {
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let program = thread::spawn(move || {
            started_tx.send(()).unwrap();
            let ran = test_run_raw_tracepoint(fd);
            (ran, Instant::now())
        });
        started_rx.recv().unwrap();
        thread::sleep(flip_after);
        let flipped = Instant::now();
        let during = drainer.drain().expect("drain");
        let (ran, ended) = program.join().unwrap();
        ran.expect("test run of handover_probe");
        let after = drainer.drain().expect("drain");
        let (during, after) = (marked(&during), marked(&after));
        assert_eq!(
            (during + after, during <= 1),
            (1, true),
            "round {round}: the program's one packet belongs in the drain of the map it \
             picked (in the drain during its run: {during}, in the next: {after})"
        );
        if ended <= flipped {
            late += 1;
            flip_after = flip_after.saturating_sub(step);
        } else if during == 0 {
            early += 1;
            flip_after = (flip_after + step).min(run);
        } else {
            held += 1;
        }
        if held == HELD {
            return;
        }
    }
    panic!(
        "only {held} of {MAX_ROUNDS} flips fell while the program held the old map \
         ({early} before it read the index, {late} after it ended; run {run:?})"
    );
}
