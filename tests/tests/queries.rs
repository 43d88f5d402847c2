//! Every metric a chart dashboard or alert rule queries is a family the
//! agent exposes (tests/golden/catalogue.txt) or the collector registers
//! (collector/src/metrics.rs), with the suffix its type gives it: a
//! renamed family cannot leave a panel or an alert silently empty.

use std::collections::{BTreeMap, BTreeSet};

use osprey_e2e::grafana::{chart, root};

fn read(path: &std::path::Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Each dashboard of the chart: (file name, JSON model).
fn dashboards() -> Vec<(String, serde_json::Value)> {
    std::fs::read_dir(chart().join("dashboards"))
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let json = serde_json::from_str(&read(&path)).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, json)
        })
        .collect()
}

/// Families by name and type: the agent's catalogue and the collector's registrations.
fn families() -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in read(&root().join("tests/golden/catalogue.txt")).lines() {
        if line.starts_with(' ') {
            continue;
        }
        let mut words = line.split_whitespace();
        if let (Some(name), Some(kind)) = (words.next(), words.next()) {
            out.insert(name.to_owned(), kind.to_owned());
        }
    }
    // `field: Family<Labels, Counter|Gauge|Histogram…>` in struct Metrics, and
    // `register("name", "help", m.field…)`.
    let src = read(&root().join("collector/src/metrics.rs"));
    let types: BTreeMap<&str, &str> = src
        .split("pub struct Metrics {")
        .nth(1)
        .and_then(|b| b.split("\n}").next())
        .unwrap()
        .lines()
        .filter_map(|l| l.trim().trim_start_matches("pub ").split_once(": Family<"))
        .map(|(field, ty)| {
            let kind = ["Counter", "Histogram", "Gauge"]
                .into_iter()
                .find(|k| ty.contains(k))
                .unwrap_or("unknown");
            (field, kind)
        })
        .collect();
    for call in src.split("register(").skip(1) {
        let name = call.split('"').nth(1).unwrap_or_default();
        let call = call.split(".clone()").next().unwrap_or_default();
        let field = call.rsplit("m.").next().unwrap_or_default();
        if let Some(kind) = types
            .get(field)
            .filter(|_| name.starts_with("osprey_collector_"))
        {
            out.insert(name.to_owned(), kind.to_lowercase());
        }
    }
    assert!(
        out.len() > 150,
        "catalogue and collector families read: {}",
        out.len()
    );
    out
}

/// Metric names a PromQL expression selects: identifiers with an Osprey,
/// Hubble, node-exporter, cAdvisor or OTel HTTP prefix that are neither in a
/// string, inside `{…}` (label matchers), in a grouping list (`by (…)`,
/// `on (…)`, `group_left (…)`, …) nor a Grafana `$variable`.
fn metric_names(expr: &str) -> Vec<String> {
    const PREFIXES: [&str; 5] = ["osprey_", "hubble_", "node_", "container_", "http_"];
    const GROUPING: [&str; 6] = [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
    ];
    let mut out = Vec::new();
    // A trailing space ends the last word.
    let (mut chars, mut quote) = (expr.chars().chain([' ']), None);
    let (mut braces, mut parens, mut label_list) = (0, 0, None::<i32>);
    let (mut word, mut last) = (String::new(), String::new());
    let mut dollar = false;
    while let Some(c) = chars.next() {
        if let Some(q) = quote {
            match c {
                '\\' => {
                    chars.next();
                }
                _ if c == q => quote = None,
                _ => {}
            }
            continue;
        }
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            word.push(c);
            continue;
        }
        if !word.is_empty() {
            let selector = braces == 0 && label_list.is_none() && !dollar;
            if selector && PREFIXES.iter().any(|p| word.starts_with(p)) {
                out.push(word.clone());
            }
            last = std::mem::take(&mut word);
            dollar = false;
        }
        match c {
            '"' | '\'' | '`' => quote = Some(c),
            '{' => braces += 1,
            '}' => braces -= 1,
            '$' => dollar = true,
            '(' => {
                parens += 1;
                if GROUPING.contains(&last.as_str()) && label_list.is_none() {
                    label_list = Some(parens);
                }
            }
            ')' => {
                if label_list == Some(parens) {
                    label_list = None;
                }
                parens -= 1;
            }
            _ if c.is_whitespace() => continue,
            _ => {}
        }
        last.clear();
    }
    out
}

/// Whether `name` is a series name of a family: a counter's `_total`, a
/// histogram's `_bucket`, `_sum`, `_count`, any other type's own name.
fn exposed(name: &str, families: &BTreeMap<String, String>) -> bool {
    let kind = |base: &str| families.get(base).map(String::as_str);
    if name
        .strip_suffix("_total")
        .is_some_and(|base| kind(base) == Some("counter"))
    {
        return true;
    }
    let histogram = ["_bucket", "_sum", "_count"].into_iter().any(|suffix| {
        name.strip_suffix(suffix)
            .is_some_and(|base| kind(base) == Some("histogram"))
    });
    histogram || matches!(kind(name), Some("gauge" | "unknown"))
}

/// The `expr:` of every rule, inline or as a block scalar.
fn rule_exprs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Some((indent, rest)) = line.split_once("expr:") else {
            continue;
        };
        let rest = rest.trim();
        if !["|", "|-", ">", ">-"].contains(&rest) {
            out.push(rest.to_owned());
            continue;
        }
        let body = lines[i + 1..]
            .iter()
            .take_while(|l| l.len() - l.trim_start().len() > indent.len())
            .copied()
            .collect::<Vec<_>>();
        out.push(body.join("\n"));
    }
    out
}

#[test]
fn tokenizer_finds_metrics_only() {
    let expr = r#"sum by (http_response_status_code) (rate(http_server_request_duration_seconds_count{instance=~"$instance", http_request_method!="GET"}[$__rate_interval])) / on (node_x) group_left(container_y) sum(node_load1) and label_replace(osprey_series, "x", "$1", "osprey_fake", "(.*)")"#;
    assert_eq!(
        metric_names(expr),
        [
            "http_server_request_duration_seconds_count",
            "node_load1",
            "osprey_series"
        ]
    );
    let families = families();
    assert!(exposed("osprey_flow_bytes_total", &families));
    assert!(!exposed("osprey_flow_bytes", &families));
    assert!(exposed("osprey_tcp_rtt_seconds_bucket", &families));
    assert!(exposed("osprey_collector_queue_bytes", &families));
    assert!(exposed(
        "osprey_collector_wal_truncated_bytes_total",
        &families
    ));
    assert!(!exposed("osprey_tcp_rtt_seconds", &families));
}

#[test]
fn queries_use_only_exposed_metrics() {
    let families = families();
    let mut queries: Vec<(String, String)> = Vec::new();
    for (name, d) in dashboards() {
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().unwrap() {
                queries.push((name.clone(), t["expr"].as_str().unwrap_or_default().into()));
            }
        }
        for v in d["templating"]["list"].as_array().unwrap() {
            if let Some(q) = v["query"]["query"].as_str() {
                queries.push((name.clone(), q.to_owned()));
            }
        }
    }
    let rules = rule_exprs(&read(&chart().join("rules/osprey.rules.yaml")));
    assert!(rules.len() >= 15, "rules read: {}", rules.len());
    queries.extend(
        rules
            .into_iter()
            .map(|e| ("osprey.rules.yaml".to_owned(), e)),
    );
    let mut used = BTreeSet::new();
    let mut unknown = Vec::new();
    for (source, expr) in &queries {
        for metric in metric_names(expr) {
            if !exposed(&metric, &families) {
                unknown.push(format!("{source}: {metric}"));
            }
            used.insert(metric);
        }
    }
    assert!(
        unknown.is_empty(),
        "not exposed by the agent or collector:\n{}",
        unknown.join("\n")
    );
    assert!(
        used.len() > 60,
        "metrics found in the queries: {}",
        used.len()
    );
}
