//! The render of a scrape: the gathered figures → metric families under
//! cAdvisor's names and the kubelet's labels. Reads nothing.

use prometheus_client::{
    encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet},
    metrics::MetricType,
};

use super::{
    families::{FAMILIES, IO, NETWORK},
    gather::{Owner, Scrape},
};

type Labels<'a> = Vec<(&'static str, &'a str)>;

/// The kubelet's labels of a cgroup: `id`, then `namespace`, `pod`, and for
/// a container's cgroup `container`, `image` and `name` (the runtime's
/// container id), once the pod watch knows them (an absent label and an
/// empty one are the same to PromQL, so unknown ones are left out rather
/// than sent empty on every series).
fn labels<'a>(id: &'a str, owner: &'a Owner) -> Labels<'a> {
    let mut l = vec![("id", id)];
    if let Some((pod, container)) = owner {
        l.push(("namespace", pod.namespace.as_str()));
        l.push(("pod", pod.name.as_str()));
        if let Some(c) = container.map(|i| &pod.containers[i]) {
            l.push(("container", c.name.as_str()));
            l.push(("image", c.image.as_str()));
            l.push(("name", c.id.as_str()));
        }
    }
    l
}

fn with<'a>(base: &Labels<'a>, key: &'static str, value: &'a str) -> Labels<'a> {
    let mut l = base.clone();
    l.push((key, value));
    l
}

fn counter(
    family: &mut MetricEncoder<'_>,
    labels: &Labels<'_>,
    value: f64,
) -> Result<(), std::fmt::Error> {
    family
        .encode_family(labels)?
        .encode_counter::<NoLabelSet, _, f64>(&value, None)
}

/// The kernel's log2 buckets merged in pairs: upper bounds 4 µs, 16 µs, …,
/// 4^11 µs ≈ 4.2 s, then +Inf (12 buckets, a resolution of ×4 per bucket).
fn runq_buckets(h: &osprey_abi::RunqHist) -> Vec<(f64, u64)> {
    h.buckets
        .chunks(2)
        .enumerate()
        .map(|(i, pair)| {
            let le = if (i + 1) * 2 >= osprey_abi::RUNQ_BUCKETS {
                f64::INFINITY
            } else {
                (1u64 << ((i + 1) * 2)) as f64 / 1e6
            };
            (le, pair.iter().sum())
        })
        .collect()
}

/// Encodes a gathered scrape.
pub(super) fn render(scrape: &Scrape, encoder: &mut DescriptorEncoder) -> std::fmt::Result {
    let base: Vec<Labels<'_>> = scrape
        .cgroups
        .iter()
        .map(|c| labels(&c.id, &c.owner))
        .collect();
    let cgroups = || base.iter().zip(&scrape.cgroups);
    for (name, help, metric_type, get) in FAMILIES {
        let mut family = encoder.encode_descriptor(name, help, None, *metric_type)?;
        for (labels, c) in cgroups() {
            let Some(value) = get(&c.stats) else { continue };
            let mut metric = family.encode_family(labels)?;
            match metric_type {
                MetricType::Counter => metric.encode_counter::<NoLabelSet, _, f64>(&value, None)?,
                _ => metric.encode_gauge(&value)?,
            }
        }
    }
    encoder
        .encode_descriptor(
            "osprey_cgroup_open_files",
            "Cgroup files kept open between scrapes (see cgroup_open_files)",
            None,
            MetricType::Gauge,
        )?
        .encode_gauge(&(scrape.open_files as i64))?;
    for (name, help, get) in NETWORK {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for (labels, c) in cgroups() {
            for dev in &c.stats.network {
                counter(
                    &mut family,
                    &with(labels, "interface", &dev.interface),
                    get(dev) as f64,
                )?;
            }
        }
    }
    for (name, help, get) in IO {
        let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
        for ((i, device), v) in &scrape.io {
            counter(
                &mut family,
                &with(&base[*i], "device", device),
                get(v) as f64,
            )?;
        }
    }
    let mut family = encoder.encode_descriptor(
        "container_oom_events",
        "Count of out of memory events observed for the container",
        None,
        MetricType::Counter,
    )?;
    for (labels, c) in cgroups() {
        if let Some(v) = c.oom_kills {
            counter(&mut family, labels, v as f64)?;
        }
    }
    let Some(probes) = &scrape.probes else {
        return Ok(());
    };
    let mut family = encoder.encode_descriptor(
        "container_cpu_runqueue_latency_seconds",
        "Time the container's tasks waited for a CPU after becoming runnable (eBPF sched tracepoints)",
        None,
        MetricType::Histogram,
    )?;
    for (i, h) in &probes.runq {
        let buckets = runq_buckets(h);
        family
            .encode_family(&base[*i])?
            .encode_histogram::<NoLabelSet>(h.sum_ns as f64 / 1e9, h.count, &buckets, None)?;
    }
    let mut family = encoder.encode_descriptor(
        "osprey_resource_probe_lost",
        "Events the resource probes could not account, by reason (a kernel map or ring buffer was full)",
        None,
        MetricType::Counter,
    )?;
    let l = probes.loss;
    for (reason, v) in [
        ("runq_start_map_full", l.runq_start_full),
        ("runq_latency_map_full", l.runq_hist_full),
        ("block_io_map_full", l.block_map_full),
        ("oom_ring_full", l.oom_ring_full),
    ] {
        counter(&mut family, &vec![("reason", reason)], v as f64)?;
    }
    Ok(())
}
