//! The streaming shape both live APIs (`/api/v1/flows`, `/api/v1/events`)
//! share: the last `last` buffered items that match, as newline-delimited
//! JSON, then, with `follow`, every new match as it is published. A follower
//! that falls behind loses items, counted in the hub's `lost` counter.

use std::sync::Arc;

use axum::{
    body::Body,
    extract::{Query, rejection::QueryRejection},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use tokio::sync::broadcast::error::RecvError;

use super::hub::Hub;

/// A stream's query string, or the 400 that names what is wrong with it.
pub type StreamQuery<Q> = Result<Query<Q>, QueryRejection>;

pub fn query<Q>(query: StreamQuery<Q>) -> Result<Q, (StatusCode, String)> {
    query
        .map(|Query(q)| q)
        .map_err(|e| (StatusCode::BAD_REQUEST, format!("{e}\n")))
}

fn line<T: Serialize>(item: &T) -> String {
    let mut s = serde_json::to_string(item).unwrap_or_default();
    s.push('\n');
    s
}

/// `last` defaults to every buffered item without `follow`, none with it.
pub fn stream<T, F>(hub: &Hub<T>, follow: bool, last: Option<usize>, wanted: F) -> Response
where
    T: Serialize + Send + Sync + 'static,
    F: Fn(&T) -> bool + Send + Sync + 'static,
{
    let mut backlog: Vec<Arc<T>> = hub.recent().into_iter().filter(|i| wanted(i)).collect();
    let last = last.unwrap_or(if follow { 0 } else { usize::MAX });
    if backlog.len() > last {
        backlog.drain(..backlog.len() - last);
    }
    let head: String = backlog.iter().map(|i| line(&**i)).collect();
    let ndjson = [(header::CONTENT_TYPE, "application/x-ndjson")];
    if !follow {
        return (ndjson, head).into_response();
    }
    let state = (hub.subscribe(), hub.lost.clone(), wanted);
    let live = futures_util::stream::unfold(state, |(mut rx, lost, wanted)| async move {
        loop {
            match rx.recv().await {
                Ok(i) if wanted(&i) => {
                    return Some((Ok::<_, std::io::Error>(line(&*i)), (rx, lost, wanted)));
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
