//! node-exporter's core node families, same names, labels and units, read
//! with the procfs crate at scrape time: cpu, loadavg, meminfo, netdev, pressure;
//! filesystem and diskstats in `node_storage`, netstat and sockstat in `node_net`.

use procfs::{Current, CurrentSI, KernelStats, LoadAverage, Meminfo};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, NoLabelSet},
    metrics::MetricType,
};

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CpuLabels {
    cpu: String,
    mode: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct DeviceLabels {
    device: String,
}

#[derive(Debug, Default)]
pub struct NodeCollector;

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: f64,
) -> Result<(), std::fmt::Error> {
    encoder
        .encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&value)
}

impl NodeCollector {
    fn cpu(encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(stats) = KernelStats::current() else {
            return Ok(());
        };
        let tps = procfs::ticks_per_second() as f64;
        let mut family = encoder.encode_descriptor(
            "node_cpu_seconds",
            "Seconds the CPUs spent in each mode.",
            None,
            MetricType::Counter,
        )?;
        for (i, t) in stats.cpu_time.iter().enumerate() {
            let modes = [
                ("user", Some(t.user)),
                ("nice", Some(t.nice)),
                ("system", Some(t.system)),
                ("idle", Some(t.idle)),
                ("iowait", t.iowait),
                ("irq", t.irq),
                ("softirq", t.softirq),
                ("steal", t.steal),
            ];
            for (mode, ticks) in modes {
                let Some(ticks) = ticks else { continue };
                let labels = CpuLabels {
                    cpu: i.to_string(),
                    mode,
                };
                family
                    .encode_family(&labels)?
                    .encode_counter::<NoLabelSet, _, f64>(&(ticks as f64 / tps), None)?;
            }
        }
        Ok(())
    }

    fn load(encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(load) = LoadAverage::current() else {
            return Ok(());
        };
        // /proc/loadavg has two decimals; drop the f32 noise.
        let two = |v: f32| (f64::from(v) * 100.0).round() / 100.0;
        gauge(encoder, "node_load1", "1m load average.", two(load.one))?;
        gauge(encoder, "node_load5", "5m load average.", two(load.five))?;
        gauge(
            encoder,
            "node_load15",
            "15m load average.",
            two(load.fifteen),
        )
    }

    fn memory(encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(m) = Meminfo::current() else {
            return Ok(());
        };
        let fields = [
            ("MemTotal", Some(m.mem_total)),
            ("MemFree", Some(m.mem_free)),
            ("MemAvailable", m.mem_available),
            ("Buffers", Some(m.buffers)),
            ("Cached", Some(m.cached)),
            ("SwapCached", Some(m.swap_cached)),
            ("Active", Some(m.active)),
            ("Inactive", Some(m.inactive)),
            ("SwapTotal", Some(m.swap_total)),
            ("SwapFree", Some(m.swap_free)),
            ("Dirty", Some(m.dirty)),
            ("Shmem", m.shmem),
        ];
        for (field, value) in fields {
            let Some(value) = value else { continue };
            let name = format!("node_memory_{field}_bytes");
            let help = format!("Memory information field {field}_bytes.");
            gauge(encoder, &name, &help, value as f64)?;
        }
        Ok(())
    }

    fn network(encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(devices) = procfs::net::dev_status() else {
            return Ok(());
        };
        let mut devices: Vec<_> = devices.into_values().collect();
        devices.sort_by(|a, b| a.name.cmp(&b.name));
        type Get = fn(&procfs::net::DeviceStatus) -> u64;
        let families: [(&str, &str, Get); 8] = [
            (
                "node_network_receive_bytes",
                "Network device statistic receive_bytes.",
                |d| d.recv_bytes,
            ),
            (
                "node_network_receive_packets",
                "Network device statistic receive_packets.",
                |d| d.recv_packets,
            ),
            (
                "node_network_receive_errs",
                "Network device statistic receive_errs.",
                |d| d.recv_errs,
            ),
            (
                "node_network_receive_drop",
                "Network device statistic receive_drop.",
                |d| d.recv_drop,
            ),
            (
                "node_network_transmit_bytes",
                "Network device statistic transmit_bytes.",
                |d| d.sent_bytes,
            ),
            (
                "node_network_transmit_packets",
                "Network device statistic transmit_packets.",
                |d| d.sent_packets,
            ),
            (
                "node_network_transmit_errs",
                "Network device statistic transmit_errs.",
                |d| d.sent_errs,
            ),
            (
                "node_network_transmit_drop",
                "Network device statistic transmit_drop.",
                |d| d.sent_drop,
            ),
        ];
        for (name, help, get) in families {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for d in &devices {
                family
                    .encode_family(&DeviceLabels {
                        device: d.name.clone(),
                    })?
                    .encode_counter::<NoLabelSet, _, f64>(&(get(d) as f64), None)?;
            }
        }
        Ok(())
    }
}

impl NodeCollector {
    /// PSI, where the kernel provides it (/proc/pressure).
    fn pressure(encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use procfs::{CpuPressure, IoPressure, MemoryPressure};
        let mut totals: Vec<(&str, &str, u64)> = Vec::new();
        if let Ok(p) = CpuPressure::current() {
            totals.push((
                "node_pressure_cpu_waiting_seconds",
                "Total time in seconds that processes have waited for CPU time",
                p.some.total,
            ));
        }
        if let Ok(p) = IoPressure::current() {
            totals.push((
                "node_pressure_io_waiting_seconds",
                "Total time in seconds that processes have waited due to IO congestion",
                p.some.total,
            ));
            totals.push((
                "node_pressure_io_stalled_seconds",
                "Total time in seconds no process could make progress due to IO congestion",
                p.full.total,
            ));
        }
        if let Ok(p) = MemoryPressure::current() {
            totals.push((
                "node_pressure_memory_waiting_seconds",
                "Total time in seconds that processes have waited for memory",
                p.some.total,
            ));
            totals.push((
                "node_pressure_memory_stalled_seconds",
                "Total time in seconds no process could make progress due to memory congestion",
                p.full.total,
            ));
        }
        for (name, help, micros) in totals {
            encoder
                .encode_descriptor(name, help, None, MetricType::Counter)?
                .encode_counter::<NoLabelSet, _, f64>(&(micros as f64 / 1e6), None)?;
        }
        Ok(())
    }
}

impl Collector for NodeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        Self::cpu(&mut encoder)?;
        Self::load(&mut encoder)?;
        Self::memory(&mut encoder)?;
        Self::network(&mut encoder)?;
        Self::pressure(&mut encoder)?;
        super::node_storage::encode_filesystems(&mut encoder)?;
        super::node_storage::encode_disks(&mut encoder)?;
        super::node_net::encode_netstat(&mut encoder)?;
        super::node_net::encode_sockstat(&mut encoder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;

    #[test]
    fn encodes_node_exporter_names_from_this_host() {
        let mut registry = Registry::default();
        registry.register_collector(Box::new(NodeCollector));
        let text = crate::test_support::exposition(&registry);
        for needle in [
            "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"}",
            "node_load1 ",
            "node_memory_MemTotal_bytes ",
            "node_network_receive_bytes_total{device=\"lo\"}",
        ] {
            assert!(text.contains(needle), "missing {needle}");
        }
    }
}
