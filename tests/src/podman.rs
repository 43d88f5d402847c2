//! Running a rendered pod spec under podman, as a node would: the pod
//! made from the chart's DaemonSet, an image of the locally built agent,
//! and everything undone on drop (`tests/tests/podspec.rs`).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use crate::agent;

pub const PODMAN: &str = "/usr/bin/podman";
/// Where the image holds the agent (its ENTRYPOINT; the chart gives only args).
pub const AGENT_IN_IMAGE: &str = "/usr/local/bin/osprey-agent";
/// Capability numbers (linux/capability.h) of the names the chart may list.
pub const CAPS: [(&str, u32); 8] = [
    ("DAC_READ_SEARCH", 2),
    ("NET_ADMIN", 12),
    ("SYS_ADMIN", 21),
    ("SYS_PTRACE", 19),
    ("SYS_RESOURCE", 24),
    ("PERFMON", 38),
    ("BPF", 39),
    ("CHECKPOINT_RESTORE", 40),
];

#[derive(Clone, Copy, PartialEq)]
pub enum Mode {
    Privileged,
    LeastPrivilege,
}

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

/// Runs `cmd`; its stdout, or a panic with its output.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `podman` with the test's CONTAINERS_CONF.
pub fn podman(conf: &Path) -> Command {
    let mut cmd = Command::new(PODMAN);
    cmd.env("CONTAINERS_CONF", conf);
    cmd
}

/// Everything the test made outside itself, undone on drop (reverse order).
pub struct Cleanup {
    pub conf: PathBuf,
    pub pod: Option<String>,
    pub volume: Option<String>,
    pub image: Option<String>,
    pub mount: Option<PathBuf>,
    pub link: Option<String>,
    pub dir: Option<PathBuf>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let quiet = |cmd: &mut Command| {
            let _ = cmd.output();
        };
        if let Some(pod) = &self.pod {
            quiet(podman(&self.conf).args(["pod", "rm", "-f", "-t", "5", pod]));
        }
        if let Some(volume) = &self.volume {
            quiet(podman(&self.conf).args(["volume", "rm", "-f", volume]));
        }
        if let Some(image) = &self.image {
            quiet(podman(&self.conf).args(["rmi", "-f", image]));
        }
        if let Some(mount) = &self.mount {
            quiet(Command::new("umount").arg(mount));
        }
        if let Some(link) = &self.link {
            quiet(Command::new("ip").args(["link", "del", link]));
        }
        if let Some(dir) = &self.dir {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// A rendered object's text, by kind.
pub fn document<'a>(rendered: &'a str, kind: &str) -> &'a str {
    rendered
        .split("\n---\n")
        .find(|d| d.lines().any(|l| l == format!("kind: {kind}")))
        .unwrap_or_else(|| panic!("no {kind} rendered:\n{rendered}"))
}

/// The capabilities the rendered container adds (`capabilities.add`).
pub fn added_capabilities(daemonset: &str) -> Vec<String> {
    let mut lines = daemonset.lines().skip_while(|l| l.trim() != "add:");
    lines.next();
    lines
        .map_while(|l| l.trim().strip_prefix("- "))
        .map(|c| c.trim().trim_matches('"').to_owned())
        .collect()
}

/// `agent.capabilities` of the chart's values.yaml (`[A, B, …]`).
pub fn values_capabilities() -> Vec<String> {
    let values = std::fs::read_to_string(root().join("deploy/helm/osprey/values.yaml")).unwrap();
    let list = values
        .lines()
        .find_map(|l| l.strip_prefix("  capabilities: ["))
        .expect("agent.capabilities in values.yaml");
    list.trim_end()
        .trim_end_matches(']')
        .split(',')
        .map(|c| c.trim().to_owned())
        .collect()
}

/// The DaemonSet's pod template as a Pod that `podman kube play` runs.
/// Every change is one podman 4.3 needs; the rest is the chart's text.
pub fn pod_of(daemonset: &str, name: &str, node: &str, host_ip: &str, mode: Mode) -> String {
    // Rewrite: podman 4.3 plays Pods and Deployments, not DaemonSets. The
    // pod is `spec.template` (its metadata and spec), dedented, and named.
    let template: Vec<&str> = daemonset
        .lines()
        .skip_while(|l| *l != "  template:")
        .skip(1)
        .take_while(|l| l.trim().is_empty() || l.starts_with("    "))
        .map(|l| l.get(4..).unwrap_or(""))
        .collect();
    let mut pod = vec!["apiVersion: v1", "kind: Pod"];
    let named = format!("  name: {name}");
    // Rewrite: the seccomp profile. The chart's least-privilege container
    // says `seccompProfile: Unconfined`; podman 4.3 ignores that field (its
    // default profile refuses bpf() without CAP_SYS_ADMIN) and reads the
    // annotation Kubernetes had before the field.
    let unconfined = "    seccomp.security.alpha.kubernetes.io/pod: unconfined";
    let mut env_values: Vec<(String, String)> = Vec::new();
    let mut lines = template.into_iter().peekable();
    while let Some(line) = lines.next() {
        let trimmed = line.trim();
        if line == "metadata:" {
            pod.extend([line, named.as_str()]);
            continue;
        }
        if line == "  annotations:" {
            pod.push(line);
            if mode == Mode::LeastPrivilege {
                pod.push(unconfined);
            }
            continue;
        }
        // Rewrite: podman 4.3 refuses annotation values over 63 characters
        // (Kubernetes allows 256 KiB); the config checksum only triggers
        // rollouts.
        if trimmed.starts_with("checksum/config:") {
            continue;
        }
        // Rewrite: podman refuses port mappings in the host network; there
        // a containerPort is only informational (the agent binds its port
        // on the node itself).
        if trimmed == "ports:" {
            let indent = line.len() - trimmed.len();
            while lines
                .peek()
                .is_some_and(|l| l.len() - l.trim_start().len() > indent)
            {
                lines.next();
            }
            continue;
        }
        // Rewrite: podman 4.3 ignores the downward API (`fieldRef`): each
        // such variable gets the literal value the kubelet would give it
        // on this node (spec.nodeName: the host's name; status.hostIP: the
        // node's address, loopback here so the port stays off the host's
        // other interfaces).
        if let Some(var) = trimmed.strip_prefix("- name: ") {
            let indent = &line[..line.len() - trimmed.len()];
            let next = lines.peek().map(|l| l.trim()).unwrap_or_default();
            if next == "valueFrom:" {
                lines.next();
                let kind = lines.next().map(str::trim).unwrap_or_default();
                let path = lines.next().map(str::trim).unwrap_or_default();
                assert_eq!(kind, "fieldRef:", "only fieldRef env is rewritten");
                let value = match path.trim_start_matches("fieldPath:").trim() {
                    "spec.nodeName" => node.to_owned(),
                    "status.hostIP" => host_ip.to_owned(),
                    other => panic!("fieldRef {other} has no rewrite"),
                };
                pod.push(leak(format!("{indent}- name: {var}")));
                pod.push(leak(format!("{indent}  value: \"{value}\"")));
                env_values.push((var.to_owned(), value));
                continue;
            }
            if let Some(value) = next.strip_prefix("value: ") {
                lines.next();
                // Rewrite: podman does not expand `$(VAR)` references to
                // earlier variables in a value (the kubelet does).
                let mut value = value.trim_matches('"').to_owned();
                for (k, v) in &env_values {
                    value = value.replace(&format!("$({k})"), v);
                }
                pod.push(line);
                pod.push(leak(format!("{indent}  value: \"{value}\"")));
                env_values.push((var.to_owned(), value));
                continue;
            }
        }
        pod.push(line);
    }
    pod.join("\n")
}

pub fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// The image: the agent, the probe object beside it, and the libraries the
/// agent links (as `ldd` lists them), imported as a one-layer image. The
/// agent carries `caps` as file capabilities (+ep).
pub fn build_image(dir: &Path, conf: &Path, image: &str, caps: &[String]) {
    let rootfs = dir.join("rootfs");
    let bin = agent::binary().unwrap();
    let place = |from: &Path, to: &str| {
        let dest = rootfs.join(to.trim_start_matches('/'));
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::copy(from, &dest)
            .unwrap_or_else(|e| panic!("{} -> {}: {e}", from.display(), dest.display()));
    };
    place(&bin, AGENT_IN_IMAGE);
    place(
        &bin.with_file_name("osprey-probes.bpf.o"),
        "/usr/local/bin/osprey-probes.bpf.o",
    );
    let ldd = run(Command::new("ldd").arg(&bin));
    for lib in ldd.lines().filter_map(|l| {
        let path = l.split("=>").last()?.split_whitespace().next()?;
        path.starts_with('/').then_some(path)
    }) {
        // copy() follows the symbolic link: the library under its linked name.
        place(Path::new(lib), lib);
    }
    // Mount points of the pod's volumes, and a /tmp (the root is read-only).
    for d in [
        "etc/osprey",
        "tmp",
        "host/proc",
        "host/root",
        "proc",
        "sys",
        "dev",
    ] {
        std::fs::create_dir_all(rootfs.join(d)).unwrap();
    }
    if !caps.is_empty() {
        let list: Vec<String> = caps
            .iter()
            .map(|c| format!("cap_{}", c.to_lowercase()))
            .collect();
        run(Command::new("setcap")
            .arg(format!("{}+ep", list.join(",")))
            .arg(rootfs.join(AGENT_IN_IMAGE.trim_start_matches('/'))));
    }
    let tar = dir.join("rootfs.tar");
    run(Command::new("tar")
        .args(["--xattrs", "--xattrs-include=security.capability", "-C"])
        .arg(&rootfs)
        .arg("-cf")
        .arg(&tar)
        .arg("."));
    run(podman(conf)
        .args(["import", "-q", "--change"])
        .arg(format!("ENTRYPOINT=[\"{AGENT_IN_IMAGE}\"]"))
        .arg(&tar)
        .arg(image));
}

/// A capability set of /proc/<pid>/status (`CapEff`, `CapBnd`).
pub fn cap_mask(status: &str, field: &str) -> u64 {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("{field} not in status"));
    u64::from_str_radix(hex.trim(), 16).unwrap()
}

pub fn status_field<'a>(status: &'a str, field: &str) -> &'a str {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("{field} not in status"))
        .trim()
}

pub fn mask_of(caps: &[String]) -> u64 {
    caps.iter()
        .map(|c| {
            let (_, bit) = CAPS
                .iter()
                .find(|(name, _)| name == c)
                .unwrap_or_else(|| panic!("capability {c} unknown to the test"));
            1u64 << bit
        })
        .fold(0, |a, b| a | b)
}
