//! Label sets of node-exporter's families, with its label names: per CPU
//! and mode, per network or block device, per mounted filesystem. The
//! device and filesystem sets borrow their values (a scrape encodes them
//! once and keeps nothing).

use prometheus_client::encoding::{EncodeLabel, EncodeLabelSet, LabelSetEncoder};

/// `node_cpu_seconds_total`: the CPU's index and the mode (`user`, `nice`,
/// `system`, `idle`, `iowait`, `irq`, `softirq`, `steal`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct CpuLabels {
    pub cpu: usize,
    pub mode: &'static str,
}

/// `node_network_*_total` (a network device: `eth0`) and `node_disk_*`
/// (a block device: `vda`, `nvme0n1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceLabels<'a> {
    pub device: &'a str,
}

impl EncodeLabelSet for DeviceLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        ("device", self.device).encode(encoder.encode_label())
    }
}

/// `node_filesystem_*`: the mounted device (`none` when the mount has no
/// source), its filesystem type and its mount point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FilesystemLabels<'a> {
    pub device: &'a str,
    pub fstype: &'a str,
    pub mountpoint: &'a str,
}

impl EncodeLabelSet for FilesystemLabels<'_> {
    fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        ("device", self.device).encode(encoder.encode_label())?;
        ("fstype", self.fstype).encode(encoder.encode_label())?;
        ("mountpoint", self.mountpoint).encode(encoder.encode_label())
    }
}
