//! Supervision: every long-running stage holds a [`Stage`] guard; a stage
//! that ends while the agent runs (its task returned or panicked, its thread
//! exited) is recorded, and `/healthz` answers 503 naming it — never metrics
//! frozen behind an `ok`. At shutdown the agent says so first, and stages
//! that end then are not failures.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use tracing::error;

#[derive(Debug, Clone, Default)]
pub struct Health(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    stopping: AtomicBool,
    failed: Mutex<BTreeMap<&'static str, String>>,
}

impl Health {
    /// A guard for stage `name`: while it lives the stage is up.
    pub fn stage(&self, name: &'static str) -> Stage {
        Stage {
            name,
            health: self.clone(),
        }
    }

    /// From now on, stages that end are shutting down, not failing.
    pub fn stopping(&self) {
        self.0.stopping.store(true, Ordering::SeqCst);
    }

    /// `Ok` while every stage is up; else the failed stages and why.
    pub fn check(&self) -> Result<(), String> {
        let failed = self.0.failed.lock().unwrap_or_else(|e| e.into_inner());
        if failed.is_empty() {
            return Ok(());
        }
        Err(failed
            .iter()
            .map(|(stage, why)| format!("{stage}: {why}"))
            .collect::<Vec<_>>()
            .join("\n"))
    }

    fn ended(&self, name: &'static str, panicked: bool) {
        if self.0.stopping.load(Ordering::SeqCst) {
            return;
        }
        let why = if panicked { "panicked" } else { "stopped" };
        error!(stage = name, "pipeline stage {why}; /healthz reports it");
        self.0
            .failed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(name, why.to_owned());
    }
}

/// Spawns `stage` on the runtime as supervised stage `name`.
pub fn spawn<F>(health: &Health, name: &'static str, stage: F) -> tokio::task::JoinHandle<()>
where
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let guard = health.stage(name);
    tokio::spawn(async move {
        let _guard = guard;
        stage.await;
    })
}

/// Held by a running stage; dropping it (the stage ended) is recorded.
#[derive(Debug)]
pub struct Stage {
    name: &'static str,
    health: Health,
}

impl Drop for Stage {
    fn drop(&mut self) {
        self.health.ended(self.name, std::thread::panicking());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stage_that_ends_or_panics_is_reported_until_shutdown() {
        let health = Health::default();
        let up = health.stage("aggregate");
        assert_eq!(health.check(), Ok(()));
        let dns = health.stage("dns");
        let panicked = std::thread::spawn(move || {
            let _dns = dns;
            panic!("boom");
        })
        .join();
        assert!(panicked.is_err());
        assert_eq!(health.check(), Err("dns: panicked".to_owned()));
        health.stopping();
        drop(up);
        assert_eq!(health.check(), Err("dns: panicked".to_owned()));
    }
}
