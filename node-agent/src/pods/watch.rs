//! Watches the pods of this node, and the cluster's Services and Nodes, on
//! the Kubernetes API (kube-rs watchers: list, then watch with bookmarks,
//! re-listing after errors and `410 Gone` with backoff) and keeps the
//! [`PodIndex`] current.

use std::path::Path;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::{
    Api, Client,
    config::{KubeConfigOptions, Kubeconfig},
    runtime::{WatchStreamExt, watcher},
};
use osprey_model::catalogue::{
    OSPREY_KUBERNETES_NODES, OSPREY_KUBERNETES_PODS, OSPREY_KUBERNETES_SERVICES,
    OSPREY_KUBERNETES_WATCH_ERRORS,
};
use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};
use tracing::{info, warn};

use serde::de::DeserializeOwned;

use super::{NodeMeta, PodIndex, PodMeta, ServiceMeta, Synced};

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

/// The watches' own metrics.
#[derive(Debug, Clone, Default)]
pub struct PodMetrics {
    pub pods: Gauge,
    pub services: Gauge,
    pub nodes: Gauge,
    pub errors: Counter,
}

impl PodMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        OSPREY_KUBERNETES_PODS.register(registry, m.pods.clone());
        OSPREY_KUBERNETES_SERVICES.register(registry, m.services.clone());
        OSPREY_KUBERNETES_NODES.register(registry, m.nodes.clone());
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
    let mut config = watcher::Config::default();
    if let Some(node) = &node {
        config = config.fields(&format!("spec.nodeName={node}"));
    }
    follow::<Pod>(Api::all(client), config, &index, &metrics).await
}

/// Keeps the index's Services (those with a ClusterIP) equal to the API's.
pub async fn run_services(client: Client, index: PodIndex, metrics: PodMetrics) {
    follow::<Service>(
        Api::all(client),
        watcher::Config::default(),
        &index,
        &metrics,
    )
    .await
}

/// Keeps the index's Nodes equal to the API's (and this host's addresses
/// fresh: they are read again at every change of a Node).
pub async fn run_nodes(client: Client, index: PodIndex, metrics: PodMetrics) {
    follow::<Node>(
        Api::all(client),
        watcher::Config::default(),
        &index,
        &metrics,
    )
    .await
}

/// How one kind of API object lands in the index.
trait Watched: kube::Resource + Clone + std::fmt::Debug + DeserializeOwned + Send + 'static {
    type Meta;
    const KIND: &'static str;
    fn identity(&self) -> Option<Self::Meta>;
    /// The index's key of the object (also of a deleted one).
    fn key(&self) -> Option<String>;
    fn replace(index: &PodIndex, all: Vec<Self::Meta>);
    fn upsert(index: &PodIndex, meta: Self::Meta);
    fn remove(index: &PodIndex, key: &str);
    fn synced(synced: &mut Synced);
    fn count(index: &PodIndex, metrics: &PodMetrics);
}

impl Watched for Pod {
    type Meta = PodMeta;
    const KIND: &'static str = "pods";
    fn identity(&self) -> Option<PodMeta> {
        PodMeta::from_pod(self)
    }
    fn key(&self) -> Option<String> {
        self.metadata.uid.clone()
    }
    fn replace(index: &PodIndex, all: Vec<PodMeta>) {
        index.replace(all);
    }
    fn upsert(index: &PodIndex, meta: PodMeta) {
        index.upsert(meta);
    }
    fn remove(index: &PodIndex, key: &str) {
        index.remove(key);
    }
    fn synced(synced: &mut Synced) {
        synced.pods = true;
    }
    fn count(index: &PodIndex, metrics: &PodMetrics) {
        metrics.pods.set(index.len() as i64);
    }
}

impl Watched for Service {
    type Meta = ServiceMeta;
    const KIND: &'static str = "services";
    fn identity(&self) -> Option<ServiceMeta> {
        ServiceMeta::from_service(self)
    }
    fn key(&self) -> Option<String> {
        let m = &self.metadata;
        Some(format!(
            "{}/{}",
            m.namespace.as_deref()?,
            m.name.as_deref()?
        ))
    }
    fn replace(index: &PodIndex, all: Vec<ServiceMeta>) {
        index.replace_services(all);
    }
    fn upsert(index: &PodIndex, meta: ServiceMeta) {
        index.upsert_service(meta);
    }
    fn remove(index: &PodIndex, key: &str) {
        index.remove_service(key);
    }
    fn synced(synced: &mut Synced) {
        synced.services = true;
    }
    fn count(index: &PodIndex, metrics: &PodMetrics) {
        metrics.services.set(index.services_len() as i64);
    }
}

impl Watched for Node {
    type Meta = NodeMeta;
    const KIND: &'static str = "nodes";
    fn identity(&self) -> Option<NodeMeta> {
        NodeMeta::from_node(self)
    }
    fn key(&self) -> Option<String> {
        self.metadata.name.clone()
    }
    fn replace(index: &PodIndex, all: Vec<NodeMeta>) {
        index.refresh_host();
        index.replace_nodes(all);
    }
    fn upsert(index: &PodIndex, meta: NodeMeta) {
        index.refresh_host();
        index.upsert_node(meta);
    }
    fn remove(index: &PodIndex, key: &str) {
        index.remove_node(key);
    }
    fn synced(synced: &mut Synced) {
        synced.nodes = true;
    }
    fn count(index: &PodIndex, metrics: &PodMetrics) {
        metrics.nodes.set(index.nodes_len() as i64);
    }
}

/// List, then watch `api`, applying every change to `index`.
async fn follow<K: Watched>(
    api: Api<K>,
    config: watcher::Config,
    index: &PodIndex,
    metrics: &PodMetrics,
) {
    let stream = watcher(api, config).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let mut listing: Option<Vec<K::Meta>> = None;
    let mut synced = false;
    while let Some(event) = stream.next().await {
        match event {
            Ok(watcher::Event::Init) => listing = Some(Vec::new()),
            Ok(watcher::Event::InitApply(obj)) => {
                if let (Some(list), Some(meta)) = (listing.as_mut(), obj.identity()) {
                    list.push(meta);
                }
            }
            Ok(watcher::Event::InitDone) => {
                K::replace(index, listing.take().unwrap_or_default());
                if !synced {
                    synced = true;
                    index.synced(K::synced);
                    info!(kind = K::KIND, "identity synced from the Kubernetes API");
                }
            }
            Ok(watcher::Event::Apply(obj)) => match obj.identity() {
                Some(meta) => K::upsert(index, meta),
                // An object that no longer qualifies (a Service made
                // headless) leaves.
                None => {
                    if let Some(key) = obj.key() {
                        K::remove(index, &key);
                    }
                }
            },
            Ok(watcher::Event::Delete(obj)) => {
                if let Some(key) = obj.key() {
                    K::remove(index, &key);
                }
            }
            Err(e) => {
                metrics.errors.inc();
                warn!(error = %e, kind = K::KIND, "watch failed; retrying with backoff");
            }
        }
        K::count(index, metrics);
    }
}
