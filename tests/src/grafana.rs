//! The chart's Grafana dashboards and alert rules as the tests read them:
//! every panel query with its template variables substituted as Grafana's
//! "All" does, the variables, and the rule file rewritten for a short test.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde_json::Value;

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

pub fn chart() -> PathBuf {
    root().join("deploy/helm/osprey")
}

/// The agent's configuration file as the chart renders it with `sets`
/// (`helm template --set …` of the agent's ConfigMap, its `agent.toml`).
pub fn rendered_agent_toml(helm: &Path, sets: &[&str]) -> String {
    let mut cmd = std::process::Command::new(helm);
    cmd.args(["template", "osprey"])
        .arg(chart())
        .args(["--show-only", "templates/agent-configmap.yaml"]);
    for set in sets {
        cmd.args(["--set", set]);
    }
    let out = cmd.output().expect("running helm");
    assert!(
        out.status.success(),
        "helm template: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let toml: Vec<&str> = text
        .lines()
        .skip_while(|l| l.trim() != "agent.toml: |")
        .skip(1)
        .take_while(|l| l.starts_with("    ") || l.trim().is_empty())
        .map(|l| l.strip_prefix("    ").unwrap_or(""))
        .collect();
    assert!(!toml.is_empty(), "no agent.toml in:\n{text}");
    toml.join("\n") + "\n"
}

/// The chart's rule file with every `for:` shortened to 1s and every range
/// window to 1m, so that an alert fires within seconds of its cause.
pub fn rule_overlay(text: &str) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(value) = trimmed.strip_prefix("for: ") {
            assert!(
                humantime::parse_duration(value.trim()).is_ok(),
                "for: {value}"
            );
            out.push_str(&line[..line.len() - trimmed.len()]);
            out.push_str("for: 1s\n");
            continue;
        }
        let mut rest = line;
        while let Some(open) = rest.find('[') {
            out.push_str(&rest[..=open]);
            rest = &rest[open + 1..];
            let close = rest.find(']').unwrap_or(0);
            let inner = &rest[..close];
            let is_range = inner.len() >= 2
                && inner[..inner.len() - 1].chars().all(|c| c.is_ascii_digit())
                && inner.ends_with(['s', 'm', 'h', 'd']);
            if is_range {
                out.push_str("1m");
                rest = &rest[close..];
            }
        }
        out.push_str(rest);
        out.push('\n');
    }
    out
}

/// The value Grafana gives a template variable when "All" is selected (the
/// variable's `allValue`, `.*`), and `$__rate_interval` / `$__interval` as
/// for a 1s scrape interval in a short time range.
pub fn substitute(expr: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        let (name, after) = if let Some(braced) = rest.strip_prefix('{') {
            let end = braced.find('}').expect("closing brace");
            (&braced[..end], &braced[end + 1..])
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            (&rest[..end], &rest[end..])
        };
        if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
            // `$1` of label_replace.
            out.push('$');
            continue;
        }
        let value = match name {
            "__rate_interval" | "__interval" | "__range" => "1m",
            _ => vars
                .get(name)
                .unwrap_or_else(|| panic!("{expr}: template variable ${name} unknown"))
                .as_str(),
        };
        out.push_str(value);
        rest = after;
    }
    out.push_str(rest);
    out
}

/// One query of a panel.
pub struct Target {
    pub dashboard: String,
    pub panel: String,
    pub ref_id: String,
    pub expr: String,
    pub exemplar: bool,
}

/// A template variable: (dashboard file, name, metric, label).
pub type Variable = (String, String, String, String);

/// Every dashboard's panel queries (substituted) and template variables
/// (name, metric, label).
pub fn dashboards() -> (Vec<Target>, Vec<Variable>) {
    let mut targets = Vec::new();
    let mut variables = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart().join("dashboards"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut vars = BTreeMap::new();
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            let var = v["name"].as_str().unwrap().to_owned();
            match v["type"].as_str() {
                Some("datasource") => {}
                Some("query") => {
                    let all = v["allValue"].as_str().unwrap_or(".*");
                    assert!(v["includeAll"] == true, "{name}: ${var} has no All");
                    vars.insert(var.clone(), all.to_owned());
                    let q = v["query"]["query"].as_str().unwrap_or_default();
                    let inner = q
                        .strip_prefix("label_values(")
                        .and_then(|q| q.strip_suffix(')'))
                        .unwrap_or_else(|| panic!("{name}: ${var}: {q}"));
                    let (metric, label) = inner.rsplit_once(',').unwrap();
                    variables.push((
                        name.clone(),
                        var,
                        metric.trim().to_owned(),
                        label.trim().to_owned(),
                    ));
                }
                other => panic!("{name}: ${var}: variable type {other:?}"),
            }
        }
        // `label_values(m{namespace=~"$namespace"}, pod)`: chained variables.
        for v in variables.iter_mut().filter(|v| v.0 == name) {
            v.2 = substitute(&v.2, &vars);
        }
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                targets.push(Target {
                    dashboard: name.clone(),
                    panel: p["title"].as_str().unwrap().to_owned(),
                    ref_id: t["refId"].as_str().unwrap().to_owned(),
                    expr: substitute(t["expr"].as_str().unwrap(), &vars),
                    exemplar: t["exemplar"] == true,
                });
            }
        }
    }
    (targets, variables)
}
