//! What the agent keeps of the cluster around its pods: Services (a
//! ClusterIP names its Service) and Nodes (their addresses are `host` or
//! `remote-node`, their pod ranges tell a pod address from the `world`), and
//! Hubble's reserved identities that follow from them.

use std::{fmt, net::IpAddr, str::FromStr};

use k8s_openapi::api::core::v1::{Node, Service};

/// A Service with a cluster address (headless Services have none and are
/// not kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceMeta {
    pub namespace: String,
    pub name: String,
    /// `spec.clusterIPs` (one per IP family).
    pub cluster_ips: Vec<IpAddr>,
}

impl ServiceMeta {
    /// None for an object without namespace or name, or without a
    /// ClusterIP (headless, ExternalName).
    pub fn from_service(service: &Service) -> Option<Self> {
        let namespace = service.metadata.namespace.clone()?;
        let name = service.metadata.name.clone()?;
        let spec = service.spec.as_ref()?;
        let mut cluster_ips: Vec<IpAddr> = spec
            .cluster_ips
            .iter()
            .flatten()
            .chain(spec.cluster_ip.iter())
            .filter_map(|ip| ip.parse().ok())
            .collect();
        cluster_ips.sort();
        cluster_ips.dedup();
        (!cluster_ips.is_empty()).then_some(Self {
            namespace,
            name,
            cluster_ips,
        })
    }

    /// `namespace/name`, the `service` context's value.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

/// A Node: its addresses and the pod ranges it hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeMeta {
    pub name: String,
    /// `status.addresses` of type InternalIP or ExternalIP.
    pub addresses: Vec<IpAddr>,
    /// `spec.podCIDRs` (or `spec.podCIDR`).
    pub pod_cidrs: Vec<Cidr>,
}

impl NodeMeta {
    pub fn from_node(node: &Node) -> Option<Self> {
        let name = node.metadata.name.clone()?;
        let addresses = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .into_iter()
            .flatten()
            .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
            .filter_map(|a| a.address.parse().ok())
            .collect();
        let spec = node.spec.as_ref();
        let mut pod_cidrs: Vec<Cidr> = spec
            .and_then(|s| s.pod_cidrs.as_ref())
            .into_iter()
            .flatten()
            .chain(spec.and_then(|s| s.pod_cidr.as_ref()))
            .filter_map(|c| c.parse().ok())
            .collect();
        pod_cidrs.sort();
        pod_cidrs.dedup();
        Some(Self {
            name,
            addresses,
            pod_cidrs,
        })
    }
}

/// An address range, `10.244.1.0/24` or `fd00:10:244:1::/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not an address range (expected e.g. 10.96.0.0/12 or fd00::/108)")]
pub struct CidrError(String);

impl FromStr for Cidr {
    type Err = CidrError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || CidrError(s.to_owned());
        let (ip, prefix) = s.trim().split_once('/').ok_or_else(err)?;
        let network: IpAddr = ip.parse().map_err(|_| err())?;
        let prefix: u8 = prefix.parse().map_err(|_| err())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(err());
        }
        Ok(Self { network, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl TryFrom<String> for Cidr {
    type Error = CidrError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> Self {
        c.to_string()
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl serde::Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl Cidr {
    /// The range's first address.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        match (self.network, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(*ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(*ip) & mask
            }
            _ => false,
        }
    }
}

/// Hubble's reserved identities for addresses no pod or Service of the
/// cluster owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reserved {
    /// This node's own addresses.
    Host,
    /// Another node's addresses.
    RemoteNode,
    /// Outside the cluster's pod and service ranges.
    World,
    /// Not known yet: the API's first lists have not arrived.
    Unknown,
}

impl Reserved {
    /// As Cilium's identity labels write it (`reserved:host`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Reserved::Host => "reserved:host",
            Reserved::RemoteNode => "reserved:remote-node",
            Reserved::World => "reserved:world",
            Reserved::Unknown => "reserved:unknown",
        }
    }
}

/// The addresses of this host's interfaces (in the agent's network
/// namespace: the node's, as the DaemonSet runs with hostNetwork).
pub fn local_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `head` with a list freed by freeifaddrs
    // below; every node and its address are read only while it lives.
    unsafe {
        if libc::getifaddrs(&mut head) != 0 {
            return out;
        }
        let mut cur = head;
        while !cur.is_null() {
            let addr = (*cur).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let sin = &*(addr as *const libc::sockaddr_in);
                        out.push(IpAddr::from(
                            u32::from_be(sin.sin_addr.s_addr).to_be_bytes(),
                        ));
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(addr as *const libc::sockaddr_in6);
                        out.push(IpAddr::from(sin6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(head);
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_contain_their_addresses_only() {
        let v4: Cidr = "10.244.1.0/24".parse().unwrap();
        assert!(v4.contains(&"10.244.1.77".parse().unwrap()));
        assert!(!v4.contains(&"10.244.2.1".parse().unwrap()));
        assert!(!v4.contains(&"fd00::1".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(&"192.0.2.1".parse().unwrap()));
        let v6: Cidr = "fd00:10:244:1::/64".parse().unwrap();
        assert!(v6.contains(&"fd00:10:244:1::abcd".parse().unwrap()));
        assert!(!v6.contains(&"fd00:10:244:2::1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("10.0.0.0".parse::<Cidr>().is_err());
        assert_eq!(v4.to_string(), "10.244.1.0/24");
    }

    #[test]
    fn services_and_nodes_from_api_objects() {
        let svc: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "shop", "name": "web"},
            "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "fd00:96::a"],
                "ports": [{"port": 80}]}
        }))
        .unwrap();
        let s = ServiceMeta::from_service(&svc).unwrap();
        assert_eq!(s.key(), "shop/web");
        assert_eq!(s.cluster_ips.len(), 2);
        let headless: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"namespace": "shop", "name": "db"},
            "spec": {"clusterIP": "None"}
        }))
        .unwrap();
        assert!(ServiceMeta::from_service(&headless).is_none());

        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n2"},
            "spec": {"podCIDR": "10.244.2.0/24", "podCIDRs": ["10.244.2.0/24"]},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.168.0.12"},
                {"type": "Hostname", "address": "n2"}]}
        }))
        .unwrap();
        let n = NodeMeta::from_node(&node).unwrap();
        assert_eq!(n.addresses, vec!["192.168.0.12".parse::<IpAddr>().unwrap()]);
        assert_eq!(n.pod_cidrs, vec!["10.244.2.0/24".parse().unwrap()]);
    }

    #[test]
    fn this_host_has_its_loopback() {
        assert!(local_addresses().contains(&"127.0.0.1".parse().unwrap()));
    }
}
