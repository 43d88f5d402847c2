//! What the agent keeps of a pod, and how it is read from the API object.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;

/// One pod: its names, its workload (the top controller, as Hubble names
/// it), the addresses it owns and its containers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodMeta {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    /// Deployment, StatefulSet, DaemonSet, CronJob, Job… name; the pod's
    /// own name for a bare pod.
    pub workload: String,
    pub workload_kind: String,
    /// Pod IPs; empty for host-network pods (the node's addresses are not
    /// theirs alone) and for pods that have finished.
    pub ips: Vec<IpAddr>,
    pub containers: Vec<ContainerMeta>,
}

/// A container of a pod, by the runtime's container id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerMeta {
    /// The runtime's id without its `containerd://` (or other) scheme.
    pub id: String,
    pub name: String,
    pub image: String,
}

impl PodMeta {
    /// None for an object without namespace, name or UID.
    pub fn from_pod(pod: &Pod) -> Option<Self> {
        let meta = &pod.metadata;
        let namespace = meta.namespace.clone()?;
        let name = meta.name.clone()?;
        let uid = meta.uid.clone()?;
        let (workload_kind, workload) = workload(pod).unwrap_or(("Pod".into(), name.clone()));
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let status = pod.status.as_ref();
        let finished = status
            .and_then(|s| s.phase.as_deref())
            .is_some_and(|p| p == "Succeeded" || p == "Failed");
        let ips = if host_network || finished {
            Vec::new()
        } else {
            let mut ips: Vec<IpAddr> = status
                .and_then(|s| s.pod_ips.as_ref())
                .into_iter()
                .flatten()
                .filter_map(|p| p.ip.parse().ok())
                .collect();
            if let Some(ip) = status.and_then(|s| s.pod_ip.as_ref()?.parse().ok())
                && !ips.contains(&ip)
            {
                ips.push(ip);
            }
            ips
        };
        let containers = status
            .into_iter()
            .flat_map(|s| {
                s.container_statuses
                    .iter()
                    .chain(s.init_container_statuses.iter())
                    .flatten()
            })
            .filter_map(|c| {
                let id = c.container_id.as_deref()?;
                let id = id.split_once("://").map_or(id, |(_, id)| id);
                Some(ContainerMeta {
                    id: id.to_owned(),
                    name: c.name.clone(),
                    image: c.image.clone(),
                })
            })
            .collect();
        Some(Self {
            namespace,
            name,
            uid,
            workload,
            workload_kind,
            ips,
            containers,
        })
    }
}

/// The pod's top controller, as Hubble's `workload` context names it: a
/// ReplicaSet made by a Deployment (its name is the Deployment's plus the
/// pod-template-hash) is the Deployment, a Job made by a CronJob (its name
/// is the CronJob's plus the scheduled minute) is the CronJob; any other
/// controller is itself.
fn workload(pod: &Pod) -> Option<(String, String)> {
    let owner = pod
        .metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))?;
    let kind = owner.kind.as_str();
    let name = owner.name.as_str();
    let trimmed = |suffix_ok: &dyn Fn(&str) -> bool| {
        name.rsplit_once('-')
            .filter(|(base, suffix)| !base.is_empty() && suffix_ok(suffix))
            .map(|(base, _)| base.to_owned())
    };
    let hash = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("pod-template-hash"));
    let top = match kind {
        "ReplicaSet" => {
            trimmed(&|s| hash.is_some_and(|h| h == s)).map(|d| ("Deployment".to_owned(), d))
        }
        "Job" => trimmed(&|s| s.len() >= 8 && s.bytes().all(|b| b.is_ascii_digit()))
            .map(|c| ("CronJob".to_owned(), c)),
        _ => None,
    };
    Some(top.unwrap_or_else(|| (kind.to_owned(), name.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(json: serde_json::Value) -> Pod {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn a_deployment_pod_is_named_by_its_deployment() {
        let p = pod(serde_json::json!({
            "metadata": {
                "namespace": "shop", "name": "web-7d4b9c-x2x9q", "uid": "u1",
                "labels": {"pod-template-hash": "7d4b9c"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-7d4b9c", "uid": "r1", "controller": true}]
            },
            "status": {
                "phase": "Running", "podIP": "10.1.0.4",
                "podIPs": [{"ip": "10.1.0.4"}, {"ip": "fd00::4"}],
                "containerStatuses": [{"name": "app", "image": "nginx:1.27",
                    "imageID": "", "containerID": "containerd://abc123",
                    "ready": true, "restartCount": 0}]
            }
        }));
        let m = PodMeta::from_pod(&p).unwrap();
        assert_eq!(
            (m.workload_kind.as_str(), m.workload.as_str()),
            ("Deployment", "web")
        );
        assert_eq!(
            m.ips,
            vec![
                "10.1.0.4".parse::<IpAddr>().unwrap(),
                "fd00::4".parse().unwrap()
            ]
        );
        assert_eq!(m.containers[0].id, "abc123");
        assert_eq!(m.containers[0].name, "app");
    }

    #[test]
    fn controllers_bare_pods_and_host_network() {
        let sts = pod(serde_json::json!({
            "metadata": {"namespace": "shop", "name": "db-0", "uid": "u2",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                    "name": "db", "uid": "s1", "controller": true}]},
            "status": {"podIP": "10.1.0.5"}
        }));
        let m = PodMeta::from_pod(&sts).unwrap();
        assert_eq!(
            (m.workload_kind.as_str(), m.workload.as_str()),
            ("StatefulSet", "db")
        );

        let cron = pod(serde_json::json!({
            "metadata": {"namespace": "ops", "name": "backup-29012345-abcde", "uid": "u3",
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job",
                    "name": "backup-29012345", "uid": "j1", "controller": true}]},
            "status": {"phase": "Succeeded", "podIP": "10.1.0.6"}
        }));
        let m = PodMeta::from_pod(&cron).unwrap();
        assert_eq!(
            (m.workload_kind.as_str(), m.workload.as_str()),
            ("CronJob", "backup")
        );
        assert!(m.ips.is_empty(), "a finished pod's address may be reused");

        // A ReplicaSet without the hash label is not taken for a Deployment's.
        let rs = pod(serde_json::json!({
            "metadata": {"namespace": "a", "name": "rs-1-abcde", "uid": "u4",
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "rs-1", "uid": "r2", "controller": true}]},
            "spec": {"hostNetwork": true, "containers": []},
            "status": {"podIP": "192.168.1.10"}
        }));
        let m = PodMeta::from_pod(&rs).unwrap();
        assert_eq!(
            (m.workload_kind.as_str(), m.workload.as_str()),
            ("ReplicaSet", "rs-1")
        );
        assert!(m.ips.is_empty(), "host-network pods own no address");

        let bare = pod(serde_json::json!({
            "metadata": {"namespace": "a", "name": "debug", "uid": "u5"}
        }));
        let m = PodMeta::from_pod(&bare).unwrap();
        assert_eq!(
            (m.workload_kind.as_str(), m.workload.as_str()),
            ("Pod", "debug")
        );
        assert!(PodMeta::from_pod(&pod(serde_json::json!({"metadata": {"name": "x"}}))).is_none());
    }
}
