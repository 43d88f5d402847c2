//! Watches the pods of this node on the Kubernetes API (kube-rs watcher:
//! list, then watch, re-listing after errors with backoff) and keeps the
//! [`PodIndex`] current.

use std::path::Path;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::{
    Api, Client,
    config::{KubeConfigOptions, Kubeconfig},
    runtime::{WatchStreamExt, watcher},
};
use osprey_model::catalogue::{OSPREY_KUBERNETES_PODS, OSPREY_KUBERNETES_WATCH_ERRORS};
use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};
use tracing::{info, warn};

use super::{PodIndex, PodMeta};

#[derive(Debug, thiserror::Error)]
pub enum PodsError {
    #[error("cannot read the kubeconfig {path}")]
    Kubeconfig {
        path: String,
        #[source]
        source: kube::config::KubeconfigError,
    },
    #[error("no Kubernetes client configuration (in-cluster or kubeconfig)")]
    Infer(#[from] kube::config::InferConfigError),
    #[error("cannot build the Kubernetes client")]
    Client(#[from] kube::Error),
}

/// The watch's own metrics.
#[derive(Debug, Clone, Default)]
pub struct PodMetrics {
    pub pods: Gauge,
    pub errors: Counter,
}

impl PodMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        OSPREY_KUBERNETES_PODS.register(registry, m.pods.clone());
        OSPREY_KUBERNETES_WATCH_ERRORS.register(registry, m.errors.clone());
        m
    }
}

/// A client from `kubeconfig`, or else in-cluster / `$KUBECONFIG` / ~/.kube/config.
pub async fn client(kubeconfig: Option<&Path>) -> Result<Client, PodsError> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = Kubeconfig::read_from(path).map_err(|source| PodsError::Kubeconfig {
                path: path.display().to_string(),
                source,
            })?;
            kube::Config::from_custom_kubeconfig(kc, &KubeConfigOptions::default())
                .await
                .map_err(|source| PodsError::Kubeconfig {
                    path: path.display().to_string(),
                    source,
                })?
        }
        None => kube::Config::infer().await?,
    };
    Ok(Client::try_from(config)?)
}

/// Keeps `index` equal to the API's pods of `node` (all pods when None)
/// until the task is dropped. A full list replaces the index at once, so
/// pods deleted while the watch was down leave it.
pub async fn run(client: Client, node: Option<String>, index: PodIndex, metrics: PodMetrics) {
    let api: Api<Pod> = Api::all(client);
    let mut config = watcher::Config::default();
    if let Some(node) = &node {
        config = config.fields(&format!("spec.nodeName={node}"));
    }
    let stream = watcher(api, config).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut listing: Option<Vec<PodMeta>> = None;
    let mut synced = false;
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => listing = Some(Vec::new()),
            Ok(watcher::Event::InitApply(pod)) => {
                if let (Some(list), Some(meta)) = (listing.as_mut(), PodMeta::from_pod(&pod)) {
                    list.push(meta);
                }
            }
            Ok(watcher::Event::InitDone) => {
                index.replace(listing.take().unwrap_or_default());
                if !synced {
                    synced = true;
                    info!(pods = index.len(), node = ?node, "pod identity synced from the Kubernetes API");
                }
            }
            Ok(watcher::Event::Apply(pod)) => {
                if let Some(meta) = PodMeta::from_pod(&pod) {
                    index.upsert(meta);
                }
            }
            Ok(watcher::Event::Delete(pod)) => {
                if let Some(uid) = pod.metadata.uid.as_deref() {
                    index.remove(uid);
                }
            }
            Err(e) => {
                metrics.errors.inc();
                warn!(error = %e, "pod watch failed; retrying with backoff");
            }
        }
        metrics.pods.set(index.len() as i64);
    }
}
