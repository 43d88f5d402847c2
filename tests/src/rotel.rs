//! rotel (PyPI) as a real OTLP traces receiver standing in for Tempo: a
//! Python hook writes every span it receives, as one JSON line, for the
//! test to read back.

use std::{
    path::PathBuf,
    process::{Child, Command},
    time::Duration,
};

const HOOK: &str = r#"
import json
def _val(v):
    # An AnyValue: its one set field, as a plain value when rotel gives one.
    for _ in range(3):
        if isinstance(v, (str, int, float, bool)) or v is None:
            return v
        inner = getattr(v, "value", None)
        if inner is None:
            return str(v)
        v = inner
    return str(v)
def process_spans(resource_spans):
    items = resource_spans if isinstance(resource_spans, (list, tuple)) else [resource_spans]
    with open(SPANS_OUT, "a") as f:
        for rs in items:
            for ss in rs.scope_spans:
                for s in ss.spans:
                    attrs = {kv.key: _val(kv.value) for kv in s.attributes}
                    f.write(json.dumps({
                        "trace_id": s.trace_id.hex(),
                        "span_id": s.span_id.hex(),
                        "parent_span_id": s.parent_span_id.hex(),
                        "name": s.name,
                        "kind": str(s.kind),
                        "start": s.start_time_unix_nano,
                        "end": s.end_time_unix_nano,
                        "attributes": attrs,
                    }) + "\n")
    return resource_spans
"#;

/// A running rotel with its span hook; stopped and cleaned up on drop.
pub struct Rotel {
    child: Child,
    dir: PathBuf,
    pub grpc_port: u16,
    pub http_port: u16,
}

use crate::free_port;

impl Rotel {
    pub fn start(bin: &std::path::Path, tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("osprey-rotel-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("spans.jsonl");
        std::fs::write(
            dir.join("hook.py"),
            format!("SPANS_OUT = {:?}\n{HOOK}", out.display().to_string()),
        )
        .unwrap();
        let (grpc_port, http_port) = (free_port(), free_port());
        let child = Command::new(bin)
            .args(["start", "--exporter", "blackhole", "--pid-file"])
            .arg(dir.join("rotel.pid"))
            .args([
                "--otlp-grpc-endpoint",
                &format!("127.0.0.1:{grpc_port}"),
                "--otlp-http-endpoint",
                &format!("127.0.0.1:{http_port}"),
            ])
            .arg("--otlp-with-trace-processor")
            .arg(dir.join("hook.py"))
            .spawn()
            .expect("starting rotel");
        let r = Self {
            child,
            dir,
            grpc_port,
            http_port,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", grpc_port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "rotel did not listen");
            std::thread::sleep(Duration::from_millis(100));
        }
        r
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.dir.join("spans.jsonl"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Drop for Rotel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
