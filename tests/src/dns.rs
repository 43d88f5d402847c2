//! A real DNS server for the tests: dnsmasq (Debian's dnsmasq-base, from
//! `cargo xtask setup`) in pod B, authoritative for `osprey.test`
//! (`web.osprey.test` is 10.9.9.9, any other name NXDOMAIN), and a UDP
//! client in pod A that measures what it got.

use std::{
    net::{SocketAddr, UdpSocket},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use simple_dns::{CLASS, Name, Packet, PacketFlag, Question, RCODE, TYPE, rdata::OPT};

use crate::netns::Ends;

/// dnsmasq in pod B on its address, port 53; stopped on drop.
pub struct Dnsmasq(Child);

impl Dnsmasq {
    /// Starts it in the server pod with `extra` flags (more records).
    pub fn start(ends: &impl Ends, extra: &[&str]) -> Self {
        let (pod, ip) = ends.server();
        let child = Command::new("ip")
            .args(["netns", "exec", &pod.name, "dnsmasq"])
            .args(["--keep-in-foreground", "--no-resolv", "--no-hosts"])
            .args(["--conf-file=/dev/null", "--pid-file=", "--user=root"])
            .args(["--bind-interfaces", &format!("--listen-address={ip}")])
            .args([
                "--local=/osprey.test/",
                "--address=/web.osprey.test/10.9.9.9",
            ])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting dnsmasq");
        // Until its socket is bound, a query is a real drop (no socket).
        let listening = pod
            .run(|| {
                let deadline = Instant::now() + Duration::from_secs(10);
                while Instant::now() < deadline {
                    let udp = std::fs::read_to_string("/proc/thread-self/net/udp").unwrap();
                    if udp.lines().skip(1).any(|l| {
                        l.split_whitespace()
                            .nth(1)
                            .is_some_and(|a| a.ends_with(":0035"))
                    }) {
                        return true;
                    }
                    std::thread::sleep(Duration::from_millis(20));
                }
                false
            })
            .join()
            .unwrap();
        assert!(listening, "dnsmasq did not bind port 53 within 10 s");
        Self(child)
    }
}

impl Drop for Dnsmasq {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A query for `name` of `qtype`, recursion desired; with `edns`, an OPT
/// record offering 4096-byte answers.
pub fn query(name: &'static str, id: u16, qtype: TYPE, edns: bool) -> Vec<u8> {
    let mut query = Packet::new_query(id);
    query.set_flags(PacketFlag::RECURSION_DESIRED);
    query.questions.push(Question::new(
        Name::new_unchecked(name),
        qtype.into(),
        CLASS::IN.into(),
        false,
    ));
    if edns {
        *query.opt_mut() = Some(OPT {
            opt_codes: Vec::new(),
            udp_packet_size: 4096,
            version: 0,
        });
    }
    query.build_bytes_vec().unwrap()
}

pub fn a_query(name: &'static str, id: u16) -> Vec<u8> {
    query(name, id, TYPE::A, false)
}

/// What the client got for one query.
#[derive(Debug, Clone, Copy)]
pub struct Answer {
    pub rcode: RCODE,
    pub answers: usize,
    /// The response's size on the wire.
    pub bytes: usize,
    /// From the (last) send to the response.
    pub latency: Duration,
}

/// Sends each query from one socket in the client pod to dnsmasq in the
/// server pod, in order, each until its own answer (by id) comes back:
/// dnsmasq may still be starting.
pub fn resolve_udp(ends: &impl Ends, queries: Vec<Vec<u8>>) -> Vec<Answer> {
    let ((pod, a), (_, b)) = (ends.client(), ends.server());
    pod.run(move || {
        let sock = UdpSocket::bind(SocketAddr::new(a, 0)).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let mut buf = [0u8; 4096];
        let mut out = Vec::new();
        for bytes in queries {
            let id = Packet::parse(&bytes).unwrap().id();
            let answer = (0..50)
                .find_map(|_| {
                    let start = Instant::now();
                    sock.send_to(&bytes, SocketAddr::new(b, 53)).unwrap();
                    let n = sock.recv(&mut buf).ok()?;
                    let latency = start.elapsed();
                    let reply = Packet::parse(&buf[..n]).ok()?;
                    (reply.id() == id).then(|| Answer {
                        rcode: reply.rcode(),
                        answers: reply.answers.len(),
                        bytes: n,
                        latency,
                    })
                })
                .expect("dnsmasq never answered");
            out.push(answer);
        }
        out
    })
    .join()
    .unwrap()
}
