//! The optional flow log: every flow record as a JSON line, to a file or
//! stdout, for Loki's agents (Promtail, Alloy, Vector) to ingest.

use std::{io::Write, path::PathBuf};

use tokio::sync::broadcast::error::RecvError;
use tracing::warn;

use super::hub::FlowHub;

/// Follows the hub and appends each record to `path` ("-" = stdout).
pub fn spawn(hub: &FlowHub, path: PathBuf) -> std::io::Result<tokio::task::JoinHandle<()>> {
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
        loop {
            match rx.recv().await {
                Ok(record) => {
                    let mut line = serde_json::to_vec(&*record).unwrap_or_default();
                    line.push(b'\n');
                    // Batch writes: flush once the burst of one drain is written.
                    if let Err(e) = out
                        .write_all(&line)
                        .and_then(|()| if rx.is_empty() { out.flush() } else { Ok(()) })
                    {
                        warn!(error = %e, path = %path.display(), "flow log write failed; flow log stopped");
                        return;
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
