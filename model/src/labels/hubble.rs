//! Label sets of the `hubble_*` flow families, as Hubble's metric handlers
//! have them: the context labels (`source` / `destination`, present only when
//! context options are configured) first, then the family's own.

use std::{fmt::Write as _, sync::Arc};

use prometheus_client::encoding::{
    EncodeLabel, EncodeLabelSet, EncodeLabelValue, LabelSetEncoder, LabelValueEncoder,
};

use super::flow::Protocol;

/// The `source` / `destination` labels a family carries when context options
/// are configured (absent otherwise, as in Hubble).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ContextLabels {
    /// Shared, not copied: a connection's labels go to several families.
    pub source: Option<Arc<str>>,
    pub destination: Option<Arc<str>>,
}

impl ContextLabels {
    /// Each configured end as `overflow`; none configured: unchanged (the
    /// family is bounded by its own labels then).
    pub fn overflow(&self) -> Self {
        let fold = |v: &Option<Arc<str>>| v.as_ref().map(|_| Arc::from(crate::budget::OVERFLOW));
        Self {
            source: fold(&self.source),
            destination: fold(&self.destination),
        }
    }

    pub fn is_overflow(&self) -> bool {
        [&self.source, &self.destination]
            .iter()
            .any(|v| v.as_deref() == Some(crate::budget::OVERFLOW))
    }

    /// Encodes the configured labels, in Hubble's order (before the family's own).
    pub fn encode(&self, encoder: &mut LabelSetEncoder) -> Result<(), std::fmt::Error> {
        if let Some(v) = &self.source {
            ("source", &**v).encode(encoder.encode_label())?;
        }
        if let Some(v) = &self.destination {
            ("destination", &**v).encode(encoder.encode_label())?;
        }
        Ok(())
    }
}

/// Implements `EncodeLabelSet` for a label struct with a `context:
/// ContextLabels` field followed by the listed fields (label name given).
macro_rules! labels_with_context {
    ($ty:ty { $($field:ident => $name:literal),* $(,)? }) => {
        impl ::prometheus_client::encoding::EncodeLabelSet for $ty {
            fn encode(
                &self,
                encoder: &mut ::prometheus_client::encoding::LabelSetEncoder,
            ) -> Result<(), std::fmt::Error> {
                use ::prometheus_client::encoding::EncodeLabel;
                self.context.encode(encoder)?;
                $( ($name, self.$field.clone()).encode(encoder.encode_label())?; )*
                Ok(())
            }
        }

        /// Past the series budget the context (the ends, which grow with
        /// the addresses and pods a node talks to) folds into `overflow`;
        /// the family's own labels stay.
        impl $crate::budget::Foldable for $ty {
            fn overflow(&self) -> Self {
                Self {
                    context: self.context.overflow(),
                    ..self.clone()
                }
            }
            fn is_overflow(&self) -> bool {
                self.context.is_overflow()
            }
        }
    };
}
pub(crate) use labels_with_context;

/// `hubble_drop_total` labels, as Hubble's drop handler has them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HubbleDropLabels {
    pub context: ContextLabels,
    pub reason: String,
    pub protocol: Protocol,
}
labels_with_context!(HubbleDropLabels { reason => "reason", protocol => "protocol" });

/// `hubble_flows_processed_total`: `type` is `Trace` or `Drop`, `subtype`
/// the observation point (`to-endpoint`, `from-endpoint`; empty for drops).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FlowsProcessedLabels {
    pub context: ContextLabels,
    pub protocol: Protocol,
    pub r#type: &'static str,
    pub subtype: &'static str,
    pub verdict: &'static str,
}
labels_with_context!(FlowsProcessedLabels { protocol => "protocol", r#type => "type", subtype => "subtype", verdict => "verdict" });

/// `hubble_icmp_total`: the address family (`IPv4` / `IPv6`) and Hubble's
/// name of the ICMP type (its number when Hubble has no name for it).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct IcmpLabels {
    pub context: ContextLabels,
    pub family: &'static str,
    pub r#type: String,
}
labels_with_context!(IcmpLabels { family => "family", r#type => "type" });

/// `hubble_tcp_flags_total`: the flag (`SYN`, `SYN-ACK`, `FIN`, `RST`) and
/// the address family.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TcpFlagLabels {
    pub context: ContextLabels,
    pub flag: &'static str,
    pub family: &'static str,
}
labels_with_context!(TcpFlagLabels { flag => "flag", family => "family" });

/// Where `hubble_lost_events_total` counts its losses, by Hubble's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LostEventsSource {
    /// In the kernel: a full map or ring buffer.
    PerfEventRingBuffer,
    /// In the channel from a ring buffer's reader to its tracker.
    ObserverEventsQueue,
    /// Records a live follower missed because it fell behind.
    HubbleRingBuffer,
}

impl EncodeLabelValue for LostEventsSource {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        encoder.write_str(match self {
            Self::PerfEventRingBuffer => "perf_event_ring_buffer",
            Self::ObserverEventsQueue => "observer_events_queue",
            Self::HubbleRingBuffer => "hubble_ring_buffer",
        })
    }
}

/// `hubble_lost_events_total`: where the events were lost.
#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
pub struct LostEventsLabels {
    pub source: LostEventsSource,
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::{
        encoding::text::encode,
        metrics::{counter::Counter, family::Family},
        registry::Registry,
    };

    fn exposition(labels: HubbleDropLabels) -> String {
        let mut registry = Registry::default();
        let family = Family::<HubbleDropLabels, Counter>::default();
        registry.register("hubble_drop", "Drops", family.clone());
        family.get_or_create(&labels).inc();
        let mut text = String::new();
        encode(&mut text, &registry).unwrap();
        text
    }

    #[test]
    fn context_labels_lead_and_are_absent_when_not_configured() {
        let drop = |context| HubbleDropLabels {
            context,
            reason: "NETFILTER_DROP".into(),
            protocol: Protocol::Udp,
        };
        let text = exposition(drop(ContextLabels::default()));
        assert!(
            text.contains("hubble_drop_total{reason=\"NETFILTER_DROP\",protocol=\"UDP\"} 1"),
            "{text}"
        );
        let text = exposition(drop(ContextLabels {
            source: Some("10.0.0.1".into()),
            destination: Some("shop/db".into()),
        }));
        assert!(
            text.contains("hubble_drop_total{source=\"10.0.0.1\",destination=\"shop/db\",reason=\"NETFILTER_DROP\",protocol=\"UDP\"} 1"),
            "{text}"
        );
    }
}
