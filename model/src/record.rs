//! The wire types of flow records: what `/api/v1/flows`, the flow log and
//! `osprey-agent observe` carry (field names follow Hubble's flow JSON where
//! they can), and the filter the API and CLI apply to them. The agent builds
//! records from kernel keys; the CLI and the collector only read them.

use std::{fmt::Write as _, net::IpAddr, time::SystemTime};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Forwarded,
    Dropped,
}

/// One flow over one drain interval, or the packets of one flow the kernel
/// dropped for one reason. Field names follow Hubble's flow JSON where they can.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FlowRecord {
    /// RFC 3339, UTC.
    pub time: String,
    pub verdict: Verdict,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub drop_reason: Option<String>,
    /// The drop's reason is one the config ignores (`drop_reasons_ignored`,
    /// e.g. a socket's queue purged at close): not a network drop, so the
    /// record is shown only to a filter that names its reason, and never
    /// written to the flow log.
    #[serde(skip_serializing_if = "std::ops::Not::not", default)]
    pub drop_ignored: bool,
    /// The kernel function that freed a dropped packet (`skb:kfree_skb`'s
    /// location, named by `/proc/kallsyms`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub drop_location: Option<String>,
    /// TCP, UDP, ICMPv4, ICMPv6, Other.
    pub protocol: String,
    pub source_ip: String,
    pub source_port: u16,
    pub destination_ip: String,
    pub destination_port: u16,
    /// ingress / egress (at the socket); absent for drops.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub traffic_direction: Option<String>,
    pub bytes: u64,
    pub packets: u64,
    /// First and last packet of the flow in this record's interval (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub first_seen: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub last_seen: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub tcp_flags: Vec<String>,
    /// Mean smoothed TCP RTT of the flow's sending socket over the interval (µs).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rtt_us: Option<u64>,
    /// The DNS message, for DNS records.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub dns: Option<DnsInfo>,
    /// The HTTP request and its response, for HTTP records (Hubble's `l7.http`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub http: Option<HttpInfo>,
    /// Pod identity, once the Kubernetes mapping knows it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source_namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub source_pod: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub destination_namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub destination_pod: Option<String>,
    /// The Service (`namespace/name`) whose ClusterIP the destination is, as
    /// the client's socket sent to it before kube-proxy rewrote it.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub destination_service: Option<String>,
}

/// The DNS part of a record (Hubble's `l7.dns`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DnsInfo {
    pub query: String,
    pub qtype: String,
    pub id: u16,
    pub response: bool,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub rcode: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub ips: Vec<String>,
    /// Query to answer, for answers whose query was seen.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub latency_ms: Option<f64>,
}

/// The HTTP part of a record: one request with its response, as the
/// socket of `reporter` (`server` or `client`) saw them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpInfo {
    pub method: String,
    pub path: String,
    pub status: u16,
    /// Request start to response start, from kernel timestamps.
    pub latency_ms: f64,
    pub reporter: String,
    /// The W3C trace id (lowercase hex) of the request, if it has one.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub trace_id: Option<String>,
}

/// `ip:port`, with an IPv6 address in brackets.
pub fn endpoint(ip: &str, port: u16) -> String {
    if ip.contains(':') {
        format!("[{ip}]:{port}")
    } else {
        format!("{ip}:{port}")
    }
}

/// `namespace/pod:port` when the pod is known (as `hubble observe` prints
/// it), else `ip:port`.
fn side(ip: &str, port: u16, namespace: &Option<String>, pod: &Option<String>) -> String {
    match (namespace, pod) {
        (Some(ns), Some(pod)) => format!("{ns}/{pod}:{port}"),
        _ => endpoint(ip, port),
    }
}

impl FlowRecord {
    /// A record with its identity set and every optional field empty.
    pub fn new(
        time: SystemTime,
        verdict: Verdict,
        protocol: &str,
        source: (String, u16),
        destination: (String, u16),
        packets: u64,
    ) -> Self {
        Self {
            time: humantime::format_rfc3339_millis(time).to_string(),
            verdict,
            drop_reason: None,
            drop_ignored: false,
            drop_location: None,
            protocol: protocol.to_owned(),
            source_ip: source.0,
            source_port: source.1,
            destination_ip: destination.0,
            destination_port: destination.1,
            traffic_direction: None,
            bytes: 0,
            packets,
            first_seen: None,
            last_seen: None,
            tcp_flags: Vec::new(),
            rtt_us: None,
            dns: None,
            http: None,
            source_namespace: None,
            source_pod: None,
            destination_namespace: None,
            destination_pod: None,
            destination_service: None,
        }
    }

    /// One line, like `hubble observe`'s compact output.
    pub fn compact(&self) -> String {
        let mut out = format!(
            "{}: {} -> {} {}",
            self.time,
            side(
                &self.source_ip,
                self.source_port,
                &self.source_namespace,
                &self.source_pod
            ),
            match &self.destination_service {
                Some(service) => format!("{service}:{}", self.destination_port),
                None => side(
                    &self.destination_ip,
                    self.destination_port,
                    &self.destination_namespace,
                    &self.destination_pod,
                ),
            },
            self.protocol,
        );
        if !self.tcp_flags.is_empty() {
            let _ = write!(out, " [{}]", self.tcp_flags.join(","));
        }
        if let Some(dns) = &self.dns {
            let kind = if dns.response { "answer" } else { "query" };
            let _ = write!(out, " DNS {kind} {} {}", dns.query, dns.qtype);
            if let Some(rcode) = &dns.rcode {
                let _ = write!(out, " ({rcode})");
            }
            if !dns.ips.is_empty() {
                let _ = write!(out, " {}", dns.ips.join(","));
            }
            if let Some(ms) = dns.latency_ms {
                let _ = write!(out, " {ms:.3}ms");
            }
        }
        if let Some(http) = &self.http {
            let _ = write!(
                out,
                " HTTP/1.1 {} {} {} {:.3}ms ({})",
                http.method, http.path, http.status, http.latency_ms, http.reporter
            );
            if let Some(trace) = &http.trace_id {
                let _ = write!(out, " trace_id={trace}");
            }
        }
        match (&self.verdict, &self.drop_reason) {
            (Verdict::Dropped, Some(reason)) => {
                let _ = write!(out, " DROPPED ({reason}");
                if let Some(at) = &self.drop_location {
                    let _ = write!(out, " at {at}");
                }
                let _ = write!(out, ") packets={}", self.packets);
            }
            _ => {
                let _ = write!(
                    out,
                    " {} FORWARDED bytes={} packets={}",
                    self.traffic_direction.as_deref().unwrap_or("-"),
                    self.bytes,
                    self.packets
                );
                if let Some(rtt) = self.rtt_us {
                    let _ = write!(out, " rtt={rtt}us");
                }
            }
        }
        out
    }
}

/// Filters of the API and CLI; every given filter must match.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FlowFilter {
    /// Source or destination address.
    pub ip: Option<IpAddr>,
    /// Source or destination port.
    pub port: Option<u16>,
    /// TCP, UDP, ICMPv4, ICMPv6 (case-insensitive).
    pub protocol: Option<String>,
    pub verdict: Option<Verdict>,
    pub drop_reason: Option<String>,
    /// Source or destination namespace / pod.
    pub namespace: Option<String>,
    pub pod: Option<String>,
    /// One side only, as `hubble observe --from-ip/--to-ip/--from-pod/…`.
    pub from_ip: Option<IpAddr>,
    pub to_ip: Option<IpAddr>,
    pub from_namespace: Option<String>,
    pub to_namespace: Option<String>,
    pub from_pod: Option<String>,
    pub to_pod: Option<String>,
    /// Records to this Service (`namespace/name`), `hubble observe --to-service`.
    pub to_service: Option<String>,
    /// HTTP records with this response status code (`hubble observe --http-status`).
    pub http_status: Option<u16>,
    /// HTTP records with this request method (case-insensitive).
    pub http_method: Option<String>,
}

impl FlowFilter {
    pub fn matches(&self, r: &FlowRecord) -> bool {
        let ip_ok = self.ip.is_none_or(|ip| {
            let ip = ip.to_string();
            r.source_ip == ip || r.destination_ip == ip
        });
        let port_ok = self
            .port
            .is_none_or(|p| r.source_port == p || r.destination_port == p);
        let proto_ok = self
            .protocol
            .as_ref()
            .is_none_or(|p| r.protocol.eq_ignore_ascii_case(p));
        let verdict_ok = self.verdict.is_none_or(|v| r.verdict == v);
        let reason_ok = match &self.drop_reason {
            Some(want) => r
                .drop_reason
                .as_ref()
                .is_some_and(|got| got.eq_ignore_ascii_case(want)),
            None => !r.drop_ignored,
        };
        let ns_ok = self.namespace.as_ref().is_none_or(|ns| {
            r.source_namespace.as_ref() == Some(ns) || r.destination_namespace.as_ref() == Some(ns)
        });
        let pod_ok = self.pod.as_ref().is_none_or(|p| {
            r.source_pod.as_ref() == Some(p) || r.destination_pod.as_ref() == Some(p)
        });
        let name = |want: &Option<String>, got: &Option<String>| {
            want.as_ref().is_none_or(|w| got.as_ref() == Some(w))
        };
        let addr = |want: Option<IpAddr>, got: &str| want.is_none_or(|w| w.to_string() == got);
        let sides_ok = addr(self.from_ip, &r.source_ip)
            && addr(self.to_ip, &r.destination_ip)
            && name(&self.from_namespace, &r.source_namespace)
            && name(&self.to_namespace, &r.destination_namespace)
            && name(&self.from_pod, &r.source_pod)
            && name(&self.to_pod, &r.destination_pod)
            && name(&self.to_service, &r.destination_service);
        let http_ok = self
            .http_status
            .is_none_or(|s| r.http.as_ref().is_some_and(|h| h.status == s))
            && self.http_method.as_ref().is_none_or(|m| {
                r.http
                    .as_ref()
                    .is_some_and(|h| h.method.eq_ignore_ascii_case(m))
            });
        ip_ok
            && port_ok
            && proto_ok
            && verdict_ok
            && reason_ok
            && ns_ok
            && pod_ok
            && sides_ok
            && http_ok
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> FlowRecord {
        FlowRecord {
            time: "2026-11-21T16:00:00.000Z".into(),
            verdict: Verdict::Dropped,
            drop_reason: Some("NETFILTER_DROP".into()),
            drop_ignored: false,
            drop_location: Some("nf_hook_slow".into()),
            protocol: "UDP".into(),
            source_ip: "10.0.0.1".into(),
            source_port: 4000,
            destination_ip: "10.0.0.2".into(),
            destination_port: 53,
            traffic_direction: None,
            bytes: 0,
            packets: 3,
            first_seen: None,
            last_seen: None,
            tcp_flags: vec![],
            rtt_us: None,
            dns: None,
            http: None,
            source_namespace: Some("default".into()),
            source_pod: None,
            destination_namespace: None,
            destination_pod: None,
            destination_service: None,
        }
    }

    #[test]
    fn each_filter_narrows() {
        let r = record();
        let yes = |f: FlowFilter| assert!(f.matches(&r), "{f:?}");
        let no = |f: FlowFilter| assert!(!f.matches(&r), "{f:?}");
        yes(FlowFilter::default());
        yes(FlowFilter {
            ip: Some("10.0.0.2".parse().unwrap()),
            ..Default::default()
        });
        no(FlowFilter {
            ip: Some("10.0.0.3".parse().unwrap()),
            ..Default::default()
        });
        yes(FlowFilter {
            port: Some(53),
            ..Default::default()
        });
        no(FlowFilter {
            port: Some(80),
            ..Default::default()
        });
        yes(FlowFilter {
            protocol: Some("udp".into()),
            ..Default::default()
        });
        no(FlowFilter {
            protocol: Some("TCP".into()),
            ..Default::default()
        });
        yes(FlowFilter {
            verdict: Some(Verdict::Dropped),
            ..Default::default()
        });
        no(FlowFilter {
            verdict: Some(Verdict::Forwarded),
            ..Default::default()
        });
        yes(FlowFilter {
            drop_reason: Some("netfilter_drop".into()),
            ..Default::default()
        });
        no(FlowFilter {
            drop_reason: Some("NO_SOCKET".into()),
            ..Default::default()
        });
        yes(FlowFilter {
            namespace: Some("default".into()),
            ..Default::default()
        });
        no(FlowFilter {
            pod: Some("web".into()),
            ..Default::default()
        });
        yes(FlowFilter {
            from_ip: Some("10.0.0.1".parse().unwrap()),
            to_ip: Some("10.0.0.2".parse().unwrap()),
            from_namespace: Some("default".into()),
            ..Default::default()
        });
        no(FlowFilter {
            to_ip: Some("10.0.0.1".parse().unwrap()),
            ..Default::default()
        });
        no(FlowFilter {
            to_namespace: Some("default".into()),
            ..Default::default()
        });
        no(FlowFilter {
            from_pod: Some("web".into()),
            ..Default::default()
        });
        no(FlowFilter {
            to_service: Some("shop/web".into()),
            ..Default::default()
        });
        let to_service = FlowRecord {
            destination_service: Some("shop/web".into()),
            ..r.clone()
        };
        assert!(
            FlowFilter {
                to_service: Some("shop/web".into()),
                ..Default::default()
            }
            .matches(&to_service)
        );
        assert!(to_service.compact().contains(" -> shop/web:53 UDP"));
    }

    #[test]
    fn json_round_trips_and_compact_reads_like_hubble() {
        let r = record();
        let json = serde_json::to_string(&r).unwrap();
        assert!(json.contains("\"verdict\":\"DROPPED\""), "{json}");
        assert_eq!(serde_json::from_str::<FlowRecord>(&json).unwrap(), r);
        assert_eq!(
            r.compact(),
            "2026-11-21T16:00:00.000Z: 10.0.0.1:4000 -> 10.0.0.2:53 UDP DROPPED (NETFILTER_DROP at nf_hook_slow) packets=3"
        );
        let named = FlowRecord {
            source_pod: Some("web-1".into()),
            ..r
        };
        assert!(
            named
                .compact()
                .contains(": default/web-1:4000 -> 10.0.0.2:53 UDP"),
            "{}",
            named.compact()
        );
    }
}
