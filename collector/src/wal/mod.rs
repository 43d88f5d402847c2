//! The disk write-ahead queue of one exporter.
//!
//! Accepted requests are appended to numbered segment files
//! (`00000000000000000001.seg`, …) in the exporter's directory; the
//! exporter reads them in order and, once a batch is delivered (or dropped
//! for good), commits its position to `cursor` (written to a temporary file
//! and renamed). Segments wholly before the cursor are deleted. After a
//! crash, delivery resumes at the cursor: **at least once** — a batch sent
//! but not yet committed is sent again.
//!
//! Durability (`fsync`): `always` (the default) syncs each append before the
//! sender is answered, so an acknowledged request survives `kill -9` and a
//! power loss; `never` leaves it to the kernel's writeback (survives
//! `kill -9` of the collector, not a machine crash).
//!
//! Torn tails: at open every segment is checked record by record (length,
//! CRC); the first bad record and everything after it in that segment is
//! truncated, with a log line and a count.
//!
//! Budget: `max_bytes` of segments on disk. When an append would exceed it,
//! `when_full = refuse` answers the sender "retry later" (nothing accepted
//! is lost), `drop_oldest` deletes the oldest segments and counts every
//! record and item in them that was not delivered.

mod record;
mod store;

pub use record::{Record, Signal};
pub use store::{Position, Wal, WalError};

use serde::{Deserialize, Serialize};

/// When appends reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Fsync {
    /// fsync before the sender is answered.
    #[default]
    Always,
    /// Leave it to the kernel (survives a collector crash, not a power loss).
    Never,
}

/// What a full queue does with new data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenFull {
    /// Answer senders "unavailable, retry later" (OTLP's retryable status).
    #[default]
    Refuse,
    /// Delete the oldest undelivered data, counting it as dropped.
    DropOldest,
}

/// A queue's limits.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct QueueConfig {
    /// Disk budget of the queue, bytes.
    pub max_bytes: u64,
    /// Size at which a segment file is closed and a new one started.
    pub segment_bytes: u64,
    pub fsync: Fsync,
    pub when_full: WhenFull,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            max_bytes: 1 << 30,
            segment_bytes: 16 << 20,
            fsync: Fsync::Always,
            when_full: WhenFull::Refuse,
        }
    }
}

/// Records and items (data points, spans, log records) a queue dropped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    pub records: u64,
    pub items: u64,
}
