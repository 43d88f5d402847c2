//! Network namespaces joined by veth pairs: each namespace is a test "pod".

use std::{
    fs::File,
    net::IpAddr,
    os::fd::AsRawFd,
    process::Command,
    sync::atomic::{AtomicU32, Ordering},
};

static SEQ: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("running ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn in_ns(ns: &str, cmd: &[&str]) {
    let mut args = vec!["netns", "exec", ns];
    args.extend_from_slice(cmd);
    let out = Command::new("ip")
        .args(&args)
        .output()
        .expect("running ip netns exec");
    assert!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let name = format!(
            "osp-{tag}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        ip(&["netns", "add", &name]);
        in_ns(&name, &["ip", "link", "set", "lo", "up"]);
        Self { name }
    }

    /// Runs `f` on a thread that has entered this namespace. Sockets created
    /// there stay in the namespace for their whole life.
    pub fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/var/run/netns/{}", self.name);
        std::thread::spawn(move || {
            let file = File::open(&path).expect("opening the netns");
            // SAFETY: setns on this thread only; the fd is valid for the call.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(rc, 0, "setns({path}): {}", std::io::Error::last_os_error());
            f()
        })
    }

    pub fn exec(&self, cmd: &[&str]) {
        in_ns(&self.name, cmd);
    }

    /// Reads an interface counter (`rx_bytes`, `rx_packets`, `tx_bytes`,
    /// `tx_packets`) inside the namespace, from /proc/net/dev.
    pub fn counter(&self, ifname: &'static str, stat: &'static str) -> u64 {
        self.run(move || read_dev_counter(ifname, stat))
            .join()
            .unwrap()
    }
}

fn read_dev_counter(ifname: &str, stat: &str) -> u64 {
    // /proc/thread-self/net follows the calling thread's network namespace.
    let text = std::fs::read_to_string("/proc/thread-self/net/dev")
        .expect("reading /proc/thread-self/net/dev");
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{ifname}:")))
        .unwrap_or_else(|| panic!("{ifname} not in /proc/net/dev:\n{text}"));
    let fields: Vec<u64> = line
        .split_once(':')
        .unwrap()
        .1
        .split_whitespace()
        .map(|f| f.parse().unwrap())
        .collect();
    let index = match stat {
        "rx_bytes" => 0,
        "rx_packets" => 1,
        "tx_bytes" => 8,
        "rx_dropped" => 3,
        "tx_packets" => 9,
        "tx_dropped" => 11,
        other => panic!("unsupported counter {other}"),
    };
    fields[index]
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// The two ends of an exchange: a client pod and a server pod, each a
/// namespace and its address. A `PodPair`, or two pods of a `BridgedNode`.
pub trait Ends {
    fn client(&self) -> (&Netns, IpAddr);
    fn server(&self) -> (&Netns, IpAddr);
}

impl Ends for PodPair {
    fn client(&self) -> (&Netns, IpAddr) {
        (&self.a, self.a_ip)
    }

    fn server(&self) -> (&Netns, IpAddr) {
        (&self.b, self.b_ip)
    }
}

/// Two namespaces joined by a veth pair, addressed `a` and `b`.
pub struct PodPair {
    pub a: Netns,
    pub b: Netns,
    pub a_ip: IpAddr,
    pub b_ip: IpAddr,
}

/// The interface name inside each namespace.
pub const IFACE: &str = "eth0";

impl PodPair {
    /// `a_ip`/`b_ip` with prefix `prefix`. Offloads are turned off so every
    /// skb is one wire packet and interface counters are exact ground truth.
    /// IPv6 is disabled in IPv4 pairs so no ND/MLD traffic disturbs the counters.
    pub fn new(tag: &str, a_ip: &str, b_ip: &str, prefix: u8) -> Self {
        let a = Netns::new(&format!("{tag}a"));
        let b = Netns::new(&format!("{tag}b"));
        // No router solicitations or link-local addresses: the only IPv6
        // packets on the link are the ones the test's sockets send.
        for ns in [&a, &b] {
            for key in [
                "accept_ra=0",
                "router_solicitations=0",
                "addr_gen_mode=1",
                "dad_transmits=0",
            ] {
                ns.exec(&[
                    "sysctl",
                    "-q",
                    "-w",
                    &format!("net.ipv6.conf.default.{key}"),
                ]);
            }
        }
        let (va, vb) = (format!("v{}a", &a.name[4..]), format!("v{}b", &b.name[4..]));
        let (va, vb) = (shorten(&va), shorten(&vb));
        let seq = SEQ.fetch_add(1, Ordering::Relaxed) as u8;
        let (mac_a, mac_b) = (
            format!("02:05:{:02x}:{:02x}:00:0a", std::process::id() as u8, seq),
            format!("02:05:{:02x}:{:02x}:00:0b", std::process::id() as u8, seq),
        );
        ip(&[
            "link", "add", &va, "address", &mac_a, "type", "veth", "peer", "name", &vb, "address",
            &mac_b,
        ]);
        ip(&["link", "set", &va, "netns", &a.name]);
        ip(&["link", "set", &vb, "netns", &b.name]);
        let a_addr: IpAddr = a_ip.parse().unwrap();
        for (ns, dev, addr) in [(&a, &va, a_ip), (&b, &vb, b_ip)] {
            ns.exec(&["ip", "link", "set", dev, "name", IFACE]);
            if a_addr.is_ipv4() {
                ns.exec(&["sysctl", "-q", "-w", "net.ipv6.conf.all.disable_ipv6=1"]);
                ns.exec(&["sysctl", "-q", "-w", "net.ipv6.conf.default.disable_ipv6=1"]);
                ns.exec(&[
                    "ip",
                    "addr",
                    "add",
                    &format!("{addr}/{prefix}"),
                    "dev",
                    IFACE,
                ]);
            } else {
                ns.exec(&[
                    "ip",
                    "addr",
                    "add",
                    &format!("{addr}/{prefix}"),
                    "dev",
                    IFACE,
                    "nodad",
                ]);
            }
            ns.exec(&[
                "ethtool", "-K", IFACE, "tso", "off", "gso", "off", "gro", "off",
            ]);
            ns.exec(&["ip", "link", "set", IFACE, "up"]);
        }
        // Static neighbours: no ARP/ND on the wire, so interface counters
        // hold exactly the IP packets the sockets sent.
        a.exec(&[
            "ip",
            "neigh",
            "replace",
            b_ip,
            "lladdr",
            &mac_b,
            "dev",
            IFACE,
            "nud",
            "permanent",
        ]);
        b.exec(&[
            "ip",
            "neigh",
            "replace",
            a_ip,
            "lladdr",
            &mac_a,
            "dev",
            IFACE,
            "nud",
            "permanent",
        ]);
        let pair = Self {
            a,
            b,
            a_ip: a_addr,
            b_ip: b_ip.parse().unwrap(),
        };
        if !a_addr.is_ipv4() {
            pair.wait_for_quiet_link();
        }
        pair
    }

    /// IPv6 joins multicast groups when addresses come up and reports it (MLD)
    /// a few times within about a second. Wait until the link has been silent
    /// for 1.5 s so that the interface counters see only the test's traffic.
    fn wait_for_quiet_link(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
        let total = || self.a.counter(IFACE, "tx_packets") + self.b.counter(IFACE, "tx_packets");
        let mut last = total();
        let mut quiet_since = std::time::Instant::now();
        while std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(250));
            let now = total();
            if now != last {
                last = now;
                quiet_since = std::time::Instant::now();
            } else if quiet_since.elapsed() >= std::time::Duration::from_millis(1500) {
                return;
            }
        }
    }
}

fn shorten(name: &str) -> String {
    // Interface names are at most 15 bytes.
    let digest: u32 = name
        .bytes()
        .fold(2166136261u32, |h, b| (h ^ b as u32).wrapping_mul(16777619));
    format!("osp{:08x}{}", digest, &name[name.len() - 1..])
}
