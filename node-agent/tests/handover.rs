//! The flow drain's hand-over is exact: a program that read the active map
//! index before a flip, and is still running when the drain starts (a vCPU
//! the hypervisor descheduled mid-program), has its packet in the batch
//! drained from the map it picked. The self-test program `handover_probe`
//! says when it has picked a map, holds it until it sees the flip, and
//! writes to it a millisecond or two later; without the drain's RCU wait
//! its packet lands after the drain read that map, and this test fails.
//! The test flips only once the program has picked, and the program itself
//! says whether the flip fell while it held the map: no clock of the test's
//! decides what a round proved.

use std::{
    os::fd::{AsFd, AsRawFd},
    thread,
    time::{Duration, Instant},
};

use aya::maps::{Array, MapData};

use node_agent::{
    flows::drain::{FlowBatch, FlowDrainer},
    kernel::{probes::Probes, test_run::test_run_raw_tracepoint},
};
use osprey_e2e::{agent, cgroup::TestCgroup, is_root, require};

/// Rounds, each a flip inside the program's hold.
const ROUNDS: usize = 10;

/// The marker packets `handover_probe` wrote that a batch holds: those
/// written after a flip it saw while holding its map, and the others.
fn marked(batch: &FlowBatch) -> (u64, u64) {
    let count = |held| {
        batch
            .flows
            .iter()
            .filter(|f| f.key == osprey_abi::handover_key(f.key.src_port, held))
            .map(|f| f.stats.packets)
            .sum()
    };
    (count(true), count(false))
}

/// Two CPUs this process may run on: the program's thread and the test's
/// must not share one, or the test could not flip while the program holds
/// its CPU.
fn two_cpus() -> Option<(usize, usize)> {
    // SAFETY: a zeroed cpu_set_t is an empty set; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above, with the set's own size.
    let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
    assert_eq!(
        rc,
        0,
        "sched_getaffinity: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: reads bits of an initialised set.
    let mut cpus = (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) });
    Some((cpus.next()?, cpus.next()?))
}

/// Runs the calling thread on `cpu` only.
fn pin_to(cpu: usize) {
    // SAFETY: as in `two_cpus`.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu` is below CPU_SETSIZE (it came from a set).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: a valid set of its own size, for this thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
    assert_eq!(
        rc,
        0,
        "sched_setaffinity: {}",
        std::io::Error::last_os_error()
    );
}

/// Waits until `handover_probe` has read the active index.
fn wait_for_pick(picked: &Array<MapData, u64>) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while picked.get(&0, 0).expect("read HANDOVER_PICKED") == 0 {
        assert!(
            Instant::now() < deadline,
            "handover_probe did not start within 10 s"
        );
        std::hint::spin_loop();
    }
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
    let (program, mut picked) = probes.handover_program().expect("handover_probe loads");
    let fd = program.as_fd().as_raw_fd();
    let mut drainer = FlowDrainer::new(maps);
    drainer.drain().expect("a first drain");
    let cpus = two_cpus();
    require!(cpus.is_some(), "the hand-over test needs two CPUs");
    let (test_cpu, program_cpu) = cpus.unwrap();
    pin_to(test_cpu);

    for round in 0..ROUNDS {
        picked.set(0, 0, 0).expect("clear HANDOVER_PICKED");
        let program = thread::spawn(move || {
            pin_to(program_cpu);
            test_run_raw_tracepoint(fd)
        });
        wait_for_pick(&picked);
        let during = drainer.drain().expect("drain");
        program.join().unwrap().expect("test run of handover_probe");
        let after = drainer.drain().expect("drain");
        let (during, after) = (marked(&during), marked(&after));
        assert_eq!(
            (during, after),
            ((1, 0), (0, 0)),
            "round {round}: the program saw the flip while it held the map it picked, so its \
             packet belongs in the drain of that map ((held, not held) packets in the drain \
             during its run: {during:?}, in the next: {after:?})"
        );
    }
}
