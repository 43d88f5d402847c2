//! The collector's configuration: a TOML file (`--config`, every key in
//! `deploy/collector.example.toml`), with the common case also as flags and
//! `OSPREY_COLLECTOR_*` variables, which override the file.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use clap::Parser;
use serde::{Deserialize, Serialize};

use crate::export::encode::Version;
use crate::export::otlp::{OtlpConfig, SignalName};
use crate::export::remote_write::RemoteWriteConfig;

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// The collector's own `/metrics` and `/healthz`.
    pub listen: SocketAddr,
    /// OTLP/gRPC ingest.
    pub otlp_grpc_listen: SocketAddr,
    /// OTLP/HTTP ingest (`/v1/metrics`, `/v1/traces`, `/v1/logs`).
    pub otlp_http_listen: SocketAddr,
    /// Each exporter's write-ahead queue lives in `<wal_dir>/<exporter name>`.
    pub wal_dir: PathBuf,
    /// Largest accepted request body (HTTP 413 / gRPC RESOURCE_EXHAUSTED beyond).
    pub max_request_bytes: usize,
    /// Senders must present `Authorization: Bearer <token>` (off when unset).
    pub bearer_token: Option<String>,
    /// The same, read from a file (a mounted Secret).
    pub bearer_token_file: Option<PathBuf>,
    /// TLS on both OTLP listeners: PEM certificate chain and key (off when unset).
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// mTLS: senders must present a client certificate this CA signed
    /// (requests without one get 401 / UNAUTHENTICATED). Needs tls_cert_file.
    pub tls_client_ca_file: Option<PathBuf>,
    pub remote_write: Vec<RemoteWriteConfig>,
    pub otlp: Vec<OtlpConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: ([127, 0, 0, 1], 9465).into(),
            otlp_grpc_listen: ([127, 0, 0, 1], 4317).into(),
            otlp_http_listen: ([127, 0, 0, 1], 4318).into(),
            wal_dir: PathBuf::from("/var/lib/osprey-collector/wal"),
            max_request_bytes: 16 << 20,
            bearer_token: None,
            bearer_token_file: None,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
            remote_write: Vec::new(),
            otlp: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("exporter name {0:?} is used twice (each names a queue directory)")]
    DuplicateName(String),
    #[error("exporter name {0:?}: use letters, digits, '-' and '_'")]
    BadName(String),
    #[error(
        "no exporters: set --remote-write-url / --otlp-traces-url or [[remote_write]] / [[otlp]] in the config"
    )]
    NoExporters,
    #[error("tls_cert_file and tls_key_file go together, and tls_client_ca_file needs them")]
    TlsHalf,
}

impl Config {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        })
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut seen = BTreeSet::new();
        let names = self
            .remote_write
            .iter()
            .map(|e| &e.name)
            .chain(self.otlp.iter().map(|e| &e.name));
        for name in names {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            {
                return Err(ConfigError::BadName(name.clone()));
            }
            if !seen.insert(name) {
                return Err(ConfigError::DuplicateName(name.clone()));
            }
        }
        if seen.is_empty() {
            return Err(ConfigError::NoExporters);
        }
        if self.tls_cert_file.is_some() != self.tls_key_file.is_some()
            || (self.tls_client_ca_file.is_some() && self.tls_cert_file.is_none())
        {
            return Err(ConfigError::TlsHalf);
        }
        Ok(())
    }
}

/// Osprey collector: receives OTLP from agents (and any OTel SDK), queues it
/// on disk, and exports Prometheus remote-write and OTLP.
#[derive(Debug, Parser)]
#[command(version, about)]
pub struct Cli {
    /// TOML file with the full configuration (several exporters).
    #[arg(long, env = "OSPREY_COLLECTOR_CONFIG")]
    pub config: Option<PathBuf>,
    /// The collector's own /metrics and /healthz [default: 127.0.0.1:9465].
    #[arg(long, env = "OSPREY_COLLECTOR_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// OTLP/gRPC ingest [default: 127.0.0.1:4317].
    #[arg(long, env = "OSPREY_COLLECTOR_OTLP_GRPC_LISTEN")]
    pub otlp_grpc_listen: Option<SocketAddr>,
    /// OTLP/HTTP ingest [default: 127.0.0.1:4318].
    #[arg(long, env = "OSPREY_COLLECTOR_OTLP_HTTP_LISTEN")]
    pub otlp_http_listen: Option<SocketAddr>,
    /// A Prometheus remote-write receiver (repeatable; comma-separated in the variable).
    #[arg(long, env = "OSPREY_COLLECTOR_REMOTE_WRITE_URL", value_delimiter = ',')]
    pub remote_write_url: Vec<String>,
    /// Remote-write version for --remote-write-url: 2 (falls back to 1 when
    /// the receiver does not confirm v2) or 1.
    #[arg(long, env = "OSPREY_COLLECTOR_REMOTE_WRITE_VERSION", default_value = "2", value_parser = ["1", "2"])]
    pub remote_write_version: String,
    /// An OTLP/HTTP traces receiver (Tempo): base URL or `…/v1/traces`.
    #[arg(long, env = "OSPREY_COLLECTOR_OTLP_TRACES_URL")]
    pub otlp_traces_url: Option<String>,
    /// Directory of the write-ahead queues [default: /var/lib/osprey-collector/wal].
    #[arg(long, env = "OSPREY_COLLECTOR_WAL_DIR")]
    pub wal_dir: Option<PathBuf>,
}

impl Cli {
    /// The file (or the defaults), overridden by the flags that are set.
    pub fn into_config(self) -> Result<Config, ConfigError> {
        let mut cfg = match &self.config {
            Some(path) => Config::load(path)?,
            None => Config::default(),
        };
        if let Some(v) = self.listen {
            cfg.listen = v;
        }
        if let Some(v) = self.otlp_grpc_listen {
            cfg.otlp_grpc_listen = v;
        }
        if let Some(v) = self.otlp_http_listen {
            cfg.otlp_http_listen = v;
        }
        if let Some(v) = self.wal_dir {
            cfg.wal_dir = v;
        }
        let version = if self.remote_write_version == "1" {
            Version::V1
        } else {
            Version::V2
        };
        let base = cfg.remote_write.len();
        for (i, url) in self.remote_write_url.into_iter().enumerate() {
            let mut rw: RemoteWriteConfig = toml::from_str(&format!(
                "name = \"remote_write_{}\"\nurl = {url:?}",
                base + i
            ))
            .expect("a name and a URL are a whole remote_write table");
            rw.version = version;
            cfg.remote_write.push(rw);
        }
        if let Some(url) = self.otlp_traces_url {
            cfg.otlp.push(OtlpConfig {
                name: "otlp_traces".to_owned(),
                url,
                protocol: Default::default(),
                signals: vec![SignalName::Traces],
                endpoint: Default::default(),
                retry: Default::default(),
                queue: Default::default(),
            });
        }
        cfg.validate()?;
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_lists_every_key_with_its_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/collector.example.toml");
        let cfg = Config::load(&path).unwrap();
        cfg.validate().unwrap();
        let d = Config::default();
        assert_eq!(
            (cfg.listen, cfg.otlp_grpc_listen, cfg.otlp_http_listen),
            (d.listen, d.otlp_grpc_listen, d.otlp_http_listen)
        );
        assert_eq!(
            (cfg.max_request_bytes, &cfg.wal_dir),
            (d.max_request_bytes, &d.wal_dir)
        );
        let rw = &cfg.remote_write[0];
        let rw_default: RemoteWriteConfig =
            toml::from_str("name = \"x\"\nurl = \"http://x\"").unwrap();
        assert_eq!(rw.version, rw_default.version);
        assert_eq!(
            (
                rw.shards,
                rw.max_samples_per_send,
                rw.add_metric_suffixes,
                rw.send_native_histograms
            ),
            (
                rw_default.shards,
                rw_default.max_samples_per_send,
                rw_default.add_metric_suffixes,
                rw_default.send_native_histograms
            )
        );
        assert_eq!(rw.queue.max_bytes, rw_default.queue.max_bytes);
        assert_eq!(rw.queue.segment_bytes, rw_default.queue.segment_bytes);
        assert_eq!(rw.retry.min_backoff_ms, rw_default.retry.min_backoff_ms);
        assert_eq!(rw.retry.max_backoff_ms, rw_default.retry.max_backoff_ms);
        // Every key the structs know is in the file: serialising the parsed
        // file gives no key the file lacks.
        let text = std::fs::read_to_string(&path).unwrap();
        let reserialised = toml::to_string(&cfg).unwrap();
        for line in reserialised.lines().filter_map(|l| l.split_once(" = ")) {
            assert!(
                text.contains(&format!("{} =", line.0)),
                "key {} missing from the example",
                line.0
            );
        }
    }

    #[test]
    fn flags_add_exporters_and_unknown_keys_are_refused() {
        let cli = Cli::parse_from([
            "c",
            "--remote-write-url",
            "http://a/api/v1/write",
            "--remote-write-url",
            "http://b/api/v1/write",
            "--remote-write-version",
            "1",
        ]);
        let cfg = cli.into_config().unwrap();
        assert_eq!(cfg.remote_write.len(), 2);
        assert_eq!(cfg.remote_write[1].name, "remote_write_1");
        assert_eq!(cfg.remote_write[1].version, Version::V1);
        assert!(toml::from_str::<Config>("listn = \"127.0.0.1:1\"").is_err());
        assert!(matches!(
            Cli::parse_from(["c"]).into_config(),
            Err(ConfigError::NoExporters)
        ));
    }
}
