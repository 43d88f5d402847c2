//! Pod identity: which pod owns an IP address (for flows, drops and DNS) and
//! a cgroup (for `container_*`), learnt by watching the pods of this node on
//! the Kubernetes API.
//!
//! watch (task: kube-rs watcher → [`PodMeta`]) → [`PodIndex`] ← lookups from
//! the flow aggregator, the DNS tracker and the cgroup collector.

pub mod cgroup;
pub mod meta;
pub mod watch;

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{Arc, RwLock},
};

pub use meta::PodMeta;

/// The pods known on this node, by IP and by UID. Cheap to clone; lookups
/// take a read lock.
#[derive(Debug, Clone, Default)]
pub struct PodIndex(Arc<RwLock<Pods>>);

#[derive(Debug, Default)]
struct Pods {
    by_uid: HashMap<String, Arc<PodMeta>>,
    by_ip: HashMap<IpAddr, Arc<PodMeta>>,
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
}

impl PodIndex {
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
        let mut fresh = Pods::default();
        for pod in pods {
            fresh.insert(pod);
        }
        *self.write() = fresh;
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
}
