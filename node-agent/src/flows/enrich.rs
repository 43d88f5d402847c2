//! Stage 2 of the flow pipeline: enrichment. Kernel keys (`FlowKey`,
//! `DropKey`, `ConnKey`, cgroup ids) become typed identities here, once, in
//! one place: addresses as `IpAddr`, the pods that own them, drop reasons
//! by the kernel's name. Every handler after this sees only identities.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::{Arc, Mutex},
};

use osprey_abi::{DIR_EGRESS, DropKey, FAMILY_V4, FlowKey, FlowLoss, PROTO_TCP};
use osprey_model::labels::{Direction, Protocol, TraceExemplar};

use super::{
    drain::{FlowBatch, FlowDelta},
    labels,
    traces::TraceIndex,
};
use crate::{
    kernel::kallsyms::{Kallsyms, SymbolProgram},
    pods::{PodIndex, PodMeta, Reserved, ServiceMeta},
};

/// A cgroup v2 id, as the kernel's `bpf_skb_cgroup_id` gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct CgroupId(pub u64);

/// One end of a flow.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    pub ip: IpAddr,
    /// For ICMP: the type (source) or code (destination).
    pub port: u16,
    /// The pod that owns the address, if any.
    pub pod: Option<Arc<PodMeta>>,
    /// The Service whose ClusterIP the address is (a client's egress sees
    /// it before kube-proxy rewrites it), if any.
    pub service: Option<Arc<ServiceMeta>>,
    /// For an address that is neither: `host`, `remote-node`, `world`, or
    /// `unknown` before the API's first lists.
    pub reserved: Option<Reserved>,
}

/// A flow key, typed and named.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowIdentity {
    pub source: Peer,
    pub destination: Peer,
    pub protocol: Protocol,
    /// The IP protocol number (`protocol` folds the rare ones into Other).
    pub protocol_number: u8,
    pub direction: Direction,
    pub v4: bool,
    pub cgroup: CgroupId,
    /// The trace most recently seen on the flow's connection (HTTP), the
    /// exemplar of the network series that count the flow.
    pub trace: Option<TraceExemplar>,
}

/// A dropped flow's packets, for one reason.
#[derive(Debug, Clone, PartialEq)]
pub struct Drop {
    pub flow: FlowIdentity,
    /// The kernel's name (`enum skb_drop_reason` without its prefix), or
    /// `UNKNOWN_<code>`.
    pub reason: String,
    /// The kernel function that freed the packets (`/proc/kallsyms`), or
    /// `unknown`.
    pub location: Arc<str>,
    /// A reason the config ignores (`drop_reasons_ignored`) from a function
    /// it does not count (`drop_locations_counted`): counted apart, not as a
    /// drop.
    pub ignored: bool,
    pub packets: u64,
}

/// A drained batch with every key resolved.
#[derive(Debug, Clone, Default)]
pub struct EnrichedBatch {
    pub flows: Vec<(FlowIdentity, FlowDelta)>,
    pub drops: Vec<Drop>,
    pub retransmits: Vec<(FlowIdentity, u64)>,
    /// Connection outcomes (`osprey_abi::CONN_*`) per socket.
    pub connections: Vec<(FlowIdentity, u32, u64)>,
    /// Cumulative loss counters since the probes were loaded.
    pub loss: FlowLoss,
    pub read_errors: u64,
}

/// Resolves kernel keys against the pod index and the kernel's drop-reason
/// table. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Enricher {
    pods: PodIndex,
    reasons: Arc<BTreeMap<u32, String>>,
    ignored: Arc<BTreeSet<u32>>,
    /// Functions whose drops count whatever their reason.
    counted_locations: Arc<BTreeSet<String>>,
    locations: Arc<Mutex<Kallsyms>>,
    traces: TraceIndex,
}

impl Enricher {
    pub fn new(pods: PodIndex, reasons: BTreeMap<u32, String>) -> Self {
        Self {
            pods,
            reasons: Arc::new(reasons),
            ignored: Arc::default(),
            counted_locations: Arc::default(),
            locations: Arc::default(),
            traces: TraceIndex::default(),
        }
    }

    /// Drops freed in these kernel functions are counted even when their
    /// reason is ignored (e.g. `NOT_SPECIFIED` frees of a driver known to
    /// drop without a reason).
    pub fn counting_locations(mut self, functions: &[String]) -> Self {
        self.counted_locations = Arc::new(functions.iter().map(|f| f.trim().to_owned()).collect());
        self
    }

    /// Has the kernel name drop locations (the `symbol_name` program), not
    /// a pass over `/proc/kallsyms`.
    pub fn naming_with(self, kernel: SymbolProgram) -> Self {
        *self.locations.lock().unwrap_or_else(|e| e.into_inner()) =
            Kallsyms::default().with_kernel(kernel);
        self
    }

    /// Names kernel addresses from `path` instead of `/proc/kallsyms`.
    pub fn with_kallsyms(self, path: impl Into<std::path::PathBuf>) -> Self {
        *self.locations.lock().unwrap_or_else(|e| e.into_inner()) = Kallsyms::at(path);
        self
    }

    /// The connections' traces, which the HTTP tracker notes.
    pub fn traces(&self) -> &TraceIndex {
        &self.traces
    }

    /// Drops with these reasons (names from the kernel's table, without the
    /// `SKB_DROP_REASON_` prefix, in any case) are marked ignored. Returns
    /// the names this kernel does not know.
    pub fn ignoring(mut self, names: &[String]) -> (Self, Vec<String>) {
        let mut unknown = Vec::new();
        let mut ignored = BTreeSet::new();
        for name in names {
            let want = name.trim();
            let want = want.strip_prefix("SKB_DROP_REASON_").unwrap_or(want);
            match self
                .reasons
                .iter()
                .find(|(_, n)| n.eq_ignore_ascii_case(want))
            {
                Some((code, _)) => {
                    ignored.insert(*code);
                }
                None => unknown.push(name.clone()),
            }
        }
        self.ignored = Arc::new(ignored);
        (self, unknown)
    }

    pub fn pods(&self) -> &PodIndex {
        &self.pods
    }

    /// An address and the pod of this node that owns it.
    pub fn peer(&self, ip: IpAddr, port: u16) -> Peer {
        let id = self.pods.identify(&ip);
        Peer {
            ip,
            port,
            pod: id.pod,
            service: id.service,
            reserved: id.reserved,
        }
    }

    pub fn flow(&self, key: &FlowKey) -> FlowIdentity {
        let src = (address(key.family, &key.src_addr), key.src_port);
        let dst = (address(key.family, &key.dst_addr), key.dst_port);
        FlowIdentity {
            source: self.peer(src.0, src.1),
            destination: self.peer(dst.0, dst.1),
            trace: (key.protocol == PROTO_TCP)
                .then(|| self.traces.get(src, dst))
                .flatten(),
            protocol: labels::protocol(key.protocol),
            protocol_number: key.protocol,
            direction: if key.direction == DIR_EGRESS {
                Direction::Egress
            } else {
                Direction::Ingress
            },
            v4: key.family == FAMILY_V4,
            cgroup: CgroupId(key.cgroup_id),
        }
    }

    pub fn reason_name(&self, reason: u32) -> String {
        self.reasons
            .get(&reason)
            .cloned()
            .unwrap_or_else(|| format!("UNKNOWN_{reason}"))
    }

    /// Drops with their reasons and locations named (new locations looked
    /// up together, one pass over kallsyms).
    fn drops(&self, drops: &[(DropKey, u64)]) -> Vec<Drop> {
        if drops.is_empty() {
            return Vec::new();
        }
        let mut locations = self.locations.lock().unwrap_or_else(|e| e.into_inner());
        locations.resolve(drops.iter().map(|(k, _)| k.location));
        drops
            .iter()
            .map(|(key, packets)| {
                let location = locations.name(key.location);
                Drop {
                    flow: self.flow(&key.flow),
                    reason: self.reason_name(key.reason),
                    ignored: self.ignored.contains(&key.reason)
                        && !self.counted_locations.contains(&*location),
                    location,
                    packets: *packets,
                }
            })
            .collect()
    }

    pub fn batch(&self, batch: FlowBatch) -> EnrichedBatch {
        let mut out = EnrichedBatch::default();
        self.batch_into(&batch, &mut out);
        out
    }

    /// Enriches `batch` into `out`, whose buffers are emptied and reused
    /// (the aggregator keeps one from drain to drain).
    pub fn batch_into(&self, batch: &FlowBatch, out: &mut EnrichedBatch) {
        out.flows.clear();
        out.flows
            .extend(batch.flows.iter().map(|d| (self.flow(&d.key), *d)));
        out.drops = self.drops(&batch.drops);
        out.retransmits.clear();
        out.retransmits.extend(
            batch
                .retransmits
                .iter()
                .map(|(key, n)| (self.flow(key), *n)),
        );
        out.connections.clear();
        out.connections.extend(
            batch
                .connections
                .iter()
                .map(|(key, n)| (self.flow(&key.flow), key.outcome, *n)),
        );
        out.loss = batch.loss;
        out.read_errors = batch.read_errors;
    }
}

/// The address of a kernel key's address words.
pub fn address(family: u8, addr: &[u32; 4]) -> IpAddr {
    let octets = osprey_abi::addr_octets(addr);
    if family == FAMILY_V4 {
        IpAddr::V4(Ipv4Addr::new(octets[0], octets[1], octets[2], octets[3]))
    } else {
        IpAddr::V6(Ipv6Addr::from(octets))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{db_pod, drops_of, v4_flow};
    use osprey_abi::PROTO_UDP;

    #[test]
    fn keys_become_addresses_pods_and_reason_names_once() {
        let pods = db_pod();
        let (enricher, unknown) = Enricher::new(
            pods,
            BTreeMap::from([(3, "SOCKET_CLOSE".into()), (12, "NETFILTER_DROP".into())]),
        )
        .ignoring(&["SKB_DROP_REASON_socket_close".into(), "NOPE".into()]);
        assert_eq!(unknown, ["NOPE"]);
        let flow = v4_flow([10, 0, 0, 1], 4000, [10, 0, 0, 2], 53, PROTO_UDP);
        let batch = enricher.batch(drops_of(flow, &[(3, 2), (12, 2), (99, 2)]));
        let d = &batch.drops;
        assert_eq!(d[0].flow.source.ip, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert!(d[0].flow.source.pod.is_none());
        assert_eq!(d[0].flow.destination.pod.as_ref().unwrap().name, "db-0");
        assert_eq!(d[0].flow.protocol, Protocol::Udp);
        assert_eq!(
            (d[0].reason.as_str(), d[0].ignored, d[0].packets),
            ("SOCKET_CLOSE", true, 2)
        );
        assert_eq!(
            (d[1].reason.as_str(), d[1].ignored),
            ("NETFILTER_DROP", false)
        );
        assert_eq!(d[2].reason, "UNKNOWN_99");
    }
}
