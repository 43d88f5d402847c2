//! `GET /api/v1/events`: newline-delimited JSON resource events.
//! Query: `follow`, `last`, `cgroup` (a path prefix).

use axum::{
    extract::State,
    response::{IntoResponse, Response},
};
use serde::Deserialize;

use super::{EventHub, record::ResourceEvent};
use crate::observe::ndjson::{StreamQuery, query};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsQuery {
    #[serde(default)]
    pub follow: bool,
    pub last: Option<usize>,
    /// Only events of cgroups under this path.
    pub cgroup: Option<String>,
}

pub async fn events(State(hub): State<EventHub>, q: StreamQuery<EventsQuery>) -> Response {
    let query = match query(q) {
        Ok(q) => q,
        Err(bad) => return bad.into_response(),
    };
    let prefix = query.cgroup.unwrap_or_default();
    crate::observe::ndjson::stream(&hub, query.follow, query.last, move |e: &ResourceEvent| {
        e.cgroup.starts_with(&prefix)
    })
}
