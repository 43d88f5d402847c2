//! `osprey-agent prog-bench`: what each flow program costs per packet on its
//! own, free of the network stack's noise. The kernel runs the program on a
//! built packet `repeat` times in a loop (`BPF_PROG_TEST_RUN`) and reports the
//! mean time per run; the empty program of the same hook, run the same way,
//! is the loop's and the call's share. The packet repeats, so this is the
//! path of a stream (its flow slot hit), with warm caches: the floor of the
//! per-packet cost, beside the bench's kernel statistics under real traffic.
//!
//! The object is loaded apart from any running agent (maps of its own) and
//! nothing is attached. Each test run ends with the kernel freeing its test
//! packet through `kfree_skb`, which an agent running meanwhile counts as a
//! drop (reason NOT_SPECIFIED, on the built packets' flows): the
//! bench runs this with no agent up.

use std::{
    os::fd::{AsFd, AsRawFd},
    path::PathBuf,
};

use anyhow::{Context, Result, bail};
use aya::{EbpfLoader, programs::CgroupSkb};

use crate::kernel::test_run;

/// One test packet: a name and its bytes from the Ethernet header on.
struct Packet {
    name: &'static str,
    bytes: Vec<u8>,
}

/// IPv4 UDP with a 64-byte payload, IPv4 TCP (an ACK of a stream), IPv6 UDP.
fn packets() -> Vec<Packet> {
    let eth = |ethertype: u16| {
        let mut b = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
        b.extend_from_slice(&ethertype.to_be_bytes());
        b
    };
    let ipv4 = |protocol: u8, l4_len: usize| {
        let total = (20 + l4_len) as u16;
        let mut h = vec![0x45, 0];
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&[0, 1, 0x40, 0, 64, protocol, 0, 0]);
        h.extend_from_slice(&[10, 250, 0, 1, 10, 250, 0, 2]);
        h
    };
    let udp = |len: usize| {
        let mut u = Vec::from(40000u16.to_be_bytes());
        u.extend_from_slice(&5201u16.to_be_bytes());
        u.extend_from_slice(&((8 + len) as u16).to_be_bytes());
        u.extend_from_slice(&[0, 0]);
        u.extend(std::iter::repeat_n(0xab, len));
        u
    };
    let tcp_ack = {
        let mut t = Vec::from(40000u16.to_be_bytes());
        t.extend_from_slice(&5201u16.to_be_bytes());
        t.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0]);
        t
    };
    let mut v4_udp = eth(0x0800);
    v4_udp.extend(ipv4(17, 8 + 64));
    v4_udp.extend(udp(64));
    let mut v4_tcp = eth(0x0800);
    v4_tcp.extend(ipv4(6, 20));
    v4_tcp.extend(tcp_ack);
    let mut v6_udp = eth(0x86dd);
    v6_udp.extend_from_slice(&[0x60, 0, 0, 0]);
    v6_udp.extend_from_slice(&((8 + 64) as u16).to_be_bytes());
    v6_udp.extend_from_slice(&[17, 64]);
    v6_udp.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    v6_udp.extend_from_slice(&[0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    v6_udp.extend(udp(64));
    vec![
        Packet {
            name: "IPv4 UDP 64 B",
            bytes: v4_udp,
        },
        Packet {
            name: "IPv4 TCP ACK",
            bytes: v4_tcp,
        },
        Packet {
            name: "IPv6 UDP 64 B",
            bytes: v6_udp,
        },
    ]
}

/// Mean ns per run of the program behind `fd` over `repeat` runs on `packet`.
fn test_run(fd: i32, packet: &[u8], repeat: u32) -> Result<u32> {
    let run = test_run::test_run(fd, packet, repeat)?;
    if run.retval != 1 {
        bail!(
            "the program returned {} (a cgroup_skb observer passes: 1)",
            run.retval
        );
    }
    Ok(run.ns_per_run)
}

/// Prints, per packet and flow program, its ns/run, the empty program's and
/// the difference: the fastest of `rounds` rounds of `repeat` runs each.
pub fn run(path: PathBuf, repeat: u32, rounds: usize) -> Result<()> {
    if rounds == 0 || repeat == 0 {
        bail!("--repeat and --rounds must be at least 1");
    }
    let mut ebpf = EbpfLoader::new()
        .load_file(&path)
        .with_context(|| format!("loading {}", path.display()))?;
    let pairs = [
        ("flow_egress", "noop_egress"),
        ("flow_ingress", "noop_ingress"),
    ];
    let mut fds = Vec::new();
    for name in pairs.iter().flat_map(|(a, b)| [*a, *b]) {
        let program: &mut CgroupSkb = ebpf
            .program_mut(name)
            .with_context(|| format!("no program {name}"))?
            .try_into()?;
        program
            .load()
            .with_context(|| format!("loading {name} (verifier)"))?;
        fds.push((name, program.fd()?.as_fd().as_raw_fd()));
    }
    let fd = |name: &str| fds.iter().find(|(n, _)| *n == name).map(|(_, fd)| *fd);
    println!("| packet | program | ns/run | empty program ns/run | ns/run above empty |");
    println!("|---|---|---|---|---|");
    for packet in packets() {
        for (program, empty) in pairs {
            let (mut with, mut without) = (Vec::new(), Vec::new());
            for _ in 0..rounds {
                let run = |name: &str| {
                    test_run(fd(name).expect("loaded above"), &packet.bytes, repeat)
                        .with_context(|| format!("test run of {name} on {}", packet.name))
                };
                without.push(run(empty)?);
                with.push(run(program)?);
            }
            let (w, e) = (fastest(&with), fastest(&without));
            println!(
                "| {} | {program} | {w} | {e} | {} |",
                packet.name,
                i64::from(w) - i64::from(e)
            );
        }
    }
    Ok(())
}

/// The fastest round: the machine's noise (other tenants, interrupts) only
/// ever adds time to a round, so the least is the closest to the program's
/// own cost.
fn fastest(v: &[u32]) -> u32 {
    v.iter().copied().min().unwrap_or(0)
}
