//! A record hub: keeps the last records for `--last N` and fans new ones out
//! to followers. A follower that falls behind loses records, and the loss is
//! counted. One hub carries flow records (`observe`), another resource
//! events (`events`).

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use osprey_model::catalogue::{MetricDesc, OSPREY_OBSERVE_LOST_RECORDS};
use prometheus_client::{metrics::counter::Counter, registry::Registry};
use tokio::sync::broadcast;

use super::entry::FlowEntry;

/// The hub of flow records (HTTP exchanges made records when read).
pub type FlowHub = Hub<FlowEntry>;

pub struct Hub<T> {
    recent: Arc<Mutex<VecDeque<Arc<T>>>>,
    capacity: usize,
    live: broadcast::Sender<Arc<T>>,
    pub lost: Counter,
}

impl<T> Clone for Hub<T> {
    fn clone(&self) -> Self {
        Self {
            recent: self.recent.clone(),
            capacity: self.capacity,
            live: self.live.clone(),
            lost: self.lost.clone(),
        }
    }
}

impl FlowHub {
    pub fn new(capacity: usize, registry: &mut Registry) -> Self {
        Self::with_lost_metric(capacity, registry, &OSPREY_OBSERVE_LOST_RECORDS)
    }
}

impl<T> Hub<T> {
    /// A hub whose followers' losses are counted as the family `lost_metric`.
    pub fn with_lost_metric(
        capacity: usize,
        registry: &mut Registry,
        lost_metric: &MetricDesc,
    ) -> Self {
        let lost = Counter::default();
        lost_metric.register(registry, lost.clone());
        Self {
            recent: Arc::new(Mutex::new(VecDeque::with_capacity(capacity))),
            capacity,
            live: broadcast::channel(capacity.max(16)).0,
            lost,
        }
    }

    pub fn publish<R: Into<T>>(&self, records: impl IntoIterator<Item = R>) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        for record in records {
            let record = Arc::new(record.into());
            if recent.len() == self.capacity {
                recent.pop_front();
            }
            recent.push_back(record.clone());
            // No receivers is fine: nobody is following.
            let _ = self.live.send(record);
        }
    }

    /// How many records of a batch are worth building: all of them while
    /// someone follows (API `follow`, flow log), else only what the buffer keeps.
    pub fn wanted(&self) -> usize {
        if self.live.receiver_count() > 0 {
            usize::MAX
        } else {
            self.capacity
        }
    }

    /// The buffered records, oldest first.
    pub fn recent(&self) -> Vec<Arc<T>> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().cloned().collect()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<T>> {
        self.live.subscribe()
    }
}
