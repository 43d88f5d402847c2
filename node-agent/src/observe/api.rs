//! `GET /api/v1/flows`: newline-delimited JSON flow records.
//! Query: `follow`, `last`, and the filters of `FlowFilter`.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::{
    hub::FlowHub,
    record::{FlowFilter, FlowRecord},
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
        }
    }
}

fn line(record: &FlowRecord) -> String {
    let mut s = serde_json::to_string(record).unwrap_or_default();
    s.push('\n');
    s
}

pub async fn flows(
    State(hub): State<FlowHub>,
    query: Result<Query<ObserveQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let filter = Arc::new(query.filter());
    let mut backlog: Vec<Arc<FlowRecord>> = hub
        .recent()
        .into_iter()
        .filter(|r| filter.matches(r))
        .collect();
    let last = query
        .last
        .unwrap_or(if query.follow { 0 } else { usize::MAX });
    if backlog.len() > last {
        backlog.drain(..backlog.len() - last);
    }
    let head: String = backlog.iter().map(|r| line(r)).collect();
    let ndjson = [(header::CONTENT_TYPE, "application/x-ndjson")];
    if !query.follow {
        return (ndjson, head).into_response();
    }
    let rx = hub.subscribe();
    let lost = hub.lost.clone();
    let live =
        futures_util::stream::unfold((rx, filter, lost), |(mut rx, filter, lost)| async move {
            loop {
                match rx.recv().await {
                    Ok(r) if filter.matches(&r) => {
                        return Some((Ok::<_, std::io::Error>(line(&r)), (rx, filter, lost)));
                    }
                    Ok(_) => continue,
                    Err(RecvError::Lagged(n)) => {
                        lost.inc_by(n);
                    }
                    Err(RecvError::Closed) => return None,
                }
            }
        });
    let first = futures_util::stream::iter([Ok::<_, std::io::Error>(head)]);
    (
        ndjson,
        Body::from_stream(futures_util::StreamExt::chain(first, live)),
    )
        .into_response()
}
