//! node-exporter's `netstat` and `sockstat` families: the kernel's SNMP and
//! socket counters of the host network namespace, same names and default
//! field selection (`--collector.netstat.fields`).

use osprey_model::catalogue::{NODE_NETSTAT, NODE_SOCKSTAT, NODE_SOCKSTAT_MEM_BYTES};
use prometheus_client::{encoding::DescriptorEncoder, metrics::MetricType};

/// `Proto: names…` / `Proto: values…` line pairs (/proc/net/snmp,
/// /proc/net/netstat), borrowed from `text`.
fn paired(text: &str) -> impl Iterator<Item = (&str, &str, f64)> {
    let mut lines = text.lines();
    std::iter::from_fn(move || Some((lines.next()?, lines.next()?)))
        .filter_map(|(names, values)| Some((names.split_once(':')?, values.split_once(':')?.1)))
        .flat_map(|((proto, names), values)| {
            names
                .split_whitespace()
                .zip(values.split_whitespace())
                .filter_map(move |(n, v)| Some((proto, n, v.parse::<f64>().ok()?)))
        })
}

/// /proc/net/snmp6: `Ip6InReceives  123` → ("Ip6", "InReceives"), borrowed
/// from `text`.
fn snmp6(text: &str) -> impl Iterator<Item = (&str, &str, f64)> {
    text.lines().filter_map(|l| {
        let (name, value) = l.split_once(char::is_whitespace)?;
        let split = name.find('6')? + 1;
        let (proto, key) = name.split_at(split);
        Some((proto, key, value.trim().parse().ok()?))
    })
}

/// node-exporter's default field regex, spelled out.
fn wanted(proto: &str, key: &str) -> bool {
    matches!(key, "InErrors" | "InErrs")
        || (proto == "Ip" && key == "Forwarding")
        || (matches!(proto, "Ip6" | "IpExt") && matches!(key, "InOctets" | "OutOctets"))
        || (matches!(proto, "Icmp" | "Icmp6") && matches!(key, "InMsgs" | "OutMsgs"))
        || (proto == "TcpExt"
            && (key.starts_with("Listen")
                || key.starts_with("Syncookies")
                || matches!(key, "TCPSynRetrans" | "TCPTimeouts")))
        || (proto == "Tcp"
            && matches!(
                key,
                "ActiveOpens"
                    | "InSegs"
                    | "OutSegs"
                    | "OutRsts"
                    | "PassiveOpens"
                    | "RetransSegs"
                    | "CurrEstab"
            ))
        || (matches!(proto, "Udp" | "Udp6")
            && matches!(
                key,
                "InDatagrams" | "OutDatagrams" | "NoPorts" | "RcvbufErrors" | "SndbufErrors"
            ))
}

pub fn encode_netstat(encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let (snmp, netstat, six) = (
        read("/proc/net/snmp"),
        read("/proc/net/netstat"),
        read("/proc/net/snmp6"),
    );
    let stats = paired(&snmp).chain(paired(&netstat)).chain(snmp6(&six));
    for (proto, key, value) in stats.filter(|(p, k, _)| wanted(p, k)) {
        let parts = [proto, key];
        let (name, help) = (NODE_NETSTAT.name(&parts), NODE_NETSTAT.help(&parts));
        encoder
            .encode_descriptor(&name, &help, None, MetricType::Unknown)?
            .encode_gauge(&value)?;
    }
    Ok(())
}

/// /proc/net/sockstat(6): `TCP: inuse 5 orphan 0 tw 0 alloc 7 mem 1`, as
/// (name, help, value); `mem` (pages) is also given in bytes.
fn sockstat(text: &str, page_size: f64) -> Vec<(String, String, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let Some((proto, rest)) = line.split_once(':') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        for kv in fields.chunks(2) {
            let [k, v] = kv else { continue };
            let Ok(v) = v.parse::<f64>() else { continue };
            let parts = [proto, k];
            out.push((NODE_SOCKSTAT.name(&parts), NODE_SOCKSTAT.help(&parts), v));
            if *k == "mem" {
                let p = NODE_SOCKSTAT_MEM_BYTES;
                out.push((p.name(&[proto]), p.help(&[proto]), v * page_size));
            }
        }
    }
    out
}

pub fn encode_sockstat(encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let page_size = procfs::page_size() as f64;
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let mut stats = sockstat(&read("/proc/net/sockstat"), page_size);
    stats.extend(sockstat(&read("/proc/net/sockstat6"), page_size));
    for (name, help, value) in stats {
        encoder
            .encode_descriptor(&name, &help, None, MetricType::Gauge)?
            .encode_gauge(&value)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net_files_like_node_exporter() {
        let snmp = "Tcp: RtoMin ActiveOpens CurrEstab\nTcp: 200 17 3\nUdp: InDatagrams NoPorts\nUdp: 5 1\n";
        let got: Vec<_> = paired(snmp).collect();
        assert!(got.contains(&("Tcp", "ActiveOpens", 17.0)));
        assert!(got.contains(&("Udp", "NoPorts", 1.0)));
        assert!(wanted("Tcp", "ActiveOpens") && wanted("Tcp", "CurrEstab"));
        assert!(!wanted("Tcp", "RtoMin"));
        assert!(wanted("Udp", "NoPorts") && wanted("TcpExt", "ListenDrops"));
        let six: Vec<_> =
            snmp6("Ip6InOctets                     \t1024\nUdpLite6InDatagrams 0\n").collect();
        assert_eq!(six[0], ("Ip6", "InOctets", 1024.0));
        assert_eq!(six[1].0, "UdpLite6");
        let s = sockstat(
            "sockets: used 120\nTCP: inuse 5 orphan 0 tw 2 alloc 7 mem 3\n",
            4096.0,
        );
        assert!(s.contains(&(
            "node_sockstat_sockets_used".into(),
            "Number of sockets_used sockets in state.".into(),
            120.0
        )));
        assert!(s.contains(&(
            "node_sockstat_TCP_mem_bytes".into(),
            "Number of TCP_mem_bytes sockets in state.".into(),
            3.0 * 4096.0
        )));
    }
}
