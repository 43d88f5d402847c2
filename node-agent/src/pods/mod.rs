//! Identity: which pod owns an IP address (for flows, drops and DNS) and a
//! cgroup (for `container_*`), which Service a ClusterIP is, and which
//! reserved identity (`host`, `remote-node`, `world`, `unknown`) the other
//! addresses have, learnt by watching Pods, Services and Nodes on the
//! Kubernetes API.
//!
//! watches (tasks: kube-rs watchers → [`PodMeta`], [`ServiceMeta`],
//! [`NodeMeta`]) → [`PodIndex`] ← lookups from enrichment (once per flow end),
//! the DNS tracker and the cgroup collector.

pub mod cgroup;
pub mod cluster;
pub mod meta;
pub mod watch;

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::{Arc, RwLock},
};

pub use cluster::{Cidr, NodeMeta, Reserved, ServiceMeta};
pub use meta::PodMeta;

/// The pods known on this node, by IP and by UID, with the cluster's
/// Services and Nodes. Cheap to clone; lookups take a read lock.
#[derive(Debug, Clone, Default)]
pub struct PodIndex(Arc<RwLock<Pods>>);

#[derive(Debug, Default)]
struct Pods {
    by_uid: HashMap<String, Arc<PodMeta>>,
    by_ip: HashMap<IpAddr, Arc<PodMeta>>,
    services: HashMap<String, Arc<ServiceMeta>>,
    service_by_ip: HashMap<IpAddr, Arc<ServiceMeta>>,
    nodes: HashMap<String, Arc<NodeMeta>>,
    node_by_ip: HashMap<IpAddr, Arc<NodeMeta>>,
    /// Every node's pod ranges, and the configured service ranges.
    cluster_ranges: Vec<Cidr>,
    service_ranges: Vec<Cidr>,
    /// This host's addresses (and this node's, from its Node object).
    host: HashSet<IpAddr>,
    this_node: Option<String>,
    /// None standalone; in a cluster, whether each watch has listed once.
    synced: Option<Synced>,
}

/// Which watches have delivered their first full list.
#[derive(Debug, Default, Clone, Copy)]
pub struct Synced {
    pub pods: bool,
    pub services: bool,
    pub nodes: bool,
}

/// What one address is: a pod of this node, a Service, or (for neither) a
/// reserved identity; `None` everywhere for a pod of another node.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identity {
    pub pod: Option<Arc<PodMeta>>,
    pub service: Option<Arc<ServiceMeta>>,
    pub reserved: Option<Reserved>,
}

impl Pods {
    fn insert(&mut self, pod: PodMeta) {
        self.remove(&pod.uid);
        let pod = Arc::new(pod);
        for ip in &pod.ips {
            // A newer pod takes over an address whose old owner's deletion
            // has not arrived yet.
            self.by_ip.insert(*ip, pod.clone());
        }
        self.by_uid.insert(pod.uid.clone(), pod);
    }

    fn remove(&mut self, uid: &str) {
        if let Some(old) = self.by_uid.remove(uid) {
            for ip in &old.ips {
                if self.by_ip.get(ip).is_some_and(|p| p.uid == uid) {
                    self.by_ip.remove(ip);
                }
            }
        }
    }

    fn insert_service(&mut self, service: ServiceMeta) {
        let key = service.key();
        self.remove_service(&key);
        let service = Arc::new(service);
        for ip in &service.cluster_ips {
            self.service_by_ip.insert(*ip, service.clone());
        }
        self.services.insert(key, service);
    }

    fn remove_service(&mut self, key: &str) {
        if let Some(old) = self.services.remove(key) {
            for ip in &old.cluster_ips {
                if self.service_by_ip.get(ip).is_some_and(|s| s.key() == key) {
                    self.service_by_ip.remove(ip);
                }
            }
        }
    }

    fn insert_node(&mut self, node: NodeMeta) {
        self.remove_node(&node.name.clone());
        let node = Arc::new(node);
        for ip in &node.addresses {
            self.node_by_ip.insert(*ip, node.clone());
        }
        self.nodes.insert(node.name.clone(), node);
        self.ranges_changed();
    }

    fn remove_node(&mut self, name: &str) {
        if let Some(old) = self.nodes.remove(name) {
            for ip in &old.addresses {
                if self.node_by_ip.get(ip).is_some_and(|n| n.name == name) {
                    self.node_by_ip.remove(ip);
                }
            }
        }
        self.ranges_changed();
    }

    fn ranges_changed(&mut self) {
        let mut ranges: Vec<Cidr> = self
            .nodes
            .values()
            .flat_map(|n| n.pod_cidrs.iter().copied())
            .chain(self.service_ranges.iter().copied())
            .collect();
        ranges.sort();
        ranges.dedup();
        self.cluster_ranges = ranges;
    }

    fn identify(&self, ip: &IpAddr) -> Identity {
        if let Some(pod) = self.by_ip.get(ip) {
            return Identity {
                pod: Some(pod.clone()),
                ..Identity::default()
            };
        }
        if let Some(service) = self.service_by_ip.get(ip) {
            return Identity {
                service: Some(service.clone()),
                ..Identity::default()
            };
        }
        Identity {
            reserved: self.reserved(ip),
            ..Identity::default()
        }
    }

    /// For an address that is no known pod or Service.
    fn reserved(&self, ip: &IpAddr) -> Option<Reserved> {
        if self.host.contains(ip) {
            return Some(Reserved::Host);
        }
        let Some(synced) = self.synced else {
            // Standalone: no cluster, so every other address is outside it.
            return Some(Reserved::World);
        };
        if let Some(node) = self.node_by_ip.get(ip) {
            return Some(if self.this_node.as_deref() == Some(node.name.as_str()) {
                Reserved::Host
            } else {
                Reserved::RemoteNode
            });
        }
        if !(synced.pods && synced.services && synced.nodes) {
            return Some(Reserved::Unknown);
        }
        if self.cluster_ranges.iter().any(|r| r.contains(ip)) {
            // A pod of another node, or a Service not listed yet.
            return None;
        }
        Some(Reserved::World)
    }
}

impl PodIndex {
    /// An index for a cluster: until each watch has listed once, addresses
    /// that are no known pod are `reserved:unknown`. `this_node` names the
    /// Node whose addresses are `host`; `service_ranges` are the cluster's
    /// Service CIDRs (not on the API), which are not `world`.
    pub fn for_cluster(this_node: Option<String>, service_ranges: Vec<Cidr>) -> Self {
        let index = Self::default();
        {
            let mut w = index.write();
            w.this_node = this_node;
            w.service_ranges = service_ranges;
            w.synced = Some(Synced::default());
            w.ranges_changed();
        }
        index.refresh_host();
        index
    }

    /// A standalone index: this host's addresses are `host`, every other
    /// address is `world`.
    pub fn standalone() -> Self {
        let index = Self::default();
        index.refresh_host();
        index
    }

    /// Reads this host's interface addresses again.
    pub fn refresh_host(&self) {
        let host = cluster::local_addresses().into_iter().collect();
        self.write().host = host;
    }

    /// Marks one watch as listed (see [`Synced`]).
    pub fn synced(&self, mark: impl FnOnce(&mut Synced)) {
        if let Some(s) = self.write().synced.as_mut() {
            mark(s);
        }
    }

    /// What the address `ip` is, under one read lock.
    pub fn identify(&self, ip: &IpAddr) -> Identity {
        self.read().identify(ip)
    }

    /// The Service whose cluster address `ip` is.
    pub fn service_by_ip(&self, ip: &IpAddr) -> Option<Arc<ServiceMeta>> {
        self.read().service_by_ip.get(ip).cloned()
    }

    pub fn upsert_service(&self, service: ServiceMeta) {
        self.write().insert_service(service);
    }

    pub fn remove_service(&self, key: &str) {
        self.write().remove_service(key);
    }

    pub fn replace_services(&self, services: Vec<ServiceMeta>) {
        let mut w = self.write();
        w.services.clear();
        w.service_by_ip.clear();
        for s in services {
            w.insert_service(s);
        }
    }

    pub fn upsert_node(&self, node: NodeMeta) {
        self.write().insert_node(node);
    }

    pub fn remove_node(&self, name: &str) {
        self.write().remove_node(name);
    }

    pub fn replace_nodes(&self, nodes: Vec<NodeMeta>) {
        let mut w = self.write();
        w.nodes.clear();
        w.node_by_ip.clear();
        for n in nodes {
            w.insert_node(n);
        }
        w.ranges_changed();
    }

    pub fn services_len(&self) -> usize {
        self.read().services.len()
    }

    pub fn nodes_len(&self) -> usize {
        self.read().nodes.len()
    }

    /// The pod that owns the address `ip`; host-network pods own none.
    pub fn by_ip(&self, ip: &IpAddr) -> Option<Arc<PodMeta>> {
        let pods = self.read();
        if pods.by_ip.is_empty() {
            return None;
        }
        pods.by_ip.get(ip).cloned()
    }

    /// The pod (and its container, by index into `containers`) whose
    /// cgroup `path` is, for a kubelet-made cgroup.
    pub fn by_cgroup(&self, path: &str) -> Option<(Arc<PodMeta>, Option<usize>)> {
        let (uid, container) = cgroup::owner(path)?;
        let pod = self.read().by_uid.get(&uid).cloned()?;
        let index = container.and_then(|id| pod.containers.iter().position(|c| c.id == id));
        Some((pod, index))
    }

    /// Adds or replaces a pod (by UID).
    pub fn upsert(&self, pod: PodMeta) {
        self.write().insert(pod);
    }

    pub fn remove(&self, uid: &str) {
        self.write().remove(uid);
    }

    /// Replaces every pod at once (after a full list).
    pub fn replace(&self, pods: Vec<PodMeta>) {
        let mut w = self.write();
        w.by_uid.clear();
        w.by_ip.clear();
        for pod in pods {
            w.insert(pod);
        }
    }

    pub fn len(&self) -> usize {
        self.read().by_uid.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Pods> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Pods> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(uid: &str, name: &str, ips: &[&str]) -> PodMeta {
        PodMeta {
            namespace: "shop".into(),
            name: name.into(),
            uid: uid.into(),
            workload: name.into(),
            workload_kind: "Pod".into(),
            ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
            containers: Vec::new(),
        }
    }

    #[test]
    fn an_address_follows_its_newest_owner() {
        let index = PodIndex::default();
        index.upsert(pod("u1", "old", &["10.0.0.5"]));
        // The address is reused before the old pod's deletion arrives.
        index.upsert(pod("u2", "new", &["10.0.0.5", "fd00::5"]));
        assert_eq!(
            index.by_ip(&"10.0.0.5".parse().unwrap()).unwrap().name,
            "new"
        );
        index.remove("u1");
        assert_eq!(
            index.by_ip(&"10.0.0.5".parse().unwrap()).unwrap().name,
            "new"
        );
        assert_eq!(
            index.by_ip(&"fd00::5".parse().unwrap()).unwrap().name,
            "new"
        );
        index.remove("u2");
        assert!(index.by_ip(&"10.0.0.5".parse().unwrap()).is_none());
        assert!(index.is_empty());
    }

    #[test]
    fn a_kubelet_cgroup_names_its_pod_and_container() {
        let index = PodIndex::default();
        let uid = "0f3c8a1e-2b4d-4c6e-8f10-123456789abc";
        let mut p = pod(uid, "web", &["10.0.0.5"]);
        p.containers.push(meta::ContainerMeta {
            id: "4f2a9c".into(),
            name: "app".into(),
            image: "nginx:1.27".into(),
        });
        index.upsert(p);
        let (pod, c) = index
            .by_cgroup(&format!("/kubepods/besteffort/pod{uid}/4f2a9c"))
            .unwrap();
        assert_eq!(pod.containers[c.unwrap()].name, "app");
        let (_, c) = index
            .by_cgroup(&format!("/kubepods/besteffort/pod{uid}"))
            .unwrap();
        assert_eq!(c, None);
        // The sandbox (pause) container is the pod's, but no named container.
        let (_, c) = index
            .by_cgroup(&format!("/kubepods/besteffort/pod{uid}/abc"))
            .unwrap();
        assert_eq!(c, None);
        assert!(
            index
                .by_cgroup("/kubepods/besteffort/pod1f3c8a1e-2b4d-4c6e-8f10-123456789abc")
                .is_none()
        );
    }

    #[test]
    fn an_update_drops_addresses_the_pod_no_longer_has() {
        let index = PodIndex::default();
        index.upsert(pod("u1", "web", &["10.0.0.5"]));
        index.upsert(pod("u1", "web", &["10.0.0.6"]));
        assert!(index.by_ip(&"10.0.0.5".parse().unwrap()).is_none());
        assert_eq!(index.by_ip(&"10.0.0.6".parse().unwrap()).unwrap().uid, "u1");
        index.replace(vec![pod("u3", "db", &["10.0.0.7"])]);
        assert!(index.by_ip(&"10.0.0.5".parse().unwrap()).is_none());
        assert_eq!(index.len(), 1);
    }

    fn node(name: &str, ip: &str, cidr: &str) -> NodeMeta {
        NodeMeta {
            name: name.into(),
            addresses: vec![ip.parse().unwrap()],
            pod_cidrs: vec![cidr.parse().unwrap()],
        }
    }

    #[test]
    fn addresses_are_pods_services_or_reserved_identities() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        let index = PodIndex::for_cluster(Some("n1".into()), vec!["10.96.0.0/12".parse().unwrap()]);
        index.upsert(pod("u1", "web", &["10.244.1.5"]));
        // Before every watch has listed, the rest is not known yet.
        assert_eq!(
            index.identify(&ip("8.8.8.8")).reserved,
            Some(Reserved::Unknown)
        );
        assert_eq!(
            index.identify(&ip("127.0.0.1")).reserved,
            Some(Reserved::Host)
        );
        index.replace_nodes(vec![
            node("n1", "192.168.0.11", "10.244.1.0/24"),
            node("n2", "192.168.0.12", "10.244.2.0/24"),
        ]);
        index.replace_services(vec![ServiceMeta {
            namespace: "shop".into(),
            name: "web".into(),
            cluster_ips: vec![ip("10.96.0.10")],
        }]);
        index.synced(|s| {
            s.pods = true;
            s.services = true;
            s.nodes = true;
        });
        assert_eq!(index.identify(&ip("10.244.1.5")).pod.unwrap().name, "web");
        assert_eq!(
            index.identify(&ip("10.96.0.10")).service.unwrap().key(),
            "shop/web"
        );
        let reserved = |s: &str| index.identify(&ip(s)).reserved;
        assert_eq!(reserved("192.168.0.11"), Some(Reserved::Host));
        assert_eq!(reserved("192.168.0.12"), Some(Reserved::RemoteNode));
        assert_eq!(reserved("8.8.8.8"), Some(Reserved::World));
        // A pod of another node, and an unlisted service address: no
        // reserved identity (named by address, or not at all).
        assert_eq!(reserved("10.244.2.9"), None);
        assert_eq!(reserved("10.100.0.1"), None);
        // The node leaves: its addresses and range are the world's.
        index.remove_node("n2");
        assert_eq!(reserved("192.168.0.12"), Some(Reserved::World));
        assert_eq!(reserved("10.244.2.9"), Some(Reserved::World));
        index.remove_service("shop/web");
        assert_eq!(reserved("10.96.0.10"), None);
        assert_eq!(
            PodIndex::standalone().identify(&ip("10.0.0.1")).reserved,
            Some(Reserved::World)
        );
    }
}
