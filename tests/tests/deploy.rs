//! The deployable artifacts (`deploy/helm/osprey`): the chart lints and
//! renders with the default, least-privilege, example and every-option
//! values, and each rendered built-in object passes the Kubernetes 1.32 API
//! schema (`kubernetes-validate --strict`; the prometheus-operator kinds are
//! not in it, so they are only counted); the alert rules pass `promtool
//! check rules`; each dashboard is a Grafana JSON model (schemaVersion,
//! unique panel ids, a datasource and targets on every panel); the agent's
//! and the collector's rendered TOML name only fields their configs have.
//! (`queries.rs` checks the metric names the dashboards and rules query.)

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use osprey_e2e::{peers, require_peer};

const KUBERNETES: &str = "1.32.0";
/// What a rendered chart holds beyond the API's built-in kinds.
const CUSTOM_KINDS: [&str; 3] = ["PodMonitor", "ServiceMonitor", "PrometheusRule"];

/// Every option that renders something more: the agent's endpoints behind
/// mTLS, TLS and a token on ingest, a remote-write target with a token,
/// mTLS, headers and queue settings.
const EVERY_OPTION: &str = r#"
agent:
  privileged: false
  listenOnHostIP: false
  otlpMetrics: true
  networkPolicy: {enabled: true}
  tls: {enabled: true, secretName: agent-tls, clientCA: true}
monitoring: {podMonitor: {clientCertSecret: prometheus-client}}
collector:
  persistence: {enabled: false}
  tls: {enabled: true, secretName: collector-tls, clientCA: true}
  bearerToken: {secretName: ingest, key: token}
  externalLabels: {cluster: test}
  remoteWrite:
    - name: thanos
      url: https://thanos-receive:19291/api/v1/receive
      version: "1"
      bearerTokenSecret: {name: thanos-token, key: token}
      tlsSecret: {name: thanos-ca, mtls: true}
      endpoint: {headers: {X-Scope-OrgID: team-a}, timeout_secs: 10}
      queue: {max_bytes: 2147483648, fsync: never, when_full: drop_oldest}
      retry: {max_backoff_ms: 60000}
"#;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn chart() -> PathBuf {
    root().join("deploy/helm/osprey")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `cmd`; its stdout, or a panic with its output.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// A rendered object: its kind, `apiVersion` and text.
struct Doc {
    kind: String,
    api: String,
    text: String,
}

/// Splits `helm template` output at its `---` lines (a block scalar is
/// indented, so such a line is always a separator).
fn documents(rendered: &str) -> Vec<Doc> {
    let top = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    rendered
        .split("\n---\n")
        .map(|d| d.trim_start_matches("---\n"))
        .filter(|d| d.lines().any(|l| l.starts_with("kind:")))
        .map(|text| Doc {
            kind: top(text, "kind:"),
            api: top(text, "apiVersion:"),
            text: text.to_owned(),
        })
        .collect()
}

/// The lines of a block scalar `key: |` of a rendered document, dedented.
fn block(doc: &str, key: &str) -> String {
    let mut lines = doc.lines().skip_while(|l| l.trim() != format!("{key}: |"));
    let head = lines.next().expect("block key present");
    let indent = head.len() - head.trim_start().len();
    lines
        .take_while(|l| l.trim().is_empty() || l.len() - l.trim_start().len() > indent)
        .map(|l| l.get(indent + 2..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Keys a TOML text sets (`key = …` lines) and the tables it names.
fn toml_keys(text: &str) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for line in text.lines().map(|l| l.trim_start_matches('#').trim()) {
        if let Some(table) = line.strip_prefix('[') {
            let table = table.trim_matches(['[', ']']);
            keys.extend(table.rsplit('.').next().map(str::to_owned));
        } else if let Some((key, _)) = line
            .split_once(" = ")
            .filter(|(k, _)| k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            keys.insert(key.to_owned());
        }
    }
    keys
}

/// Checks a TOML text parses (Python's tomllib: python3 is there with
/// kubernetes-validate).
fn parses_as_toml(text: &str, what: &str) {
    let dir = scratch();
    let path = dir.join(format!("{what}.toml"));
    std::fs::write(&path, text).unwrap();
    run(Command::new("python3")
        .args([
            "-c",
            "import sys, tomllib; tomllib.load(open(sys.argv[1], 'rb'))",
        ])
        .arg(&path));
}

fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("osprey-deploy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The agent's config fields: `pub NAME:` lines of `pub struct Config`.
fn agent_fields() -> BTreeSet<String> {
    let src = read(&root().join("node-agent/src/config.rs"));
    let body = src.split("pub struct Config {").nth(1).expect("Config");
    let body = body.split("\n}").next().unwrap();
    body.lines()
        .filter_map(|l| l.trim().strip_prefix("pub "))
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.to_owned()))
        .collect()
}

/// Renders the chart with `args`, lints it the same way, validates every
/// built-in object; returns the documents.
fn render(helm: &Path, validate: &Path, name: &str, args: &[&str]) -> Vec<Doc> {
    run(Command::new(helm).arg("lint").arg(chart()).args(args));
    let rendered = run(Command::new(helm)
        .args(["template", "osprey"])
        .arg(chart())
        .args(["--namespace", "osprey"])
        .args(args));
    let docs = documents(&rendered);
    let (custom, builtin): (Vec<_>, Vec<_>) = docs
        .iter()
        .partition(|d| d.api.starts_with("monitoring.coreos.com/"));
    for d in &custom {
        assert!(
            CUSTOM_KINDS.contains(&d.kind.as_str()),
            "{name}: {}",
            d.kind
        );
    }
    for d in &builtin {
        let group = d.api.split_once('/').map_or("", |(g, _)| g);
        assert!(
            group.is_empty() || group.ends_with("k8s.io") || ["apps", "policy"].contains(&group),
            "{name}: {} {} is neither built in nor known",
            d.api,
            d.kind
        );
    }
    let file = scratch().join(format!("{name}.yaml"));
    let text: Vec<&str> = builtin.iter().map(|d| d.text.as_str()).collect();
    std::fs::write(&file, text.join("\n---\n")).unwrap();
    let out = run(Command::new(validate)
        .args(["--strict", "-k", KUBERNETES])
        .arg(&file));
    let passed = out
        .lines()
        .filter(|l| l.contains(" passed for resource "))
        .count();
    assert_eq!(
        passed,
        builtin.len(),
        "{name}: kubernetes-validate said\n{out}"
    );
    docs
}

fn one<'a>(docs: &'a [Doc], kind: &str, name_part: &str) -> &'a str {
    let found: Vec<_> = docs
        .iter()
        .filter(|d| d.kind == kind && d.text.contains(name_part))
        .collect();
    assert_eq!(found.len(), 1, "one {kind} with {name_part:?}");
    &found[0].text
}

#[test]
fn chart_renders_valid_manifests_in_every_mode() {
    let helm = require_peer!(peers::HELM);
    let validate = require_peer!(peers::KUBERNETES_VALIDATE);
    let example = chart().join("examples/kube-prometheus-stack-values.yaml");
    let every = scratch().join("every-option.yaml");
    std::fs::write(&every, EVERY_OPTION).unwrap();
    let (example, every) = (example.to_str().unwrap(), every.to_str().unwrap());
    let dashboards = std::fs::read_dir(chart().join("dashboards"))
        .unwrap()
        .count();
    let fields = agent_fields();
    let collector_keys = toml_keys(&read(&root().join("deploy/collector.example.toml")));

    for (name, args, privileged) in [
        ("default", vec![], true),
        (
            "least-privilege",
            vec!["--set", "agent.privileged=false"],
            false,
        ),
        ("example", vec!["-f", example], false),
        ("every-option", vec!["-f", every], false),
    ] {
        let docs = render(&helm, &validate, name, &args);
        let kinds: BTreeSet<&str> = docs.iter().map(|d| d.kind.as_str()).collect();
        for kind in ["DaemonSet", "StatefulSet", "Service", "PodDisruptionBudget"] {
            assert!(kinds.contains(kind), "{name}: no {kind}");
        }
        for kind in CUSTOM_KINDS {
            assert!(kinds.contains(kind), "{name}: no {kind}");
        }
        let ds = one(&docs, "DaemonSet", "osprey-agent");
        for needed in [
            "hostNetwork: true",
            "hostPID: true",
            "path: /sys/fs/bpf",
            "path: /sys/kernel/tracing",
            "path: /sys/kernel/debug",
            "path: /sys/kernel/btf",
            "path: /sys/fs/cgroup",
            "path: /proc",
            "path: /\n",
            "fieldPath: spec.nodeName",
            "fieldPath: status.hostIP",
            "priorityClassName: system-node-critical",
            "tolerations:",
        ] {
            assert!(
                ds.contains(needed),
                "{name}: the DaemonSet lacks {needed:?}"
            );
        }
        assert_eq!(ds.contains("privileged: true"), privileged, "{name}");
        if !privileged {
            for cap in [
                "- BPF",
                "- PERFMON",
                "- NET_ADMIN",
                "- DAC_READ_SEARCH",
                "- SYS_PTRACE",
            ] {
                assert!(ds.contains(cap), "{name}: no {cap}");
            }
            assert!(ds.contains("drop: [ALL]") && ds.contains("runAsNonRoot: true"));
        }
        let pod_monitor = one(&docs, "PodMonitor", "osprey-agent");
        assert!(pod_monitor.contains("- OpenMetricsText1.0.0"), "{name}");
        // The agent's TLS: its Secret mounted where agent.toml points, the
        // kubelet's probes and the PodMonitor over HTTPS, Prometheus with
        // the client certificate, checking the agents' shared name.
        let agent_toml = block(one(&docs, "ConfigMap", "agent.toml"), "agent.toml");
        let tls = name == "every-option";
        for (what, text, needed) in [
            ("DaemonSet", ds, "secretName: agent-tls"),
            ("DaemonSet", ds, "mountPath: /etc/osprey-tls"),
            ("DaemonSet", ds, "scheme: HTTPS"),
            (
                "agent.toml",
                &agent_toml,
                "tls_cert_file = \"/etc/osprey-tls/tls.crt\"",
            ),
            (
                "agent.toml",
                &agent_toml,
                "tls_key_file = \"/etc/osprey-tls/tls.key\"",
            ),
            (
                "agent.toml",
                &agent_toml,
                "tls_client_ca_file = \"/etc/osprey-tls/ca.crt\"",
            ),
            ("PodMonitor", pod_monitor, "scheme: https"),
            ("PodMonitor", pod_monitor, "serverName: osprey-agent"),
            (
                "PodMonitor",
                pod_monitor,
                "name: agent-tls\n            key: ca.crt",
            ),
            (
                "PodMonitor",
                pod_monitor,
                "name: prometheus-client\n            key: tls.crt",
            ),
            (
                "PodMonitor",
                pod_monitor,
                "name: prometheus-client\n          key: tls.key",
            ),
        ] {
            assert_eq!(text.contains(needed), tls, "{name}: {what} and {needed:?}");
        }
        let labelled = docs
            .iter()
            .filter(|d| d.kind == "ConfigMap" && d.text.contains("grafana_dashboard: \"1\""))
            .count();
        assert_eq!(labelled, dashboards, "{name}: a ConfigMap per dashboard");
        let rule = one(&docs, "PrometheusRule", "osprey");
        let alerts = read(&chart().join("rules/osprey.rules.yaml"))
            .matches("- alert: ")
            .count();
        assert_eq!(rule.matches("- alert: ").count(), alerts, "{name}");

        // The configs name only fields the programs know, and parse.
        for key in toml_keys(&agent_toml) {
            assert!(
                fields.contains(&key),
                "{name}: agent config field {key} unknown"
            );
        }
        parses_as_toml(&agent_toml, &format!("{name}-agent"));
        let collector_toml = block(one(&docs, "ConfigMap", "collector.toml"), "collector.toml");
        for key in toml_keys(&collector_toml) {
            assert!(
                collector_keys.contains(&key),
                "{name}: collector key {key} unknown"
            );
        }
        parses_as_toml(&collector_toml, &format!("{name}-collector"));
        // Each replica of an HA pair writes with its own `replica` label.
        assert_eq!(
            collector_toml.contains("[[remote_write]]"),
            collector_toml.contains("\"replica\" = \"@@POD_NAME@@\""),
            "{name}"
        );
    }

    // values.schema.json refuses a field the agent does not have.
    let refused = Command::new(&helm)
        .args(["template", "osprey"])
        .arg(chart())
        .args(["--set", "agent.config.no_such_field=1"])
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "the schema took an unknown agent field"
    );
    let _ = std::fs::remove_dir_all(scratch());
}

#[test]
fn alert_rules_pass_promtool() {
    let prometheus = require_peer!(peers::PROMETHEUS3);
    let out = run(Command::new(prometheus.with_file_name("promtool"))
        .args(["check", "rules"])
        .arg(chart().join("rules/osprey.rules.yaml")));
    assert!(out.contains("SUCCESS"), "{out}");
}

fn dashboards() -> Vec<(String, serde_json::Value)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(chart().join("dashboards")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.ends_with(".json"), "{name}: only dashboards there");
        let json = serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{name}: {e}"));
        out.push((name, json));
    }
    assert!(out.len() >= 5, "flows, http, pods, node, health");
    out
}

#[test]
fn dashboards_are_grafana_models() {
    let mut uids = BTreeSet::new();
    for (name, d) in dashboards() {
        assert!(
            d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
            "{name}"
        );
        assert!(d["title"].as_str().is_some_and(|t| !t.is_empty()), "{name}");
        assert!(
            uids.insert(d["uid"].as_str().expect("uid").to_owned()),
            "{name}: uid"
        );
        let panels = d["panels"].as_array().expect("panels");
        assert!(!panels.is_empty(), "{name}");
        let mut ids = BTreeSet::new();
        for p in panels {
            let title = p["title"].as_str().unwrap_or_default();
            assert!(
                ids.insert(p["id"].as_u64().expect("panel id")),
                "{name}: id of {title}"
            );
            assert!(
                p["gridPos"]["w"].as_u64().is_some(),
                "{name}: {title}: gridPos"
            );
            assert!(
                p["datasource"]["uid"].is_string(),
                "{name}: {title}: datasource"
            );
            let targets = p["targets"].as_array().expect("targets");
            assert!(!targets.is_empty(), "{name}: {title}: no targets");
            let mut refs = BTreeSet::new();
            for t in targets {
                assert!(
                    refs.insert(t["refId"].as_str().expect("refId")),
                    "{name}: {title}"
                );
                assert!(
                    t["expr"].as_str().is_some_and(|e| !e.is_empty()),
                    "{name}: {title}"
                );
            }
        }
    }
    let http = dashboards()
        .into_iter()
        .find(|(n, _)| n.contains("http"))
        .unwrap()
        .1;
    let exemplars = http["panels"].as_array().unwrap().iter().flat_map(|p| {
        p["targets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["exemplar"] == true)
    });
    assert!(exemplars.count() > 0, "the HTTP dashboard shows exemplars");
}
