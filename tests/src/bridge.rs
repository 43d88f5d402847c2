//! A node as a bridge CNI makes it: a "node" namespace holding a Linux
//! bridge, and pod namespaces each joined to it by a veth pair. Unlike
//! `PodPair`, nothing is tidied: IPv6 stays on (link-local addresses,
//! duplicate address detection, router solicitations, MLD reports), ARP
//! resolves neighbours, and the bridge floods what it has not learnt.

use std::{net::IpAddr, process::Command};

use crate::netns::{Ends, IFACE, Netns};

/// Pods on one bridge, addressed `<prefix>.1`, `<prefix>.2`, … /24, their
/// default route the node (`<prefix>.254`, forwarding on).
pub struct BridgedNode {
    pub pods: Vec<Netns>,
    pub ips: Vec<IpAddr>,
    // Last: deleting the node namespace takes the bridge and the pods'
    // veth ends with it.
    node: Netns,
}

impl BridgedNode {
    /// `n` pods on `prefix` (three octets, e.g. "10.217.0"). Links come up
    /// now, so their neighbour discovery and MLD happen while the caller
    /// watches.
    pub fn new(tag: &str, prefix: &str, n: usize) -> Self {
        let node = Netns::new(&format!("{tag}n"));
        node.exec(&["ip", "link", "add", "br0", "type", "bridge"]);
        node.exec(&[
            "ip",
            "addr",
            "add",
            &format!("{prefix}.254/24"),
            "dev",
            "br0",
        ]);
        node.exec(&["ip", "link", "set", "br0", "up"]);
        // The node routes between its pods and what lies beyond.
        node.exec(&["sysctl", "-q", "-w", "net.ipv4.ip_forward=1"]);
        let mut pods = Vec::new();
        let mut ips = Vec::new();
        for i in 1..=n {
            let pod = Netns::new(&format!("{tag}{i}"));
            let host_end = format!("veth{i}");
            node.exec(&[
                "ip", "link", "add", &host_end, "type", "veth", "peer", "name", IFACE, "netns",
                &pod.name,
            ]);
            node.exec(&["ip", "link", "set", &host_end, "master", "br0", "up"]);
            let ip = format!("{prefix}.{i}");
            pod.exec(&["ip", "addr", "add", &format!("{ip}/24"), "dev", IFACE]);
            pod.exec(&["ip", "link", "set", IFACE, "up"]);
            pod.exec(&[
                "ip",
                "route",
                "add",
                "default",
                "via",
                &format!("{prefix}.254"),
            ]);
            ips.push(ip.parse().unwrap());
            pods.push(pod);
        }
        Self { pods, ips, node }
    }

    /// Every address of pod `i` (its IPv4 and its IPv6 link-local), once
    /// duplicate address detection has finished (up to `secs`).
    pub fn addresses(&self, i: usize, secs: u64) -> Vec<IpAddr> {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        loop {
            let out = Command::new("ip")
                .args(["netns", "exec", &self.pods[i].name])
                .args(["ip", "-o", "addr", "show", "dev", IFACE])
                .output()
                .expect("ip addr");
            let text = String::from_utf8_lossy(&out.stdout);
            let tentative = text.contains("tentative");
            let addrs: Vec<IpAddr> = text
                .lines()
                .filter_map(|l| {
                    let mut f = l.split_whitespace().skip_while(|w| !w.starts_with("inet"));
                    f.nth(1)?.split('/').next()?.parse().ok()
                })
                .collect();
            if (!tentative && addrs.iter().any(IpAddr::is_ipv6))
                || std::time::Instant::now() > deadline
            {
                return addrs;
            }
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }

    pub fn node(&self) -> &Netns {
        &self.node
    }

    /// Pod `client` talking to pod `server`.
    pub fn ends(&self, client: usize, server: usize) -> PodEnds<'_> {
        PodEnds {
            node: self,
            client,
            server,
        }
    }
}

/// Two pods of a `BridgedNode`, as the ends of an exchange.
pub struct PodEnds<'a> {
    node: &'a BridgedNode,
    client: usize,
    server: usize,
}

impl Ends for PodEnds<'_> {
    fn client(&self) -> (&Netns, IpAddr) {
        (&self.node.pods[self.client], self.node.ips[self.client])
    }

    fn server(&self) -> (&Netns, IpAddr) {
        (&self.node.pods[self.server], self.node.ips[self.server])
    }
}
