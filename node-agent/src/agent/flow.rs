//! The flow pipeline: drain (a thread: map syscalls block) → enrich
//! (identities, once) → every family's handler, and the same enriched batch
//! as flow records. Batches go back to the drain emptied, to be filled again.

use std::time::{Duration, Instant};

use anyhow::Result;
use tokio::{
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tracing::warn;

use crate::{
    flows::{
        self,
        drain::{FlowBatch, FlowDrainer},
        enrich::Enricher,
        handlers::{Handlers, flow_series::FlowSeries, flow_series::Summary},
        metrics::FlowMetrics,
    },
    kernel::maps::FlowMaps,
    observe::{self, hub::FlowHub},
    supervise::{self, Health},
};

/// Batches waiting between drain and aggregate. A full channel blocks the
/// drain thread, and the kernel keeps counting in its map meanwhile: no loss.
const BATCH_CHANNEL: usize = 4;

/// The running pipeline.
pub struct FlowPipeline {
    /// Dropping it ends the drain after one last drain, whose batch it sends.
    stop: std::sync::mpsc::Sender<()>,
    drain: std::thread::JoinHandle<()>,
    aggregate: JoinHandle<()>,
}

/// What the aggregate stage owns.
pub struct Stages {
    pub enricher: Enricher,
    pub flow_series: FlowSeries,
    pub handlers: Handlers,
    pub hub: FlowHub,
}

impl FlowPipeline {
    /// Starts the drain every `interval` and the aggregate stage; the
    /// receiver has the live summary (top flows) after each batch.
    pub fn start(
        maps: FlowMaps,
        interval: Duration,
        metrics: FlowMetrics,
        stages: Stages,
        health: &Health,
    ) -> Result<(Self, watch::Receiver<Summary>)> {
        let (batch_tx, mut batch_rx) = mpsc::channel::<FlowBatch>(BATCH_CHANNEL);
        let (recycle_tx, recycle_rx) = std::sync::mpsc::sync_channel::<FlowBatch>(BATCH_CHANNEL);
        let (stop, stop_rx) = std::sync::mpsc::channel::<()>();
        let drain = {
            let drainer = FlowDrainer::new(maps).recycling(recycle_rx);
            let stage = health.stage("flow-drain");
            std::thread::Builder::new()
                .name("flow-drain".into())
                .spawn(move || {
                    let _stage = stage;
                    drainer.run(interval, &stop_rx, &batch_tx, &metrics)
                })?
        };
        let (summary_tx, summary_rx) = watch::channel(Summary::default());
        let Stages {
            enricher,
            mut flow_series,
            mut handlers,
            hub,
        } = stages;
        let aggregate = supervise::spawn(health, "aggregate", async move {
            // Kept from batch to batch, like the drain's buffers: a steady
            // flow rate allocates nothing here per drain but the records.
            let mut enriched = flows::enrich::EnrichedBatch::default();
            while let Some(mut batch) = batch_rx.recv().await {
                let now = Instant::now();
                enricher.batch_into(&batch, &mut enriched);
                batch.clear();
                // A full or closed channel: the drain makes a new one.
                let _ = recycle_tx.try_send(batch);
                flow_series.apply(&enriched, now);
                handlers.handle(&enriched, now);
                let now_wall = std::time::SystemTime::now();
                hub.publish(observe::record::records(&enriched, now_wall, hub.wanted()));
                summary_tx.send_replace(flow_series.summary(10));
            }
        });
        Ok((
            Self {
                stop,
                drain,
                aggregate,
            },
            summary_rx,
        ))
    }

    /// Call after the probes are detached: the last drain, whose batch the
    /// aggregate stage applies within `grace` before it ends with the
    /// channel.
    pub async fn finish(self, grace: Duration) {
        drop(self.stop);
        let aborted = self.aggregate.abort_handle();
        if tokio::time::timeout(grace, self.aggregate).await.is_err() {
            // The drain thread then finds no receiver and counts the batch
            // in osprey_flow_lost_*{reason="drain_error"}.
            warn!(
                ?grace,
                "shutdown grace period over: the last interval is not applied"
            );
            aborted.abort();
        }
        let drain = self.drain;
        let _ = tokio::task::spawn_blocking(move || drain.join()).await;
    }
}
