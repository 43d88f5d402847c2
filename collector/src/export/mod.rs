//! Out: each exporter reads its write-ahead queue in order, delivers a
//! batch through its sink (remote-write or OTLP), and commits the queue
//! position once the batch is delivered or dropped for good (counted).
//! A batch is up to `BATCH_RECORDS` queued requests; a short batch waits
//! up to `BATCH_WAIT` for more, so small requests are sent together.

pub mod client;
pub mod encode;
#[cfg(test)]
mod encode_tests;
pub mod labels;
pub mod names;
pub mod native;
pub mod otlp;
pub mod proto;
pub mod remote_write;
pub mod retry;
pub mod text;
pub mod translate;
#[cfg(test)]
mod translate_tests;
pub mod view;
#[cfg(test)]
mod view_tests;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tracing::error;

use crate::metrics::{ExporterLabels, Metrics};
use crate::wal::{Position, Record, Wal};

const BATCH_RECORDS: usize = 64;
const BATCH_BYTES: u64 = 4 << 20;
const BATCH_WAIT: Duration = Duration::from_millis(200);

pub enum Sink {
    RemoteWrite(remote_write::RemoteWrite),
    Otlp(otlp::Otlp),
}

impl Sink {
    async fn deliver(
        &self,
        records: &[Record],
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<(), ()> {
        match self {
            Self::RemoteWrite(s) => s.deliver(records, shutdown).await,
            Self::Otlp(s) => s.deliver(records, shutdown).await,
        }
    }
}

pub struct Exporter {
    pub name: String,
    pub wal: Arc<Wal>,
    pub sink: Sink,
    pub metrics: Arc<Metrics>,
}

impl Exporter {
    /// Runs until `shutdown`; whatever is not delivered by then stays queued.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        // Queue gauges and drop counts, also while a send is being retried.
        let oldest_ms = Arc::new(AtomicU64::new(0));
        let reporter = tokio::spawn(report(
            self.name.clone(),
            self.wal.clone(),
            self.metrics.clone(),
            oldest_ms.clone(),
        ));
        self.deliver_all(&mut shutdown, &oldest_ms).await;
        reporter.abort();
    }

    async fn deliver_all(&self, shutdown: &mut watch::Receiver<bool>, oldest_ms: &AtomicU64) {
        let mut at = self.wal.cursor();
        loop {
            oldest_ms.store(0, Ordering::Relaxed);
            let notified = self.wal.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let mut batch = match self.read(at).await {
                Ok(b) => b,
                Err(e) => {
                    error!(exporter = %self.name, error = %e, "reading the queue");
                    Vec::new()
                }
            };
            if batch.is_empty() {
                tokio::select! {
                    _ = notified => {}
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            }
            if batch.len() < BATCH_RECORDS {
                tokio::select! {
                    _ = tokio::time::sleep(BATCH_WAIT) => {}
                    _ = shutdown.changed() => return,
                }
                // More after what is held (what is held stays: a segment
                // `drop_oldest` deletes meanwhile does not take it back).
                let end = batch.last().expect("non-empty").1;
                if let Ok(more) = self.read_more(end, BATCH_RECORDS - batch.len()).await {
                    batch.extend(more);
                }
            }
            oldest_ms.store(
                batch.first().map_or(0, |(r, _)| r.unix_ms),
                Ordering::Relaxed,
            );
            let records: Vec<Record> = batch.iter().map(|(r, _)| r.clone()).collect();
            if self.sink.deliver(&records, shutdown).await.is_err() {
                return;
            }
            let end = batch.last().expect("non-empty").1;
            if let Err(e) = self.wal.commit(end, batch.len() as u64) {
                error!(exporter = %self.name, error = %e, "committing the queue position (the batch may be sent again after a restart)");
            }
            at = end;
        }
    }

    async fn read_more(
        &self,
        at: Position,
        n: usize,
    ) -> Result<Vec<(Record, Position)>, crate::wal::WalError> {
        let wal = self.wal.clone();
        tokio::task::spawn_blocking(move || wal.read(at, n, BATCH_BYTES))
            .await
            .expect("queue read task")
    }

    async fn read(&self, at: Position) -> Result<Vec<(Record, Position)>, crate::wal::WalError> {
        self.read_more(at, BATCH_RECORDS).await
    }
}

/// Every half second: queue depth, age of the oldest undelivered request,
/// and what `drop_oldest` dropped since the last report.
async fn report(name: String, wal: Arc<Wal>, m: Arc<Metrics>, oldest_ms: Arc<AtomicU64>) {
    let labels = ExporterLabels {
        exporter: name.clone(),
    };
    let mut seen = wal.dropped();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tick.tick().await;
        let (bytes, records) = wal.depth();
        m.queue_bytes.get_or_create(&labels).set(bytes as i64);
        m.queue_records.get_or_create(&labels).set(records as i64);
        m.queue_disk_bytes
            .get_or_create(&labels)
            .set(wal.disk_bytes() as i64);
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let oldest = oldest_ms.load(Ordering::Relaxed);
        let age = if oldest == 0 {
            0.0
        } else {
            now_ms.saturating_sub(oldest) as f64 / 1000.0
        };
        m.oldest_age_seconds.get_or_create(&labels).set(age);
        let dropped = wal.dropped();
        m.dropped(
            &name,
            "requests",
            "queue_full",
            dropped.records - seen.records,
        );
        m.dropped(&name, "items", "queue_full", dropped.items - seen.items);
        seen = dropped;
    }
}
