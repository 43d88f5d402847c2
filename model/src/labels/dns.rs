//! Label sets of the DNS families: Hubble's `hubble_dns_queries_total` /
//! `hubble_dns_responses_total`, and `osprey_dns_latency_seconds`.

use prometheus_client::encoding::EncodeLabelSet;

use super::hubble::{ContextLabels, labels_with_context};

/// Labels of Hubble's DNS families. With context options, `source` is the
/// client and `destination` the server for queries and responses alike (as
/// Hubble inverts a response's flow).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DnsLabels {
    pub context: ContextLabels,
    pub rcode: String,
    pub qtypes: String,
    pub ips_returned: String,
}
labels_with_context!(DnsLabels { rcode => "rcode", qtypes => "qtypes", ips_returned => "ips_returned" });

/// `osprey_dns_latency_seconds`: by the answer's response code.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct RcodeLabels {
    pub rcode: String,
}
