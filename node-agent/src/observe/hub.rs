//! The flow hub: keeps the last records for `--last N` and fans new ones out
//! to followers. A follower that falls behind loses records, and the loss is
//! counted in `osprey_observe_lost_records_total`.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
};

use prometheus_client::{metrics::counter::Counter, registry::Registry};
use tokio::sync::broadcast;

use super::record::FlowRecord;

#[derive(Clone)]
pub struct FlowHub {
    recent: Arc<Mutex<VecDeque<Arc<FlowRecord>>>>,
    capacity: usize,
    live: broadcast::Sender<Arc<FlowRecord>>,
    pub lost: Counter,
}

impl FlowHub {
    pub fn new(capacity: usize, registry: &mut Registry) -> Self {
        let lost = Counter::default();
        registry.register(
            "osprey_observe_lost_records",
            "Flow records a live follower (observe --follow, flow log) missed because it fell behind",
            lost.clone(),
        );
        Self {
            recent: Arc::new(Mutex::new(VecDeque::with_capacity(capacity))),
            capacity,
            live: broadcast::channel(capacity.max(16)).0,
            lost,
        }
    }

    pub fn publish(&self, records: Vec<FlowRecord>) {
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        for record in records {
            let record = Arc::new(record);
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
    pub fn recent(&self) -> Vec<Arc<FlowRecord>> {
        let recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        recent.iter().cloned().collect()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FlowRecord>> {
        self.live.subscribe()
    }
}
