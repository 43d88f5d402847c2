//! `GET /api/v1/events`: newline-delimited JSON resource events.
//! Query: `follow`, `last`, `cgroup` (a path prefix).

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Query, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::{EventHub, record::ResourceEvent};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    #[serde(default)]
    pub follow: bool,
    pub last: Option<usize>,
    /// Only events of cgroups under this path.
    pub cgroup: Option<String>,
}

fn line(event: &ResourceEvent) -> String {
    let mut s = serde_json::to_string(event).unwrap_or_default();
    s.push('\n');
    s
}

pub async fn events(
    State(hub): State<EventHub>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let prefix: Arc<str> = query.cgroup.unwrap_or_default().into();
    let wanted = {
        let prefix = prefix.clone();
        move |e: &ResourceEvent| e.cgroup.starts_with(&*prefix)
    };
    let mut backlog: Vec<Arc<ResourceEvent>> =
        hub.recent().into_iter().filter(|e| wanted(e)).collect();
    let last = query
        .last
        .unwrap_or(if query.follow { 0 } else { usize::MAX });
    if backlog.len() > last {
        backlog.drain(..backlog.len() - last);
    }
    let head: String = backlog.iter().map(|e| line(e)).collect();
    let ndjson = [(header::CONTENT_TYPE, "application/x-ndjson")];
    if !query.follow {
        return (ndjson, head).into_response();
    }
    let state = (hub.subscribe(), hub.lost.clone(), wanted);
    let live = futures_util::stream::unfold(state, |(mut rx, lost, wanted)| async move {
        loop {
            match rx.recv().await {
                Ok(e) if wanted(&e) => {
                    return Some((Ok::<_, std::io::Error>(line(&e)), (rx, lost, wanted)));
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
