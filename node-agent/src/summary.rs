//! The live terminal summary of `cargo xtask run`: top flows by bytes.

use osprey_model::record::endpoint;
use std::fmt::Write as _;

use crate::flows::handlers::flow_series::Summary;

/// Renders the summary as a fixed-width table under a one-line header.
pub fn render(summary: &Summary, url: &str, interval_secs: f64) -> String {
    let top = &summary.top;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "osprey — {url} — {} flow series, {} packets lost — busiest flows (rate over the last {interval_secs:.0} s)",
        summary.series, summary.lost_packets
    );
    let _ = writeln!(
        out,
        "{:<7} {:<8} {:>41} → {:<41} {:>12} {:>9} {:>11}",
        "proto", "dir", "source", "destination", "bytes", "packets", "rate"
    );
    for flow in top {
        let l = &flow.labels;
        let rate = flow.recent_bytes as f64 / interval_secs.max(0.001);
        let _ = writeln!(
            out,
            "{:<7} {:<8} {:>41} → {:<41} {:>12} {:>9} {:>9}/s",
            l.protocol.as_str(),
            l.direction.as_str(),
            endpoint(&l.source_ip.to_string(), l.source_port),
            endpoint(&l.destination_ip.to_string(), l.destination_port),
            human(flow.bytes as f64),
            flow.packets,
            human(rate),
        );
    }
    if top.is_empty() {
        let _ = writeln!(out, "(no flows yet)");
    }
    out
}

fn human(bytes: f64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1}{}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flows::handlers::flow_series::TopFlow;
    use osprey_model::labels::{Address, Direction, FlowLabels, Protocol};

    #[test]
    fn renders_one_line_per_flow() {
        let top = vec![TopFlow {
            labels: FlowLabels {
                source_ip: Address::Ip("fd00::1".parse().unwrap()),
                source_port: 443,
                destination_ip: Address::Ip([10, 0, 0, 2].into()),
                destination_port: 5555,
                protocol: Protocol::Tcp,
                direction: Direction::Egress,
            },
            bytes: 3 * 1024 * 1024,
            packets: 2100,
            recent_bytes: 2048,
        }];
        let summary = Summary {
            top,
            series: 1,
            lost_packets: 0,
        };
        let text = render(&summary, "http://127.0.0.1:9811/metrics", 2.0);
        assert!(text.contains("[fd00::1]:443"), "{text}");
        assert!(text.contains("3.0MiB"), "{text}");
        assert!(text.contains("1.0KiB/s"), "{text}");
        assert_eq!(text.lines().count(), 3);
    }
}
