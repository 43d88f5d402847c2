//! `cargo xtask run --stack`: the whole pipeline on one host, on loopback,
//! wired as the Helm chart wires it. The agent serves `/metrics` (scraped by
//! Prometheus as OpenMetrics, so exemplars arrive) and pushes OTLP metrics and
//! HTTP spans to the collector; the collector remote-writes (v2) to the same
//! Prometheus (remote-write receiver and exemplar storage on) and sends the
//! spans on to an OTLP traces receiver (rotel, standing in for Tempo, which
//! writes every span it receives to a JSON-lines file). Ctrl-C stops them all.
//! The scraped series carry `job="osprey"`, the pushed ones the agent's
//! OTLP service name, `job="osprey-agent"`.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    sync::atomic::{AtomicBool, Ordering},
    thread::sleep,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::{bench::terminate, setup::peers};

const AGENT: &str = "127.0.0.1:9811";
const PROMETHEUS: &str = "127.0.0.1:9090";
const COLLECTOR_METRICS: &str = "127.0.0.1:9465";
const COLLECTOR_GRPC: &str = "127.0.0.1:4317";
const COLLECTOR_HTTP: &str = "127.0.0.1:4318";
const TRACES_GRPC: &str = "127.0.0.1:14317";
const TRACES_HTTP: &str = "127.0.0.1:14318";

/// rotel's span hook: one JSON line per span received.
const SPAN_HOOK: &str = r#"
import json
def process_spans(resource_spans):
    items = resource_spans if isinstance(resource_spans, (list, tuple)) else [resource_spans]
    with open(SPANS_OUT, "a") as f:
        for rs in items:
            for ss in rs.scope_spans:
                for s in ss.spans:
                    f.write(json.dumps({"trace_id": s.trace_id.hex(), "span_id": s.span_id.hex(),
                                        "name": s.name, "start": s.start_time_unix_nano,
                                        "end": s.end_time_unix_nano}) + "\n")
    return resource_spans
"#;

fn prometheus_config() -> String {
    format!(
        "global:\n  scrape_interval: 5s\n  evaluation_interval: 5s\n\
         scrape_configs:\n\
         \x20 - job_name: osprey\n\
         \x20   scrape_protocols: [OpenMetricsText1.0.0, OpenMetricsText0.0.1, PrometheusText0.0.4]\n\
         \x20   static_configs: [{{targets: ['{AGENT}']}}]\n\
         \x20 - job_name: osprey-collector\n\
         \x20   static_configs: [{{targets: ['{COLLECTOR_METRICS}']}}]\n"
    )
}

/// The stack's processes, stopped (SIGTERM, then waited for) on drop, last
/// started first.
struct Stack(Vec<(&'static str, Child)>);

impl Drop for Stack {
    fn drop(&mut self) {
        while let Some((name, mut child)) = self.0.pop() {
            eprintln!("xtask: stopping {name}");
            terminate(&mut child);
        }
    }
}

/// Waits until something listens on `addr`, or fails after 30 s.
fn listening(name: &str, addr: &str, child: &mut Child) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        if let Some(status) = child.try_wait()? {
            bail!("{name} exited before listening on {addr}: {status}");
        }
        if Instant::now() > deadline {
            bail!("{name} did not listen on {addr} within 30 s");
        }
        sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn start(stack: &mut Stack, name: &'static str, addr: &str, cmd: &mut Command) -> Result<()> {
    use std::os::unix::process::CommandExt;
    let child = cmd
        .env("RUST_LOG", "warn")
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting {name}"))?;
    stack.0.push((name, child));
    let child = &mut stack.0.last_mut().expect("just pushed").1;
    listening(name, addr, child)?;
    eprintln!("xtask: {name} listening on {addr}");
    Ok(())
}

/// Set by Ctrl-C (SIGINT) or SIGTERM.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: i32) {
    STOP.store(true, Ordering::Relaxed);
}

/// Ctrl-C and SIGTERM set `STOP` instead of killing this process. The
/// children run in process groups of their own, so the terminal's Ctrl-C
/// reaches only this process, which stops them in order: the agent first
/// (its last interval still reaches the collector), then the collector (its
/// queue still reaches Prometheus), then the rest.
fn catch_stop() {
    unsafe extern "C" {
        fn signal(sig: i32, handler: extern "C" fn(i32)) -> usize;
    }
    // SAFETY: the handler only stores to an atomic (async-signal-safe).
    unsafe {
        signal(2, on_signal);
        signal(15, on_signal);
    }
}

pub fn run(agent: &Path, agent_args: &[String]) -> Result<()> {
    catch_stop();
    let dir = std::env::temp_dir().join("osprey-stack");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("prometheus"))?;
    let bin_dir = agent.parent().context("the agent's directory")?;
    let spans = dir.join("spans.jsonl");
    std::fs::write(
        dir.join("hook.py"),
        format!("SPANS_OUT = {:?}\n{SPAN_HOOK}", spans.display().to_string()),
    )?;
    std::fs::write(dir.join("prometheus.yml"), prometheus_config())?;
    let peer = |var: &str| -> Result<PathBuf> {
        peers::env()?
            .into_iter()
            .find(|(v, _)| *v == var)
            .map(|(_, p)| p)
            .with_context(|| format!("{var} is not a known peer"))
    };

    let mut stack = Stack(Vec::new());
    start(
        &mut stack,
        "traces receiver (rotel, for Tempo)",
        TRACES_GRPC,
        Command::new(peer("OSPREY_ROTEL")?)
            .args(["start", "--exporter", "blackhole", "--pid-file"])
            .arg(dir.join("rotel.pid"))
            .args(["--otlp-grpc-endpoint", TRACES_GRPC])
            .args(["--otlp-http-endpoint", TRACES_HTTP])
            .arg("--otlp-with-trace-processor")
            .arg(dir.join("hook.py")),
    )?;
    start(
        &mut stack,
        "Prometheus 3",
        PROMETHEUS,
        Command::new(peer("OSPREY_PROMETHEUS3")?)
            .arg(format!(
                "--config.file={}",
                dir.join("prometheus.yml").display()
            ))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prometheus").display()
            ))
            .arg(format!("--web.listen-address={PROMETHEUS}"))
            .args([
                "--web.enable-remote-write-receiver",
                "--enable-feature=exemplar-storage",
                "--log.level=warn",
            ]),
    )?;
    start(
        &mut stack,
        "osprey-collector",
        COLLECTOR_GRPC,
        Command::new(bin_dir.join("osprey-collector"))
            .args(["--listen", COLLECTOR_METRICS])
            .args(["--otlp-grpc-listen", COLLECTOR_GRPC])
            .args(["--otlp-http-listen", COLLECTOR_HTTP])
            .arg(format!(
                "--remote-write-url=http://{PROMETHEUS}/api/v1/write"
            ))
            .args(["--remote-write-version", "2"])
            .arg(format!("--otlp-traces-url=http://{TRACES_HTTP}"))
            .arg(format!("--wal-dir={}", dir.join("wal").display())),
    )?;
    start(
        &mut stack,
        "osprey-agent",
        AGENT,
        Command::new(agent)
            .args(["--listen", AGENT])
            .arg(format!("--otlp-endpoint=http://{COLLECTOR_GRPC}"))
            .args(["--otlp-interval-secs", "5"])
            .args(agent_args),
    )?;
    print_guide(&spans);

    // Until Ctrl-C, or one of them stops; dropping `stack` stops the rest.
    while !STOP.load(Ordering::Relaxed) {
        for (name, child) in &mut stack.0 {
            if let Some(status) = child.try_wait()? {
                eprintln!("xtask: {name} exited ({status}); stopping the rest");
                return Ok(());
            }
        }
        sleep(Duration::from_millis(200));
    }
    Ok(())
}

fn print_guide(spans: &Path) {
    let query =
        |q: &str| format!("curl -s http://{PROMETHEUS}/api/v1/query --data-urlencode '{q}'");
    let exemplars = |q: &str| {
        format!("curl -s http://{PROMETHEUS}/api/v1/query_exemplars --data-urlencode '{q}'")
    };
    println!(
        "\nThe stack runs on loopback:\n\
         \x20 agent      http://{AGENT}/metrics   (osprey-agent observe: live flows)\n\
         \x20 collector  OTLP {COLLECTOR_GRPC} (gRPC), {COLLECTOR_HTTP} (HTTP); its metrics http://{COLLECTOR_METRICS}/metrics\n\
         \x20 Prometheus http://{PROMETHEUS} (API; scrapes the agent as OpenMetrics, receives the collector's remote-write v2, exemplars on)\n\
         \x20 traces     OTLP {TRACES_GRPC} / {TRACES_HTTP}; every span received: {}\n\
         \nThree queries to try (make some traffic first: HTTP with a traceparent header, a dropped packet):\n\
         \n# flows by workload (by IP standalone; with Kubernetes, --hubble-source-context workload and hubble_* families)\n{}\n\
         \n# drops by the kernel's reason, and the trace of a dropped connection\n{}\n{}\n\
         \n# HTTP p99 per server port, and the trace ids behind it\n{}\n{}\n\
         \nCtrl-C stops them all.\n",
        spans.display(),
        query(
            "query=topk(5, sum by (source_ip, destination_ip, destination_port) (rate(osprey_flow_bytes_total[1m])))"
        ),
        query("query=sum by (reason) (rate(hubble_drop_total[5m]))"),
        exemplars("query=osprey_flow_drops_total"),
        query(
            "query=histogram_quantile(0.99, sum by (le, server_port) (rate(http_server_request_duration_seconds_bucket[5m])))"
        ),
        exemplars("query=http_server_request_duration_seconds_bucket"),
    );
}
