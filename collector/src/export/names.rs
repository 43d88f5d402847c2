//! OTLP → Prometheus names, as the OpenTelemetry specification's
//! Prometheus compatibility section and Prometheus 3's OTLP receiver build
//! them (`UnderscoreEscapingWithSuffixes`): invalid characters become `_`,
//! the unit is appended as a word unless the name already has it, and a
//! monotonic counter ends in exactly one `_total`.

use std::borrow::Cow;

/// What kind of Prometheus metric the name is for (suffixes depend on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameKind {
    Counter,
    Gauge,
    Other,
}

/// The Prometheus metric name for an OTLP metric.
/// `translate = false` only replaces invalid characters (Osprey's own
/// metrics already carry Prometheus names and come through unchanged).
pub fn metric_name(name: &str, unit: &str, kind: NameKind, translate: bool) -> String {
    if !translate {
        return sanitize(name, true);
    }
    let mut words: Vec<&str> = name
        .split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    if kind == NameKind::Counter {
        words.retain(|w| *w != "total");
    }
    let unit_words = unit_words(unit, kind);
    let mut out: Vec<String> = words.iter().map(|w| (*w).to_owned()).collect();
    for word in unit_words.split('_').filter(|w| !w.is_empty()) {
        if !words.contains(&word) {
            out.push(word.to_owned());
        }
    }
    if kind == NameKind::Counter {
        out.push("total".to_owned());
    }
    let joined = out.join("_");
    if joined.starts_with(|c: char| c.is_ascii_digit()) {
        format!("_{joined}")
    } else {
        joined
    }
}

/// A label name: invalid characters become `_`; a leading digit or a single
/// leading `_` gets the `key` prefix (`__` is reserved and kept). A key
/// that is already a valid name is borrowed, not copied.
pub fn label_name(key: &str) -> Cow<'_, str> {
    let valid = key.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_')
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && (!key.starts_with('_') || key.starts_with("__"));
    if valid {
        return Cow::Borrowed(key);
    }
    let s = sanitize(key, false);
    Cow::Owned(if s.starts_with(|c: char| c.is_ascii_digit()) {
        format!("key_{s}")
    } else if s.starts_with('_') && !s.starts_with("__") {
        format!("key{s}")
    } else {
        s
    })
}

fn sanitize(s: &str, colon_ok: bool) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || (colon_ok && c == ':') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The words a UCUM unit adds: `s` → `seconds`, `By/s` →
/// `bytes_per_second`, `1` → `ratio` (gauges only); annotations (`{packet}`)
/// add nothing.
fn unit_words(unit: &str, kind: NameKind) -> String {
    let unit = strip_annotations(unit);
    if unit == "1" {
        return if kind == NameKind::Gauge {
            "ratio".to_owned()
        } else {
            String::new()
        };
    }
    let (main, per) = match unit.split_once('/') {
        Some((m, p)) => (m, Some(p)),
        None => (unit.as_str(), None),
    };
    let mut out = main_unit(main).to_owned();
    if let Some(per) = per.map(per_unit).filter(|p| !p.is_empty()) {
        if out.is_empty() {
            out = format!("per_{per}");
        } else {
            out = format!("{out}_per_{per}");
        }
    }
    out
}

fn strip_annotations(unit: &str) -> String {
    let mut out = String::with_capacity(unit.len());
    let mut depth = 0u32;
    for c in unit.chars() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            c if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.trim().to_owned()
}

fn main_unit(u: &str) -> &str {
    match u {
        "d" => "days",
        "h" => "hours",
        "min" => "minutes",
        "s" => "seconds",
        "ms" => "milliseconds",
        "us" => "microseconds",
        "ns" => "nanoseconds",
        "By" => "bytes",
        "KiBy" => "kibibytes",
        "MiBy" => "mebibytes",
        "GiBy" => "gibibytes",
        "TiBy" => "tibibytes",
        "KBy" => "kilobytes",
        "MBy" => "megabytes",
        "GBy" => "gigabytes",
        "TBy" => "terabytes",
        "m" => "meters",
        "V" => "volts",
        "A" => "amperes",
        "J" => "joules",
        "W" => "watts",
        "g" => "grams",
        "Cel" => "celsius",
        "Hz" => "hertz",
        "%" => "percent",
        other if other.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') => other,
        _ => "",
    }
}

fn per_unit(u: &str) -> &str {
    match u {
        "s" => "second",
        "m" => "minute",
        "h" => "hour",
        "d" => "day",
        "w" => "week",
        "mo" => "month",
        "y" => "year",
        other => main_unit(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_specification_examples() {
        use NameKind::*;
        let t = |n, u, k| metric_name(n, u, k, true);
        assert_eq!(
            t("http.server.duration", "s", Other),
            "http_server_duration_seconds"
        );
        assert_eq!(
            t("system.network.io", "By", Counter),
            "system_network_io_bytes_total"
        );
        assert_eq!(t("requests", "{request}", Counter), "requests_total");
        assert_eq!(t("requests_total", "1", Counter), "requests_total");
        assert_eq!(t("cpu.utilization", "1", Gauge), "cpu_utilization_ratio");
        assert_eq!(t("net.rate", "By/s", Gauge), "net_rate_bytes_per_second");
        assert_eq!(t("2xx", "", Gauge), "_2xx");
        // Osprey's own names survive translation unchanged.
        assert_eq!(
            t("osprey_flow_bytes_total", "By", Counter),
            "osprey_flow_bytes_total"
        );
        assert_eq!(
            t("osprey_tcp_rtt_seconds", "s", Other),
            "osprey_tcp_rtt_seconds"
        );
        assert_eq!(
            t("node_cpu_seconds_total", "", Counter),
            "node_cpu_seconds_total"
        );
        assert_eq!(metric_name("a.b-c", "s", Counter, false), "a_b_c");
    }

    #[test]
    fn label_names() {
        assert_eq!(label_name("service.instance.id"), "service_instance_id");
        assert_eq!(label_name("0x"), "key_0x");
        assert_eq!(label_name("_x"), "key_x");
        assert_eq!(label_name("__name__"), "__name__");
        assert_eq!(label_name("a.b"), "a_b");
        assert!(matches!(label_name("pod_name"), Cow::Borrowed("pod_name")));
    }
}
