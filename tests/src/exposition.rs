//! Reading samples out of an exposition, and validating it with a real
//! OpenMetrics parser (the Python prometheus-client's).

use std::{collections::BTreeMap, io::Write, process::Command};

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// The trace ids of the exemplars on the sample lines that start with
/// `name` (a counter, or a histogram's `_bucket`) and whose labels include
/// all of `want`.
pub fn exemplar_traces(text: &str, name: &str, want: &[(&str, &str)]) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with(name))
        .filter_map(|l| l.split_once(" # {"))
        .filter(|(series, _)| {
            want.iter()
                .all(|(k, v)| series.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|(_, exemplar)| {
            let start = exemplar.find("trace_id=\"")? + "trace_id=\"".len();
            Some(exemplar[start..start + exemplar[start..].find('"')?].to_owned())
        })
        .collect()
}

/// Drop series (`osprey_flow_drops_total`, `hubble_drop_total`) with one of
/// `addrs` at either end, each as a line for an assertion message.
pub fn drops_touching(s: &[Sample], addrs: &[String]) -> Vec<String> {
    s.iter()
        .filter(|x| x.name == "osprey_flow_drops_total" || x.name == "hubble_drop_total")
        .filter(|x| {
            ["source_ip", "destination_ip", "source", "destination"]
                .iter()
                .any(|k| x.labels.get(*k).is_some_and(|v| addrs.contains(v)))
        })
        .map(|x| format!("{} {:?} {}", x.name, x.labels, x.value))
        .collect()
}

/// Parses the sample lines of a text exposition (no escapes in our label values).
pub fn samples(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let line = line.split(" # ").next()?; // drop exemplars
            let (series, value) = line.rsplit_once(' ')?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|kv| !kv.is_empty())
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_owned(), v.trim_matches('"').to_owned()))
                })
                .collect();
            Some(Sample {
                name: name.to_owned(),
                labels,
                value: value.parse().ok()?,
            })
        })
        .collect()
}

/// Sum of `name` over samples whose labels include all of `want`.
pub fn sum(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// Runs the Python prometheus-client OpenMetrics parser over `text`.
/// Returns the number of metric families it parsed, or its error.
pub fn validate_openmetrics(text: &str) -> Result<usize, String> {
    let mut file = tempfile(text);
    file.flush().unwrap();
    let script = "import sys\n\
        from prometheus_client.openmetrics.parser import text_string_to_metric_families\n\
        families = list(text_string_to_metric_families(open(sys.argv[1]).read()))\n\
        print(len(families))\n";
    let out = Command::new("python3")
        .args(["-c", script, &file.path])
        .output()
        .map_err(|e| format!("running python3: {e}"))?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|e| format!("{e}"))
}

pub struct TempFile {
    pub path: String,
    file: std::fs::File,
}

impl Write for TempFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

fn tempfile(text: &str) -> TempFile {
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let path = format!(
        "{}/osprey-exposition-{}-{}.txt",
        std::env::temp_dir().display(),
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(text.as_bytes()).unwrap();
    TempFile { path, file }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labels_and_values() {
        let text = "# TYPE x counter\nx_total{a=\"1\",b=\"two\"} 42\ny 1.5\n# EOF\n";
        let s = samples(text);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].labels["b"], "two");
        assert_eq!(sum(&s, "x_total", &[("a", "1")]), 42.0);
        assert_eq!(sum(&s, "x_total", &[("a", "2")]), 0.0);
    }
}
