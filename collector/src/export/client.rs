//! The HTTP client of one exporter: TLS (CA, client certificate for mTLS),
//! timeout, static headers and a bearer token.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde::{Deserialize, Serialize};

/// Where and how an exporter connects.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct Endpoint {
    /// Extra request headers (e.g. `X-Scope-OrgID`).
    pub headers: BTreeMap<String, String>,
    /// Sent as `Authorization: Bearer …`.
    pub bearer_token: Option<String>,
    /// PEM CA bundle to verify the receiver with (system roots otherwise).
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate and key, for mTLS.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// Per-attempt timeout, seconds (default 30).
    pub timeout_secs: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("header {0:?}: invalid name or value")]
    Header(String),
    #[error("TLS setup: {0}")]
    Tls(#[from] reqwest::Error),
    #[error("tls_cert_file and tls_key_file go together")]
    HalfIdentity,
}

fn read(path: &PathBuf) -> Result<Vec<u8>, ClientError> {
    std::fs::read(path).map_err(|source| ClientError::Read {
        path: path.clone(),
        source,
    })
}

impl Endpoint {
    pub fn client(&self) -> Result<reqwest::Client, ClientError> {
        let mut headers = HeaderMap::new();
        for (k, v) in &self.headers {
            let name =
                HeaderName::try_from(k.as_str()).map_err(|_| ClientError::Header(k.clone()))?;
            let value =
                HeaderValue::try_from(v.as_str()).map_err(|_| ClientError::Header(k.clone()))?;
            headers.insert(name, value);
        }
        if let Some(token) = &self.bearer_token {
            let mut value = HeaderValue::try_from(format!("Bearer {token}"))
                .map_err(|_| ClientError::Header("Authorization".into()))?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let mut builder = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(Duration::from_secs(self.timeout_secs.unwrap_or(30)))
            .user_agent(concat!("osprey-collector/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &self.tls_ca_file {
            for cert in reqwest::Certificate::from_pem_bundle(&read(ca)?)? {
                builder = builder.add_root_certificate(cert);
            }
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(cert), Some(key)) => {
                let mut pem = read(cert)?;
                pem.extend(read(key)?);
                builder = builder.identity(reqwest::Identity::from_pem(&pem)?);
            }
            (None, None) => {}
            _ => return Err(ClientError::HalfIdentity),
        }
        Ok(builder.build()?)
    }
}
