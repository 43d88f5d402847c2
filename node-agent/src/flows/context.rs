//! Hubble's context options: which identity names the source and the
//! destination of a flow in the `hubble_*` families. A spec is a list of
//! options separated by `|`, tried in order: `namespace`, `pod`, `workload`,
//! `service` (a ClusterIP's `namespace/service`), `reserved-identity`
//! (`reserved:host`, `reserved:remote-node`, `reserved:world`,
//! `reserved:unknown`, for an address that is no pod or Service) and `ip`.
//! An address no known pod owns resolves only the options it has a value
//! for, so `pod|ip` gives the address and `pod` alone gives an empty value
//! (which Prometheus treats as no label); `pod|service|reserved-identity`
//! keeps the label's values bounded by the cluster's objects.

use std::{
    net::{IpAddr, Ipv4Addr},
    str::FromStr,
};

use osprey_model::labels::ContextLabels;
use serde::Deserialize;

use super::enrich::{FlowIdentity, Peer};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextOption {
    Namespace,
    Pod,
    Workload,
    Service,
    ReservedIdentity,
    Ip,
}

/// A parsed spec such as `pod|ip`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub struct ContextSpec(Vec<ContextOption>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error(
    "unknown context option {0:?} (expected namespace, pod, workload, service, reserved-identity or ip, separated by |)"
)]
pub struct ContextError(String);

impl FromStr for ContextSpec {
    type Err = ContextError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.trim().is_empty() {
            return Ok(Self(Vec::new()));
        }
        s.split('|')
            .map(|o| match o.trim() {
                "namespace" => Ok(ContextOption::Namespace),
                "pod" => Ok(ContextOption::Pod),
                "workload" => Ok(ContextOption::Workload),
                "service" => Ok(ContextOption::Service),
                "reserved-identity" => Ok(ContextOption::ReservedIdentity),
                "ip" => Ok(ContextOption::Ip),
                other => Err(ContextError(other.to_owned())),
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }
}

impl std::fmt::Display for ContextSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, o) in self.0.iter().enumerate() {
            let name = match o {
                ContextOption::Namespace => "namespace",
                ContextOption::Pod => "pod",
                ContextOption::Workload => "workload",
                ContextOption::Service => "service",
                ContextOption::ReservedIdentity => "reserved-identity",
                ContextOption::Ip => "ip",
            };
            write!(f, "{}{name}", if i == 0 { "" } else { "|" })?;
        }
        Ok(())
    }
}

/// As the spec's text, so flags merge into the config as the file does.
impl serde::Serialize for ContextSpec {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl TryFrom<String> for ContextSpec {
    type Error = ContextError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

/// What is known of one endpoint of a flow.
#[derive(Debug, Clone)]
pub struct Endpoint<'a> {
    /// Written out only when `ip` is the option that names the endpoint.
    pub ip: IpAddr,
    pub namespace: Option<&'a str>,
    pub pod: Option<&'a str>,
    pub workload: Option<&'a str>,
    /// A Service's namespace and name.
    pub service: Option<(&'a str, &'a str)>,
    pub reserved: Option<&'static str>,
}

impl Default for Endpoint<'_> {
    fn default() -> Self {
        Self {
            ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            namespace: None,
            pod: None,
            workload: None,
            service: None,
            reserved: None,
        }
    }
}

impl ContextSpec {
    pub fn is_enabled(&self) -> bool {
        !self.0.is_empty()
    }

    /// The first option that the endpoint has a value for, or "".
    pub fn resolve(&self, e: &Endpoint<'_>) -> String {
        self.0
            .iter()
            .find_map(|o| match o {
                ContextOption::Namespace => e.namespace.map(str::to_owned),
                ContextOption::Pod => match (e.namespace, e.pod) {
                    (Some(ns), Some(pod)) => Some(format!("{ns}/{pod}")),
                    _ => None,
                },
                ContextOption::Workload => match (e.namespace, e.workload) {
                    (Some(ns), Some(w)) => Some(format!("{ns}/{w}")),
                    _ => None,
                },
                ContextOption::Service => e.service.map(|(ns, name)| format!("{ns}/{name}")),
                ContextOption::ReservedIdentity => e.reserved.map(str::to_owned),
                ContextOption::Ip => Some(e.ip.to_string()),
            })
            .unwrap_or_default()
    }
}

/// Source and destination context of the `hubble_*` families.
#[derive(Debug, Clone, Default)]
pub struct Contexts {
    pub source: ContextSpec,
    pub destination: ContextSpec,
}

impl Contexts {
    /// The context labels of a flow, from its (already enriched) ends.
    pub fn labels(&self, flow: &FlowIdentity) -> ContextLabels {
        self.between(&flow.source, &flow.destination)
    }

    /// The context labels of traffic between two peers.
    pub fn between(&self, source: &Peer, destination: &Peer) -> ContextLabels {
        let side = |spec: &ContextSpec, peer: &Peer| {
            spec.is_enabled()
                .then(|| spec.resolve(&Endpoint::of(peer)).into())
        };
        ContextLabels {
            source: side(&self.source, source),
            destination: side(&self.destination, destination),
        }
    }
}

impl<'a> Endpoint<'a> {
    pub fn of(peer: &'a Peer) -> Self {
        let pod = peer.pod.as_deref();
        Self {
            ip: peer.ip,
            namespace: pod.map(|p| p.namespace.as_str()),
            pod: pod.map(|p| p.name.as_str()),
            workload: pod.map(|p| p.workload.as_str()),
            service: peer
                .service
                .as_deref()
                .map(|s| (s.namespace.as_str(), s.name.as_str())),
            reserved: peer.reserved.map(|r| r.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fallbacks_and_rejects_unknown_options() {
        let spec: ContextSpec = "pod|ip".parse().unwrap();
        assert_eq!(
            spec,
            ContextSpec(vec![ContextOption::Pod, ContextOption::Ip])
        );
        assert_eq!(
            "pods".parse::<ContextSpec>(),
            Err(ContextError("pods".into()))
        );
        assert!(!"".parse::<ContextSpec>().unwrap().is_enabled());
    }

    #[test]
    fn resolves_the_first_known_identity() {
        let bare = Endpoint {
            ip: "10.0.0.1".parse().unwrap(),
            ..Default::default()
        };
        let known = Endpoint {
            ip: "10.0.0.1".parse().unwrap(),
            namespace: Some("shop"),
            pod: Some("web-1"),
            workload: Some("web"),
            ..Default::default()
        };
        let service = Endpoint {
            ip: "10.96.0.10".parse().unwrap(),
            service: Some(("shop", "web")),
            ..Default::default()
        };
        let outside = Endpoint {
            ip: "192.0.2.1".parse().unwrap(),
            reserved: Some("reserved:world"),
            ..Default::default()
        };
        let bounded: ContextSpec = "pod|service|reserved-identity".parse().unwrap();
        assert_eq!(bounded.resolve(&known), "shop/web-1");
        assert_eq!(bounded.resolve(&service), "shop/web");
        assert_eq!(bounded.resolve(&outside), "reserved:world");
        assert_eq!(bounded.to_string(), "pod|service|reserved-identity");
        let spec: ContextSpec = "pod|ip".parse().unwrap();
        assert_eq!(spec.resolve(&bare), "10.0.0.1");
        assert_eq!(spec.resolve(&known), "shop/web-1");
        assert_eq!(
            "workload".parse::<ContextSpec>().unwrap().resolve(&known),
            "shop/web"
        );
        assert_eq!(
            "namespace".parse::<ContextSpec>().unwrap().resolve(&bare),
            ""
        );
    }
}
