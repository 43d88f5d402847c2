//! node-exporter's core node families, same names, labels and units, read
//! with the procfs crate at scrape time: cpu, loadavg, meminfo, netdev, pressure;
//! filesystem and diskstats in `node_storage`, netstat and sockstat in `node_net`.

use osprey_model::{
    catalogue::*,
    labels::{CpuLabels, DeviceLabels},
};
use procfs::{Current, CurrentSI, KernelStats, LoadAverage, Meminfo};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, NoLabelSet},
    metrics::MetricType,
};

#[derive(Debug, Default)]
pub struct NodeCollector {
    /// See `Config::host_root`.
    pub host_root: Option<std::path::PathBuf>,
    /// Devices left out of `node_network_*` (`Config::node_network_device_exclude`).
    pub network_exclude: Option<regex_lite::Regex>,
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    desc: &MetricDesc,
    value: f64,
) -> Result<(), std::fmt::Error> {
    desc.encode_descriptor(encoder, MetricType::Gauge)?
        .encode_gauge(&value)
}

impl NodeCollector {
    fn cpu(encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(stats) = KernelStats::current() else {
            return Ok(());
        };
        let tps = procfs::ticks_per_second() as f64;
        let mut family = NODE_CPU_SECONDS.encode_descriptor(encoder, MetricType::Counter)?;
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
                let labels = CpuLabels { cpu: i, mode };
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
        gauge(encoder, &NODE_LOAD1, two(load.one))?;
        gauge(encoder, &NODE_LOAD5, two(load.five))?;
        gauge(encoder, &NODE_LOAD15, two(load.fifteen))
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
            let (name, help) = (NODE_MEMORY.name(&[field]), NODE_MEMORY.help(&[field]));
            encoder
                .encode_descriptor(&name, &help, None, MetricType::Gauge)?
                .encode_gauge(&(value as f64))?;
        }
        Ok(())
    }

    fn network(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(devices) = procfs::net::dev_status() else {
            return Ok(());
        };
        let excluded = |name: &str| {
            self.network_exclude
                .as_ref()
                .is_some_and(|r| r.is_match(name))
        };
        let mut devices: Vec<_> = devices
            .into_values()
            .filter(|d| !excluded(&d.name))
            .collect();
        devices.sort_by(|a, b| a.name.cmp(&b.name));
        type Get = fn(&procfs::net::DeviceStatus) -> u64;
        let families: [(&MetricDesc, Get); 8] = [
            (&NODE_NETWORK_RECEIVE_BYTES, |d| d.recv_bytes),
            (&NODE_NETWORK_RECEIVE_PACKETS, |d| d.recv_packets),
            (&NODE_NETWORK_RECEIVE_ERRS, |d| d.recv_errs),
            (&NODE_NETWORK_RECEIVE_DROP, |d| d.recv_drop),
            (&NODE_NETWORK_TRANSMIT_BYTES, |d| d.sent_bytes),
            (&NODE_NETWORK_TRANSMIT_PACKETS, |d| d.sent_packets),
            (&NODE_NETWORK_TRANSMIT_ERRS, |d| d.sent_errs),
            (&NODE_NETWORK_TRANSMIT_DROP, |d| d.sent_drop),
        ];
        for (desc, get) in families {
            let mut family = desc.encode_descriptor(encoder, MetricType::Counter)?;
            for d in &devices {
                family
                    .encode_family(&DeviceLabels { device: &d.name })?
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
        let mut totals: Vec<(&MetricDesc, u64)> = Vec::new();
        if let Ok(p) = CpuPressure::current() {
            totals.push((&NODE_PRESSURE_CPU_WAITING_SECONDS, p.some.total));
        }
        if let Ok(p) = IoPressure::current() {
            totals.push((&NODE_PRESSURE_IO_WAITING_SECONDS, p.some.total));
            totals.push((&NODE_PRESSURE_IO_STALLED_SECONDS, p.full.total));
        }
        if let Ok(p) = MemoryPressure::current() {
            totals.push((&NODE_PRESSURE_MEMORY_WAITING_SECONDS, p.some.total));
            totals.push((&NODE_PRESSURE_MEMORY_STALLED_SECONDS, p.full.total));
        }
        for (desc, micros) in totals {
            desc.encode_descriptor(encoder, MetricType::Counter)?
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
        self.network(&mut encoder)?;
        Self::pressure(&mut encoder)?;
        super::node_storage::encode_filesystems(&mut encoder, self.host_root.as_deref())?;
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
        registry.register_collector(Box::new(NodeCollector::default()));
        let text = crate::test_support::exposition(&registry);
        for needle in [
            "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"}",
            "node_load1 ",
            "node_memory_MemTotal_bytes ",
            "node_network_receive_bytes_total{device=\"lo\"}",
        ] {
            assert!(text.contains(needle), "missing {needle}");
        }
        // The catalogue describes every family: a constant one with its
        // help, a generated one through its pattern.
        let mut families = 0;
        for line in text.lines() {
            let Some(rest) = line.strip_prefix("# HELP ") else {
                continue;
            };
            let (name, help) = rest.split_once(' ').unwrap();
            match describe(name) {
                Some(Description::Family(d)) => assert_eq!(d.help, help, "{name}"),
                Some(Description::Generated(_)) => {}
                None => panic!("{name}: not in the catalogue"),
            }
            families += 1;
        }
        assert!(families > 20, "{text}");
    }
}
