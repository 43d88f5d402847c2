//! Before any stage: the endpoints' TLS read (a bad certificate is a clear
//! error before anything is loaded), the open-file limit raised, and the
//! probes loaded and attached.

use std::path::PathBuf;

use anyhow::{Context, Result};
use tracing::{info, warn};

use crate::{
    cgroup,
    config::Config,
    kernel::{
        maps::{FlowMaps, ResourceMaps},
        probes::{self, Probes},
    },
    server,
};

/// The endpoints' TLS, when a certificate and key are configured.
pub fn server_tls(config: &Config) -> Result<Option<server::ServerTls>> {
    match (&config.tls_cert_file, &config.tls_key_file) {
        (Some(cert), Some(key)) => Ok(Some(
            server::ServerTls::load(cert, key, config.tls_client_ca_file.as_deref())
                .context("the endpoints' TLS (tls_cert_file, tls_key_file, tls_client_ca_file)")?,
        )),
        _ => Ok(None),
    }
}

/// Loads the probe object and attaches its programs under the configured
/// cgroup (the v2 root when none is set).
pub fn probes(
    config: &Config,
    sched_fields: probes::SchedFields,
) -> Result<(Probes, FlowMaps, Option<ResourceMaps>)> {
    let probes_path = probes_path(&config.probes)?;
    let cgroup = if config.cgroup.as_os_str().is_empty() {
        cgroup::v2_root()?
    } else {
        config.cgroup.clone()
    };
    let (probes, maps, resource_maps) = Probes::load_and_attach(
        probes_path.clone(),
        cgroup.clone(),
        config.flow_map_entries,
        config.bpf_stats,
        config.runqueue_latency.then_some(sched_fields),
        config.http_capture_bytes,
    )
    .with_context(|| format!("loading {}", probes_path.display()))?;
    info!(programs = ?probes.attached, cgroup = %cgroup.display(), "flow probes attached");
    // Loading parsed the object and the kernel's BTF; give that memory back.
    // SAFETY: malloc_trim only releases free heap memory.
    unsafe { libc::malloc_trim(0) };
    Ok((probes, maps, resource_maps))
}

/// The probe object: `configured` (config `probes`), or next to the agent
/// binary when that is empty.
pub fn probes_path(configured: &std::path::Path) -> Result<PathBuf> {
    if !configured.as_os_str().is_empty() {
        return Ok(configured.to_owned());
    }
    let exe = std::env::current_exe().context("locating the agent binary")?;
    Ok(exe.with_file_name("osprey-probes.bpf.o"))
}

/// Raises the soft limit on open files to the hard limit (as Go programs
/// do): the agent keeps cgroup files open between scrapes.
pub fn raise_open_file_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid, initialised rlimit.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                warn!(
                    "cannot raise the open-file limit; cgroup files past it are opened per scrape"
                );
            }
        }
    }
}
