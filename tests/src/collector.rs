//! The real collector binary, its write-ahead queue directory, OTLP requests
//! with known contents, and a fault-injecting proxy in front of a real
//! remote-write receiver.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::{
    collector::metrics::v1::ExportMetricsServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value},
    metrics::v1::{
        Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric, number_data_point,
    },
    resource::v1::Resource,
};
use prost::Message;

/// Path of the collector built by `cargo xtask test` (OSPREY_COLLECTOR_BIN).
pub fn binary() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("OSPREY_COLLECTOR_BIN")?);
    path.exists().then_some(path)
}

pub struct Collector {
    child: Child,
    pub dir: PathBuf,
    config: PathBuf,
    pub grpc: String,
    /// `http://127.0.0.1:PORT` of OTLP/HTTP.
    pub http: String,
    /// `http://127.0.0.1:PORT` of its own /metrics.
    pub own: String,
    stderr: Arc<Mutex<String>>,
}

impl Collector {
    /// Starts the collector with `config` (TOML; listeners and `wal_dir`
    /// are added) in a fresh directory.
    pub fn start(tag: &str, config: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("osprey-collector-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("collector.toml");
        let full = format!(
            "listen = \"127.0.0.1:0\"\notlp_grpc_listen = \"127.0.0.1:0\"\notlp_http_listen = \"127.0.0.1:0\"\nwal_dir = {:?}\n{config}",
            dir.join("wal").display().to_string()
        );
        std::fs::write(&path, full).unwrap();
        Self::spawn(dir, path)
    }

    fn spawn(dir: PathBuf, config: PathBuf) -> Self {
        let bin = binary().expect("OSPREY_COLLECTOR_BIN: run `cargo xtask test`");
        let mut child = Command::new(bin)
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let (mut pipe, log) = (child.stderr.take().unwrap(), stderr.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                    eprint!("{text}");
                    log.lock().unwrap().push_str(&text);
                }
            });
        }
        let mut out = BufReader::new(child.stdout.take().unwrap());
        let mut line = |prefix: &str| {
            let mut l = String::new();
            out.read_line(&mut l).unwrap();
            l.trim()
                .strip_prefix(prefix)
                .unwrap_or_else(|| panic!("collector printed {l:?}, expected {prefix}…"))
                .to_owned()
        };
        let grpc = format!("http://{}", line("osprey-collector: OTLP gRPC on "));
        let http = line("osprey-collector: OTLP HTTP on ");
        let own = line("osprey-collector: serving ")
            .trim_end_matches("/healthz")
            .to_owned();
        Self {
            child,
            dir,
            config,
            grpc,
            http,
            own,
            stderr,
        }
    }

    /// SIGKILL, then the same config and queue directory again.
    pub fn kill_and_restart(mut self) -> Self {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let (dir, config) = (self.dir.clone(), self.config.clone());
        std::mem::forget(self);
        Self::spawn(dir, config)
    }

    pub fn kill_hard(mut self) -> PathBuf {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let dir = self.dir.clone();
        std::mem::forget(self);
        dir
    }

    /// Starts a collector on an existing directory (after [`Self::kill_hard`]).
    pub fn restart_in(dir: PathBuf) -> Self {
        let config = dir.join("collector.toml");
        Self::spawn(dir, config)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sum of the collector's own metric `name` over series with `labels`.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let text = ureq::get(&format!("{}/metrics", self.own))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        crate::exposition::sum(&crate::exposition::samples(&text), name, labels)
    }

    /// POSTs a protobuf body to OTLP/HTTP `path`; the status code.
    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> u16 {
        post(&format!("{}{path}", self.http), content_type, body, &[]).0
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// POST; (status, headers as lowercase "name: value" lines, body).
pub fn post(
    url: &str,
    content_type: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> (u16, String, Vec<u8>) {
    let mut req = ureq::post(url)
        .set("Content-Type", content_type)
        .timeout(Duration::from_secs(30));
    for (k, v) in headers {
        req = req.set(k, v);
    }
    let resp = match req.send_bytes(body) {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("POST {url}: {e}"),
    };
    let status = resp.status();
    let head = resp
        .headers_names()
        .iter()
        .map(|n| {
            format!(
                "{}: {}",
                n.to_lowercase(),
                resp.header(n).unwrap_or_default()
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    let mut bytes = Vec::new();
    resp.into_reader().read_to_end(&mut bytes).unwrap();
    (status, head, bytes)
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.to_owned())),
        }),
    }
}

/// A metrics request of `n` gauge points of `name`, labelled `run` and
/// `seq` = first..first+n, each valued `seq`, from `service.name = service`.
pub fn gauges(name: &str, run: &str, first: u64, n: u64) -> Vec<u8> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let points = (first..first + n)
        .map(|seq| NumberDataPoint {
            attributes: vec![kv("run", run), kv("seq", &seq.to_string())],
            time_unix_nano: now,
            value: Some(number_data_point::Value::AsDouble(seq as f64)),
            ..Default::default()
        })
        .collect();
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![
                    kv("service.name", "osprey-test"),
                    kv("service.instance.id", run),
                ],
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: name.to_owned(),
                    description: "test points".to_owned(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: points,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            schema_url: String::new(),
        }],
    }
    .encode_to_vec()
}

/// What the proxy does with the next requests, in order; then it forwards.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer this status (and a `Retry-After` in seconds, if given).
    Status(u16, Option<u32>),
}

/// A remote-write proxy: scripted faults first, then each request is
/// forwarded to `upstream` (a real receiver) and its answer relayed.
pub struct FaultProxy {
    pub url: String,
    pub port: u16,
    script: Arc<Mutex<std::collections::VecDeque<Fault>>>,
    /// Requests seen (faulted or forwarded).
    pub requests: Arc<Mutex<u64>>,
}

impl FaultProxy {
    pub fn start(upstream: &str, faults: Vec<Fault>) -> Self {
        Self::start_on(0, upstream, faults)
    }

    pub fn start_on(port: u16, upstream: &str, faults: Vec<Fault>) -> Self {
        let listener = TcpListener::bind(("127.0.0.1", port)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let script = Arc::new(Mutex::new(
            faults
                .into_iter()
                .collect::<std::collections::VecDeque<_>>(),
        ));
        let requests = Arc::new(Mutex::new(0));
        let (s, r, up) = (script.clone(), requests.clone(), upstream.to_owned());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (s, r, up) = (s.clone(), r.clone(), up.clone());
                std::thread::spawn(move || {
                    let _ = serve(stream, &s, &r, &up);
                });
            }
        });
        Self {
            url: format!("http://127.0.0.1:{port}/api/v1/write"),
            port,
            script,
            requests,
        }
    }

    pub fn faults_left(&self) -> usize {
        self.script.lock().unwrap().len()
    }
}

fn serve(
    mut stream: TcpStream,
    script: &Mutex<std::collections::VecDeque<Fault>>,
    requests: &Mutex<u64>,
    upstream: &str,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut headers = Vec::new();
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end().to_owned();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
                headers.push((k.trim().to_owned(), v.trim().to_owned()));
            }
        }
        let mut body = vec![0; len];
        reader.read_exact(&mut body)?;
        *requests.lock().unwrap() += 1;
        let fault = script.lock().unwrap().pop_front();
        let (status, extra, answer) = match fault {
            Some(Fault::Status(code, retry)) => {
                let extra = retry
                    .map(|s| format!("Retry-After: {s}\r\n"))
                    .unwrap_or_default();
                (code, extra, b"injected fault".to_vec())
            }
            None => {
                let pass: Vec<(&str, &str)> = headers
                    .iter()
                    .filter(|(k, _)| {
                        k.to_lowercase().starts_with("x-prometheus")
                            || k.eq_ignore_ascii_case("content-encoding")
                    })
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                let ct = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
                    .map_or("application/x-protobuf", |(_, v)| v.as_str());
                let (status, head, answer) = post(upstream, ct, &body, &pass);
                let extra: String = head
                    .lines()
                    .filter(|l| l.starts_with("x-prometheus"))
                    .map(|l| format!("{l}\r\n"))
                    .collect();
                (status, extra, answer)
            }
        };
        write!(
            stream,
            "HTTP/1.1 {status} X\r\nContent-Length: {}\r\n{extra}\r\n",
            answer.len()
        )?;
        stream.write_all(&answer)?;
    }
}

/// Bytes of the process's resident memory (VmRSS).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

/// The segment files of an exporter's queue, oldest first.
pub fn segments(wal: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(wal)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "seg"))
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}
