//! Identity, resolved once: the pod, service and node watches (or none,
//! standalone), and the enricher that turns kernel keys into identities
//! before any family sees them.

use anyhow::{Context, Result};
use prometheus_client::registry::Registry;
use tracing::{info, warn};

use crate::{
    config::{self, Config},
    flows::enrich::Enricher,
    kernel::probes::Probes,
    pods,
    supervise::{self, Health},
};

/// Starts the pod watch when the config asks for it (see
/// [`Config::watch_pods`]); the index stays empty (standalone) otherwise.
pub async fn watch_pods(
    config: &Config,
    registry: &mut Registry,
    health: &Health,
) -> Result<pods::PodIndex> {
    let in_cluster = std::env::var_os("KUBERNETES_SERVICE_HOST").is_some();
    if !config.watch_pods(in_cluster) {
        info!("standalone: no Kubernetes API; flows are named by IP, cgroups by path");
        return Ok(pods::PodIndex::standalone());
    }
    let client = match pods::watch::client(config.kubeconfig.as_deref()).await {
        Ok(client) => client,
        // Only `auto` inside a cluster may fall back to standalone.
        Err(e)
            if config.kubernetes == config::KubernetesMode::Auto && config.kubeconfig.is_none() =>
        {
            warn!(error = %e, "cannot reach the Kubernetes API: standalone, flows named by IP");
            return Ok(pods::PodIndex::standalone());
        }
        Err(e) => return Err(e).context("pod identity from the Kubernetes API"),
    };
    let node = match config.pod_scope {
        config::PodScope::Node => config.node_name.clone(),
        config::PodScope::Cluster => None,
    };
    let index = pods::PodIndex::for_cluster(config.node_name.clone(), config.service_cidrs.clone());
    let metrics = pods::watch::PodMetrics::register(registry);
    supervise::spawn(
        health,
        "pod-watch",
        pods::watch::run(client.clone(), node, index.clone(), metrics.clone()),
    );
    supervise::spawn(
        health,
        "service-watch",
        pods::watch::run_services(client.clone(), index.clone(), metrics.clone()),
    );
    supervise::spawn(
        health,
        "node-watch",
        pods::watch::run_nodes(client, index.clone(), metrics),
    );
    Ok(index)
}

/// The enricher: pods and services from `pods`, drop reasons as this
/// kernel names them, the configured ignored reasons and counted
/// locations, and drop locations named by the kernel's own program (the
/// `/proc/kallsyms` file when it does not load).
pub fn enricher(config: &Config, pods: pods::PodIndex, probes: &mut Probes) -> Enricher {
    let (enricher, unknown) =
        Enricher::new(pods, probes.drop_reasons.clone()).ignoring(&config.drop_reasons_ignored);
    let enricher = enricher.counting_locations(&config.drop_locations_counted);
    let enricher = match probes.symbol_program() {
        Ok(kernel) => enricher.naming_with(kernel),
        Err(e) => {
            warn!(error = %e, "drop locations are named from /proc/kallsyms");
            enricher
        }
    };
    if !unknown.is_empty() {
        // Kernels differ in their reasons: a name this one lacks is not an
        // error, but it ignores nothing.
        warn!(
            ?unknown,
            "drop_reasons_ignored: not drop reasons of this kernel"
        );
    }
    enricher
}
