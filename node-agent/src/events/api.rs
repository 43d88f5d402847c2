//! `GET /api/v1/events`: newline-delimited JSON resource events.
//! Query: `follow`, `last`, `cgroup` (a path prefix).

use axum::{
    extract::{Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Deserialize;

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

pub async fn events(
    State(hub): State<EventHub>,
    query: Result<Query<EventsQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Query(query) = match query {
        Ok(q) => q,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let prefix = query.cgroup.unwrap_or_default();
    crate::observe::ndjson::stream(&hub, query.follow, query.last, move |e: &ResourceEvent| {
        e.cgroup.starts_with(&prefix)
    })
}
