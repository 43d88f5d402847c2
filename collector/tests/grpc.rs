//! OTLP/gRPC at the collector's door, through the real binary: a good
//! request is accepted, a malformed one gets INVALID_ARGUMENT, an oversized
//! one RESOURCE_EXHAUSTED, a missing token UNAUTHENTICATED, each naming the
//! problem; the collector keeps serving.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use bytes::{Buf, BufMut, Bytes};
use opentelemetry_proto::tonic::{
    collector::metrics::v1::{
        ExportMetricsServiceRequest, metrics_service_client::MetricsServiceClient,
    },
    metrics::v1::{Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric},
};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::{Code, Status, transport::Channel};

struct Collector {
    child: Child,
    grpc: String,
    dir: std::path::PathBuf,
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(extra: &str) -> Collector {
    let dir = std::env::temp_dir().join(format!(
        "osprey-grpc-test-{}-{}",
        std::process::id(),
        fastrand::u32(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let cfg = format!(
        "listen = \"127.0.0.1:0\"\notlp_grpc_listen = \"127.0.0.1:0\"\notlp_http_listen = \"127.0.0.1:0\"\n\
         wal_dir = {:?}\nmax_request_bytes = 65536\n{extra}\n\
         [[remote_write]]\nname = \"rw\"\nurl = \"http://127.0.0.1:9/api/v1/write\"\n",
        dir.join("wal").display().to_string()
    );
    std::fs::write(dir.join("c.toml"), cfg).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_osprey-collector"))
        .arg("--config")
        .arg(dir.join("c.toml"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line
        .trim()
        .strip_prefix("osprey-collector: OTLP gRPC on ")
        .expect(&line)
        .to_owned();
    Collector {
        child,
        grpc: format!("http://{addr}"),
        dir,
    }
}

fn request(points: usize) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            scope_metrics: vec![ScopeMetrics {
                metrics: vec![Metric {
                    name: "grpc_test".into(),
                    data: Some(metric::Data::Gauge(Gauge {
                        data_points: (0..points)
                            .map(|i| NumberDataPoint {
                                time_unix_nano: i as u64 + 1,
                                ..Default::default()
                            })
                            .collect(),
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// Sends raw bytes as the message (what a broken sender would).
#[derive(Clone, Copy)]
struct Raw;

impl Codec for Raw {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;
    fn encoder(&mut self) -> Raw {
        Raw
    }
    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

async fn raw(url: &str, body: Bytes) -> Result<(), Status> {
    let channel = Channel::from_shared(url.to_owned())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    );
    grpc.unary(tonic::Request::new(body), path, Raw)
        .await
        .map(|_| ())
}

#[tokio::test]
async fn grpc_answers_with_otlp_codes() {
    let c = start("");
    let mut client = MetricsServiceClient::connect(c.grpc.clone()).await.unwrap();
    client
        .export(request(10))
        .await
        .expect("a good request is accepted");

    let err = raw(
        &c.grpc,
        Bytes::from_static(b"\xff\xff\xff\xff\x0f not protobuf"),
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{err:?}");
    assert!(
        err.message().contains("malformed metrics request"),
        "{}",
        err.message()
    );

    let big = request(20_000);
    assert!(big.encoded_len() > 65536);
    let err = client.export(big).await.unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted, "{err:?}");
    assert!(
        err.message().contains("exceeds the limit of 65536 bytes"),
        "{}",
        err.message()
    );

    client.export(request(3)).await.expect("still serving");
}

#[tokio::test]
async fn grpc_requires_the_bearer_token_when_set() {
    let c = start("bearer_token = \"s3cret\"");
    let mut client = MetricsServiceClient::connect(c.grpc.clone()).await.unwrap();
    let err = client.export(request(1)).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated, "{err:?}");
    let mut req = tonic::Request::new(request(1));
    req.metadata_mut()
        .insert("authorization", "Bearer s3cret".parse().unwrap());
    client.export(req).await.expect("the token is accepted");
}
