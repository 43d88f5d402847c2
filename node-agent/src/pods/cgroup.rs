//! Which pod and container a kubelet cgroup path belongs to. The kubelet
//! names a pod's cgroup after its UID, and the runtime names a container's
//! after its id, in either cgroup driver's style:
//! - cgroupfs: `/kubepods/burstable/pod<uid>/<container id>`
//! - systemd: `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with _>.slice/cri-containerd-<id>.scope`

/// (pod UID, container id) of a cgroup path; the container is None for the
/// pod's own cgroup.
pub fn owner(path: &str) -> Option<(String, Option<&str>)> {
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    let uid = segments.by_ref().find_map(pod_uid)?;
    Some((uid, segments.next().map(container_id)))
}

fn pod_uid(segment: &str) -> Option<String> {
    let s = segment.strip_suffix(".slice").unwrap_or(segment);
    let at = s.rfind("pod")?;
    if at != 0 && !s[..at].ends_with('-') {
        return None;
    }
    let uid = s[at + 3..].replace('_', "-");
    let ok = uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    ok.then_some(uid)
}

fn container_id(segment: &str) -> &str {
    let s = segment.strip_suffix(".scope").unwrap_or(segment);
    s.rsplit('-').next().unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0f3c8a1e-2b4d-4c6e-8f10-123456789abc";

    #[test]
    fn both_drivers_and_the_pod_level_cgroup() {
        assert_eq!(
            owner(&format!("/kubepods/burstable/pod{UID}/4f2a9c")),
            Some((UID.to_owned(), Some("4f2a9c")))
        );
        assert_eq!(
            owner(&format!("/kubepods/pod{UID}")),
            Some((UID.to_owned(), None))
        );
        let systemd = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{}.slice/cri-containerd-4f2a9c.scope",
            UID.replace('-', "_")
        );
        assert_eq!(owner(&systemd), Some((UID.to_owned(), Some("4f2a9c"))));
        assert_eq!(owner("/kubepods.slice/kubepods-burstable.slice"), None);
        assert_eq!(owner("/system.slice/ssh.service"), None);
        assert_eq!(owner("/kubepods/podnot-a-uid/x"), None);
    }
}
