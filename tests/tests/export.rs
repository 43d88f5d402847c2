//! The export tier end to end, real processes on loopback: a real agent
//! with real traffic pushes OTLP to the collector, which writes remote-write
//! 2.0 to Prometheus 3.5 and (falling back from 2.0) 1.0 to Prometheus 2.42;
//! a third-party OTel SDK's metrics and traces go through the same
//! collector to Prometheus (translated names, target_info, promoted labels,
//! exemplars), rotel (standing in for Tempo) and VictoriaMetrics (OTLP).

use std::collections::BTreeSet;
use std::process::Command;

use osprey_e2e::collector::{Collector, gauges};
use osprey_e2e::netns::PodPair;
use osprey_e2e::prometheus::{self, Prometheus};
use osprey_e2e::{agent, eventually, peers, require, require_peer, traffic};
use serde_json::Value;

/// Family names Prometheus holds for `job`.
fn names(prom: &Prometheus, job: &str) -> BTreeSet<String> {
    prom.query(&format!("group by (__name__) ({{job=\"{job}\"}})"))
        .into_iter()
        .map(|(m, _)| m["__name__"].as_str().unwrap().to_owned())
        .collect()
}

/// Label sets (without job and instance) of `selector` for `job`.
fn label_sets(prom: &Prometheus, selector: &str, job: &str) -> BTreeSet<String> {
    let sel = selector.replacen('{', &format!("{{job=\"{job}\","), 1);
    prom.query(&sel)
        .into_iter()
        .map(|(mut m, _)| {
            let o = m.as_object_mut().unwrap();
            o.remove("job");
            o.remove("instance");
            serde_json::to_string(o).unwrap()
        })
        .collect()
}

fn value(prom: &Prometheus, q: &str) -> Option<f64> {
    prom.query(q).first().map(|(_, v)| *v)
}

#[test]
fn an_agent_pushes_through_the_collector_and_push_and_scrape_agree() {
    let p3bin = require_peer!(peers::PROMETHEUS3);
    require!(
        prometheus::binary().is_some(),
        "prometheus 2.42 is not installed (cargo xtask setup)"
    );
    require!(osprey_e2e::is_root(), "root is needed to load eBPF");
    let p2 = Prometheus::receiver(&prometheus::binary().unwrap(), &[]).unwrap();
    let p3_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = format!(
        "[[remote_write]]\nname = \"p3\"\nurl = \"http://127.0.0.1:{p3_port}/api/v1/write\"\n\
         [[remote_write]]\nname = \"p2\"\nurl = {:?}\nversion = \"2\"\n",
        p2.write_url()
    );
    let c = Collector::start("push", &config);
    let Some(agent) = agent::for_test(&[
        "--drain-interval-ms",
        "200",
        "--otlp-endpoint",
        &c.grpc,
        "--otlp-interval-secs",
        "1",
    ]) else {
        return;
    };
    // The seed stack's Prometheus: it scrapes the agent and receives the push.
    let p3 = Prometheus::start_with(
        &p3bin,
        &[format!("127.0.0.1:{}", agent.port())],
        &[
            "--web.enable-remote-write-receiver",
            &format!("--web.listen-address=127.0.0.1:{p3_port}"),
        ],
    )
    .unwrap();

    let pair = PodPair::new("px", "10.206.0.1", "10.206.0.2", 24);
    let x = traffic::udp(&pair, 6100, (120, 500), (30, 200));
    let expected = x.a_to_b.0 as f64 * (x.a_to_b.1 as f64 + 8.0 + 20.0);
    let flow =
        "osprey_flow_bytes_total{source_ip=\"10.206.0.1\",direction=\"egress\",protocol=\"UDP\"}";
    let scraped = format!("sum({})", flow.replacen('{', "{job=\"osprey\",", 1));
    let pushed = format!("sum({})", flow.replacen('{', "{job=\"osprey-agent\",", 1));
    let got = osprey_e2e::settle(60, || {
        let v = (
            value(&p3, &scraped),
            value(&p3, &pushed),
            value(&p2, &format!("sum({flow})")),
        );
        (v == (Some(expected), Some(expected), Some(expected)), v)
    });
    assert_eq!(
        got,
        (Some(expected), Some(expected), Some(expected)),
        "(scraped, pushed RW2, pushed RW1) flow bytes"
    );

    // A traced HTTP request between the pods: its trace id is an exemplar
    // of the server's duration histogram on every path: scraped, pushed
    // over RW 2.0 (Prometheus 3) and over RW 1.0 (Prometheus 2.42).
    let server = osprey_e2e::http::serve(&pair, 6200, 1);
    let (tp, trace, _) = osprey_e2e::http::traceparent(0x5e);
    osprey_e2e::http::client(
        &pair,
        6200,
        vec![vec![osprey_e2e::http::Step::One(
            osprey_e2e::http::Req::get("/fast").traced(&tp),
        )]],
    );
    server.join().unwrap();
    let bucket = |job: &str| {
        format!("http_server_request_duration_seconds_bucket{{job=\"{job}\",server_port=\"6200\"}}")
    };
    let has = |prom: &Prometheus, q: &str| {
        prom.exemplars(q, 600)
            .iter()
            .any(|(_, labels, _)| labels["trace_id"] == trace.as_str())
    };
    let p2_bucket = "http_server_request_duration_seconds_bucket{server_port=\"6200\"}";
    let found = osprey_e2e::settle(60, || {
        let f = (
            has(&p3, &bucket("osprey")),
            has(&p3, &bucket("osprey-agent")),
            has(&p2, p2_bucket),
        );
        (f == (true, true, true), f)
    });
    assert_eq!(
        found,
        (true, true, true),
        "trace {trace} as exemplar: (scraped, pushed RW2, pushed RW1)"
    );

    // Every family the scrape has, the push has (and target_info besides).
    let scrape_only = [
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
    ];
    let mut s = names(&p3, "osprey");
    s.retain(|n| !scrape_only.contains(&n.as_str()));
    let mut p = names(&p3, "osprey-agent");
    assert!(p.remove("target_info"));
    assert_eq!(
        s.symmetric_difference(&p).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "families only one path has"
    );
    assert!(s.len() > 100, "{} families", s.len());
    // Label sets agree, for this test's UDP flow (its HTTP connection's flows
    // may still be between a scrape and a push) and for families no other
    // test changes.
    for sel in [
        "osprey_flow_bytes_total{source_ip=\"10.206.0.1\",protocol=\"UDP\"}",
        "osprey_flow_packets_total{source_ip=\"10.206.0.1\",protocol=\"UDP\"}",
        "node_cpu_seconds_total{}",
        "node_memory_MemTotal_bytes{}",
        "osprey_bpf_program_info{}",
    ] {
        let (a, b) = (
            label_sets(&p3, sel, "osprey"),
            label_sets(&p3, sel, "osprey-agent"),
        );
        assert!(!a.is_empty(), "{sel}: no series");
        assert_eq!(a, b, "{sel}: label sets, scraped vs pushed");
    }
    // target_info names the node.
    let info = p3.query("target_info{job=\"osprey-agent\"}");
    assert_eq!(info.len(), 1, "{info:?}");
    assert!(info[0].0["host_name"].is_string());

    // Remote-write 2.0 was confirmed by Prometheus 3 (written-count headers);
    // Prometheus 2.42 answered 2.0 with a bare 204, so that exporter fell back.
    assert_eq!(
        c.metric(
            "osprey_collector_remote_write_version",
            &[("exporter", "p3")]
        ),
        2.0
    );
    assert_eq!(
        c.metric(
            "osprey_collector_remote_write_version",
            &[("exporter", "p2")]
        ),
        1.0
    );
    assert_eq!(c.metric("osprey_collector_dropped_total", &[]), 0.0);
    assert!(
        c.metric(
            "osprey_collector_sent_total",
            &[("exporter", "p3"), ("kind", "samples")]
        ) > 1000.0
    );
    // The agent counted its pushes.
    let (_, text) = agent.scrape();
    let s = osprey_e2e::exposition::samples(&text);
    assert!(osprey_e2e::exposition::sum(&s, "osprey_otlp_sent_batches_total", &[]) >= 1.0);
    assert_eq!(
        osprey_e2e::exposition::sum(&s, "osprey_otlp_dropped_batches_total", &[]),
        0.0
    );
}

const SDK_SCRIPT: &str = r#"
import sys
from opentelemetry import trace, metrics
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
base = sys.argv[1]
res = Resource.create({"service.name": "checkout", "service.instance.id": "pod-1", "deployment.environment": "test"})
tp = TracerProvider(resource=res)
tp.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=base + "/v1/traces")))
trace.set_tracer_provider(tp)
reader = PeriodicExportingMetricReader(OTLPMetricExporter(endpoint=base + "/v1/metrics"), export_interval_millis=3600000)
mp = MeterProvider(resource=res, metric_readers=[reader])
metrics.set_meter_provider(mp)
meter = metrics.get_meter("shop")
requests = meter.create_counter("app.requests", unit="{request}")
duration = meter.create_histogram("http.server.duration", unit="ms")
tracer = trace.get_tracer("shop")
with tracer.start_as_current_span("checkout-pay") as span:
    requests.add(7, {"route": "/pay"})
    duration.record(42.0, {"route": "/pay"})
    print(format(span.get_span_context().trace_id, "032x"), flush=True)
mp.force_flush()
mp.shutdown()
tp.shutdown()
"#;

const ROTEL_HOOK: &str = r#"
import json
# rotel hands over one ResourceSpans (or a list) and forwards what is returned;
# every hook runs in one interpreter, so each names its own output file.
def process_spans(resource_spans):
    items = resource_spans if isinstance(resource_spans, (list, tuple)) else [resource_spans]
    with open(SPANS_OUT, "a") as f:
        for rs in items:
            for ss in rs.scope_spans:
                for s in ss.spans:
                    f.write(json.dumps({"trace_id": s.trace_id.hex(), "name": s.name}) + "\n")
    return resource_spans
"#;

const ROTEL_LOGS_HOOK: &str = r#"
import json
def process_logs(resource_logs):
    items = resource_logs if isinstance(resource_logs, (list, tuple)) else [resource_logs]
    with open(LOGS_OUT, "a") as f:
        for rl in items:
            for sl in rl.scope_logs:
                for r in sl.log_records:
                    f.write(json.dumps({"severity": r.severity_text}) + "\n")
    return resource_logs
"#;

/// A logs request of `n` records with severity text `severity`.
fn logs(n: usize, severity: &str) -> Vec<u8> {
    use opentelemetry_proto::tonic::{collector::logs::v1::ExportLogsServiceRequest, logs::v1::*};
    use prost::Message;
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: (0..n)
                    .map(|_| LogRecord {
                        severity_text: severity.into(),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

/// Runs the OTel SDK script against the collector's OTLP/HTTP; the trace id.
fn sdk_send(c: &Collector) -> String {
    let out = Command::new("python3")
        .args(["-c", SDK_SCRIPT, &c.http])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "SDK script: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

#[test]
fn a_third_party_sdk_arrives_translated_with_target_info_promoted_labels_and_exemplars() {
    let p3bin = require_peer!(peers::PROMETHEUS3);
    let rotel = require_peer!(peers::ROTEL);
    let vm = require_peer!(peers::VICTORIA_METRICS);
    let p3 = Prometheus::receiver(&p3bin, &[]).unwrap();
    require!(
        prometheus::binary().is_some(),
        "prometheus 2.42 is not installed (cargo xtask setup)"
    );
    let p2 = Prometheus::receiver(&prometheus::binary().unwrap(), &[]).unwrap();
    let dir = std::env::temp_dir().join(format!("osprey-rotel-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let spans = dir.join("spans.jsonl");
    std::fs::write(
        dir.join("hook.py"),
        format!(
            "SPANS_OUT = {:?}\n{ROTEL_HOOK}",
            spans.display().to_string()
        ),
    )
    .unwrap();
    let logged = dir.join("logs.jsonl");
    std::fs::write(
        dir.join("logs.py"),
        format!(
            "LOGS_OUT = {:?}\n{ROTEL_LOGS_HOOK}",
            logged.display().to_string()
        ),
    )
    .unwrap();
    let free = osprey_e2e::free_port;
    let (rg, rh, vmp) = (free(), free(), free());
    let _rotel = Child(
        Command::new(&rotel)
            .args(["start", "--exporter", "blackhole", "--pid-file"])
            .arg(dir.join("rotel.pid"))
            .args([
                "--otlp-grpc-endpoint",
                &format!("127.0.0.1:{rg}"),
                "--otlp-http-endpoint",
                &format!("127.0.0.1:{rh}"),
            ])
            .arg("--otlp-with-trace-processor")
            .arg(dir.join("hook.py"))
            .arg("--otlp-with-logs-processor")
            .arg(dir.join("logs.py"))
            .spawn()
            .unwrap(),
    );
    let _vm = Child(
        Command::new(&vm)
            .arg(format!("-storageDataPath={}", dir.join("vm").display()))
            .arg(format!("-httpListenAddr=127.0.0.1:{vmp}"))
            .args([
                "-search.latencyOffset=0s",
                "-search.disableCache",
                "-loggerLevel=ERROR",
            ])
            .spawn()
            .unwrap(),
    );
    eventually(30, "VictoriaMetrics to be up", || {
        ureq::get(&format!("http://127.0.0.1:{vmp}/health"))
            .call()
            .ok()
    });
    eventually(30, "rotel to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", rh)).ok()
    });
    let config = format!(
        "[[remote_write]]\nname = \"p3\"\nurl = {:?}\npromote_resource_attributes = [\"deployment.environment\"]\n\
         [[otlp]]\nname = \"tempo\"\nurl = \"http://127.0.0.1:{rg}\"\nprotocol = \"grpc\"\nsignals = [\"traces\"]\n\
         [[otlp]]\nname = \"logs\"\nurl = \"http://127.0.0.1:{rh}\"\nsignals = [\"logs\"]\n\
         [[otlp]]\nname = \"vm\"\nurl = \"http://127.0.0.1:{vmp}/opentelemetry/v1/metrics\"\nsignals = [\"metrics\"]\n\
         [[remote_write]]\nname = \"p2\"\nurl = {:?}\nversion = \"1\"\n",
        p3.write_url(),
        p2.write_url()
    );
    let c = Collector::start("sdk", &config);
    let trace_id = sdk_send(&c);
    assert_eq!(trace_id.len(), 32);

    // Prometheus: the specification's names, job/instance from the resource,
    // the promoted attribute, target_info with the rest.
    let counter = "app_requests_total{job=\"checkout\",instance=\"pod-1\",deployment_environment=\"test\",route=\"/pay\"}";
    let v = eventually(30, "the SDK's counter in Prometheus", || {
        value(&p3, counter)
    });
    assert_eq!(v, 7.0);
    let count = "http_server_duration_milliseconds_count{job=\"checkout\",route=\"/pay\"}";
    assert_eq!(value(&p3, count), Some(1.0));
    assert_eq!(
        value(
            &p3,
            "http_server_duration_milliseconds_sum{job=\"checkout\"}"
        ),
        Some(42.0)
    );
    assert_eq!(
        value(
            &p3,
            "http_server_duration_milliseconds_bucket{job=\"checkout\",le=\"50.0\"}"
        ),
        Some(1.0)
    );
    let info = p3.query("target_info{job=\"checkout\",instance=\"pod-1\"}");
    assert_eq!(info.len(), 1, "{info:?}");
    assert_eq!(info[0].0["deployment_environment"], "test");
    assert_eq!(info[0].0["telemetry_sdk_language"], "python");
    // The exemplar: the span's trace id, lowercase hex.
    let ex = eventually(30, "the exemplar in Prometheus", || {
        let e = p3.exemplars(
            "http_server_duration_milliseconds_bucket{job=\"checkout\"}",
            600,
        );
        (!e.is_empty()).then_some(e)
    });
    assert_eq!(
        ex[0].1["trace_id"],
        Value::String(trace_id.clone()),
        "{ex:?}"
    );
    assert_eq!(ex[0].2, 42.0);
    // The same exemplar over remote-write 1.0, in Prometheus 2.42.
    let ex1 = eventually(30, "the exemplar in Prometheus 2.42", || {
        let e = p2.exemplars(
            "http_server_duration_milliseconds_bucket{job=\"checkout\"}",
            600,
        );
        (!e.is_empty()).then_some(e)
    });
    assert_eq!(
        ex1[0].1["trace_id"],
        Value::String(trace_id.clone()),
        "{ex1:?}"
    );
    // (No promoted attributes on that exporter.)
    let plain = "app_requests_total{job=\"checkout\",instance=\"pod-1\",route=\"/pay\"}";
    assert_eq!(value(&p2, plain), Some(7.0));
    assert!(
        p2.query("app_requests_total{deployment_environment=\"test\"}")
            .is_empty()
    );

    // rotel (Tempo's stand-in) got the span.
    let got = eventually(30, "the span at rotel", || {
        std::fs::read_to_string(&spans)
            .ok()
            .filter(|t| t.contains(&trace_id))
    });
    assert!(got.contains("checkout-pay"), "{got}");
    assert_eq!(
        c.metric(
            "osprey_collector_sent_total",
            &[("exporter", "tempo"), ("kind", "spans")]
        ),
        1.0
    );
    // Logs, over OTLP/HTTP, to the same rotel.
    assert_eq!(
        c.post(
            "/v1/logs",
            "application/x-protobuf",
            &logs(3, "osprey-test-warn")
        ),
        200
    );
    let got = eventually(30, "the log records at rotel", || {
        std::fs::read_to_string(&logged)
            .ok()
            .filter(|t| t.matches("osprey-test-warn").count() == 3)
    });
    assert_eq!(got.lines().count(), 3);
    assert_eq!(
        c.metric(
            "osprey_collector_sent_total",
            &[("exporter", "logs"), ("kind", "log_records")]
        ),
        3.0
    );

    // VictoriaMetrics (OTLP/HTTP) got the metrics, and a known set of points.
    let b = gauges("osprey_test_points", "vm", 0, 25);
    assert_eq!(c.post("/v1/metrics", "application/x-protobuf", &b), 200);
    let vm_count = eventually(30, "the points in VictoriaMetrics", || {
        let _ = ureq::get(&format!("http://127.0.0.1:{vmp}/internal/force_flush")).call();
        let r: Value = ureq::get(&format!("http://127.0.0.1:{vmp}/api/v1/query"))
            .query("query", "count(osprey_test_points{run=\"vm\"})")
            .call()
            .ok()?
            .into_json()
            .ok()?;
        let v: f64 = r["data"]["result"][0]["value"][1].as_str()?.parse().ok()?;
        (v == 25.0).then_some(v)
    });
    assert_eq!(vm_count, 25.0);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Kills the child on drop.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The agent's other transport: OTLP/HTTP (an endpoint ending in
/// `/v1/metrics`) into the collector, and on to Prometheus 3.5; the same
/// families arrive as over gRPC.
#[test]
fn an_agent_pushes_over_otlp_http_too() {
    let p3bin = require_peer!(peers::PROMETHEUS3);
    let p3 = Prometheus::receiver(&p3bin, &[]).unwrap();
    let c = Collector::start(
        "pushhttp",
        &format!(
            "[[remote_write]]\nname = \"p3\"\nurl = {:?}\n",
            p3.write_url()
        ),
    );
    let endpoint = format!("{}/v1/metrics", c.http);
    let Some(agent) = agent::for_test(&["--otlp-endpoint", &endpoint, "--otlp-interval-secs", "1"])
    else {
        return;
    };
    let (_, text) = agent.scrape();
    let scraped = osprey_e2e::exposition::samples(&text)
        .iter()
        .filter(|s| s.name == "node_cpu_seconds_total")
        .count();
    // A push is sent as several concurrent requests (series sharded by label
    // hash): a query between them sees part of it, so wait for the whole.
    let count = osprey_e2e::settle(30, || {
        let v = value(&p3, "count(node_cpu_seconds_total{job=\"osprey-agent\"})");
        (v == Some(scraped as f64), v.unwrap_or(0.0))
    });
    assert_eq!(
        count, scraped as f64,
        "node_cpu_seconds_total series, pushed vs scraped"
    );
    assert!(
        c.metric(
            "osprey_collector_received_total",
            &[("transport", "http"), ("kind", "data_points")]
        ) > 100.0
    );
    assert_eq!(
        c.metric("osprey_collector_received_total", &[("transport", "grpc")]),
        0.0
    );
}
