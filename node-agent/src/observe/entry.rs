//! What the flow hub keeps: a flow record, or an HTTP exchange that becomes
//! its record only when something reads it (`observe`, the flow log).
//!
//! An HTTP-busy node answers thousands of requests a second, and the hub
//! keeps the last `observe_buffer` of them whether or not anyone looks.
//! Built eagerly, each record was a dozen small strings (addresses and a
//! time written out, names copied) made and freed unread: a third of the
//! HTTP tracker's CPU. An exchange keeps its parts as the tracker has them
//! (the ends' `Arc`s, the path it already owns).

use std::{borrow::Cow, time::SystemTime};

use osprey_model::{labels::Reporter, record::HttpInfo};
use serde::Serialize;

use super::record::{FlowRecord, Verdict, with_peers};
use crate::flows::enrich::Peer;

/// Kept in an `Arc` each: a record is boxed so that an exchange's
/// allocation is its own size (~180 bytes), not a record's (~630).
#[derive(Debug)]
pub enum FlowEntry {
    Record(Box<FlowRecord>),
    Http(HttpExchange),
}

impl From<FlowRecord> for FlowEntry {
    fn from(record: FlowRecord) -> Self {
        Self::Record(Box::new(record))
    }
}

impl FlowEntry {
    /// The entry as the flow record `observe` and the flow log show.
    pub fn record(&self) -> Cow<'_, FlowRecord> {
        match self {
            Self::Record(record) => Cow::Borrowed(&**record),
            Self::Http(exchange) => Cow::Owned(exchange.record()),
        }
    }
}

impl Serialize for FlowEntry {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.record().serialize(s)
    }
}

/// A request and its response, as one socket saw them.
#[derive(Debug)]
pub struct HttpExchange {
    /// When the request started.
    pub at: SystemTime,
    pub client: Peer,
    pub server: Peer,
    /// Which socket: the server's (ingress) or the client's (egress).
    pub reporter: Reporter,
    pub method: &'static str,
    pub path: String,
    pub status: u16,
    pub latency_ms: f64,
    pub trace_id: Option<String>,
}

impl HttpExchange {
    pub fn record(&self) -> FlowRecord {
        let direction = match self.reporter {
            Reporter::Server => "ingress",
            Reporter::Client => "egress",
        };
        let record = FlowRecord {
            traffic_direction: Some(direction.into()),
            http: Some(HttpInfo {
                method: self.method.to_owned(),
                path: self.path.clone(),
                status: self.status,
                latency_ms: self.latency_ms,
                reporter: self.reporter.as_str().to_owned(),
                trace_id: self.trace_id.clone(),
            }),
            ..FlowRecord::new(
                self.at,
                Verdict::Forwarded,
                "TCP",
                (self.client.ip.to_string(), self.client.port),
                (self.server.ip.to_string(), self.server.port),
                1,
            )
        };
        with_peers(record, &self.client, &self.server)
    }
}
