//! The optional flow log: every flow record as a JSON line, to a file or
//! stdout, for Loki's agents (Promtail, Alloy, Vector) to ingest.

use std::{io::Write, path::PathBuf};

use osprey_model::catalogue::OSPREY_FLOW_LOG_WRITE_ERRORS;
use prometheus_client::{metrics::counter::Counter, registry::Registry};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tracing::{info, warn};

use super::hub::FlowHub;

/// Records the flow log could not write (the file's write failed); the log
/// goes on with the next record.
#[derive(Debug, Clone, Default)]
pub struct FlowLogMetrics {
    pub write_errors: Counter,
}

impl FlowLogMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        OSPREY_FLOW_LOG_WRITE_ERRORS.register(registry, m.write_errors.clone());
        m
    }
}

/// Follows the hub and appends each record to `path` ("-" = stdout). When
/// `stop` fires (or is dropped), it writes what is still queued, flushes
/// and ends: the last interval reaches the log before the agent exits.
pub fn spawn(
    hub: &FlowHub,
    path: PathBuf,
    metrics: FlowLogMetrics,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let mut out: Box<dyn Write + Send> = if path.as_os_str() == "-" {
        Box::new(std::io::stdout())
    } else {
        Box::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)?,
        )
    };
    let mut rx = hub.subscribe();
    let lost = hub.lost.clone();
    Ok(tokio::spawn(async move {
        let mut failing = false;
        loop {
            let next = tokio::select! {
                biased;
                next = rx.recv() => next,
                _ = &mut stop => match rx.try_recv() {
                    Ok(record) => Ok(record),
                    Err(TryRecvError::Lagged(n)) => Err(RecvError::Lagged(n)),
                    Err(TryRecvError::Empty | TryRecvError::Closed) => {
                        let _ = out.flush();
                        return;
                    }
                },
            };
            match next {
                Ok(entry) => {
                    let record = entry.record();
                    // Not a network drop (drop_reasons_ignored): not logged.
                    if record.drop_ignored {
                        continue;
                    }
                    let mut line = serde_json::to_vec(&*record).unwrap_or_default();
                    line.push(b'\n');
                    // Batch writes: flush once the burst of one drain is written.
                    match out
                        .write_all(&line)
                        .and_then(|()| if rx.is_empty() { out.flush() } else { Ok(()) })
                    {
                        Err(e) => {
                            metrics.write_errors.inc();
                            if !failing {
                                warn!(error = %e, path = %path.display(), "flow log write failed; records are counted in osprey_flow_log_write_errors_total until it recovers");
                            }
                            failing = true;
                        }
                        Ok(()) if failing => {
                            info!(path = %path.display(), "flow log writes again");
                            failing = false;
                        }
                        Ok(()) => {}
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    lost.inc_by(n);
                }
                Err(RecvError::Closed) => return,
            }
        }
    }))
}
