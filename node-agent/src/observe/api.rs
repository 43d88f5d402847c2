//! `GET /api/v1/flows`: newline-delimited JSON flow records.
//! Query: `follow`, `last`, and the filters of `FlowFilter`.

use axum::{
    extract::State,
    response::{IntoResponse, Response},
};
use serde::Deserialize;

use super::{
    entry::FlowEntry,
    hub::FlowHub,
    ndjson::{StreamQuery, query},
    record::FlowFilter,
};

/// The query string. (serde's `flatten` cannot parse numbers from a query
/// string, so the fields are listed here and checked in `filter`.)
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObserveQuery {
    #[serde(default)]
    pub follow: bool,
    /// How many of the buffered records to send first (default: all buffered
    /// without `follow`, none with it).
    pub last: Option<usize>,
    pub ip: Option<std::net::IpAddr>,
    pub port: Option<u16>,
    pub protocol: Option<String>,
    pub verdict: Option<super::record::Verdict>,
    pub drop_reason: Option<String>,
    pub namespace: Option<String>,
    pub pod: Option<String>,
    pub from_ip: Option<std::net::IpAddr>,
    pub to_ip: Option<std::net::IpAddr>,
    pub from_namespace: Option<String>,
    pub to_namespace: Option<String>,
    pub from_pod: Option<String>,
    pub to_pod: Option<String>,
    pub to_service: Option<String>,
    pub http_status: Option<u16>,
    pub http_method: Option<String>,
}

impl ObserveQuery {
    fn filter(&self) -> FlowFilter {
        FlowFilter {
            ip: self.ip,
            port: self.port,
            protocol: self.protocol.clone(),
            verdict: self.verdict,
            drop_reason: self.drop_reason.clone(),
            namespace: self.namespace.clone(),
            pod: self.pod.clone(),
            from_ip: self.from_ip,
            to_ip: self.to_ip,
            from_namespace: self.from_namespace.clone(),
            to_namespace: self.to_namespace.clone(),
            from_pod: self.from_pod.clone(),
            to_pod: self.to_pod.clone(),
            to_service: self.to_service.clone(),
            http_status: self.http_status,
            http_method: self.http_method.clone(),
        }
    }
}

pub async fn flows(State(hub): State<FlowHub>, q: StreamQuery<ObserveQuery>) -> Response {
    let query = match query(q) {
        Ok(q) => q,
        Err(bad) => return bad.into_response(),
    };
    let filter = query.filter();
    super::ndjson::stream(&hub, query.follow, query.last, move |e: &FlowEntry| {
        filter.matches(&e.record())
    })
}
