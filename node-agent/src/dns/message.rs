//! A captured DNS packet, parsed.

use osprey_abi::{DIR_EGRESS, DIR_INGRESS, DnsEvent, PROTO_TCP};
use simple_dns::{Packet, PacketFlag, QTYPE, RCODE, rdata::RData};

use std::net::IpAddr;

use crate::flows::enrich::address;

/// What the tracker needs of one DNS packet seen by a client socket.
#[derive(Debug, Clone, PartialEq)]
pub struct DnsMessage {
    pub ts_ns: u64,
    /// "UDP" or "TCP".
    pub transport: &'static str,
    pub client_ip: IpAddr,
    pub client_port: u16,
    pub server_ip: IpAddr,
    pub id: u16,
    pub response: bool,
    pub qname: String,
    pub qtype: String,
    pub rcode: Option<&'static str>,
    pub ips: Vec<String>,
}

/// Hubble's names for response codes.
pub fn rcode_name(rcode: RCODE) -> &'static str {
    match rcode {
        RCODE::NoError => "No Error",
        RCODE::FormatError => "Format Error",
        RCODE::ServerFailure => "Server Failure",
        RCODE::NameError => "Non-Existent Domain",
        RCODE::NotImplemented => "Not Implemented",
        RCODE::Refused => "Query Refused",
        _ => "Other",
    }
}

fn qtype_name(q: QTYPE) -> String {
    match q {
        QTYPE::TYPE(t) => format!("{t:?}"),
        other => format!("{other:?}"),
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum Skip {
    /// A query arriving at a server or an answer leaving one: the client's
    /// socket sees the same exchange, and that is where it is counted.
    ServerSide,
    /// Not a DNS message (or truncated before the question).
    Malformed,
    /// A TCP segment that does not start a DNS message (the rest of a long
    /// one, or a second message in the same segment is not looked for).
    Continuation,
}

impl DnsMessage {
    pub fn from_event(event: &DnsEvent) -> Result<Self, Skip> {
        let f = &event.flow;
        let (src, dst) = (
            address(f.family, &f.src_addr),
            address(f.family, &f.dst_addr),
        );
        let (client_ip, client_port, server_ip) = match (f.direction, f.dst_port, f.src_port) {
            (DIR_EGRESS, 53, _) => (src, f.src_port, dst),
            (DIR_INGRESS, _, 53) => (dst, f.dst_port, src),
            _ => return Err(Skip::ServerSide),
        };
        let captured = &event.payload[..(event.captured as usize).min(event.payload.len())];
        let tcp = event.flow.protocol == PROTO_TCP;
        let message = if tcp {
            // RFC 1035 4.2.2: each message is preceded by its 2-byte length.
            match captured {
                [hi, lo, rest @ ..] if u16::from_be_bytes([*hi, *lo]) >= 12 => rest,
                _ => return Err(Skip::Continuation),
            }
        } else {
            captured
        };
        let cut = (event.payload_len as usize) > captured.len();
        let question_only;
        let packet = match Packet::parse(message) {
            Ok(packet) => packet,
            // A message longer than the copy: its records run past the
            // end, but its header and question are whole. Read those.
            Err(_) if cut && message.len() >= 12 => {
                question_only = header_and_question(message);
                Packet::parse(&question_only).map_err(|_| Skip::Malformed)?
            }
            Err(_) if tcp => return Err(Skip::Continuation),
            Err(_) => return Err(Skip::Malformed),
        };
        let question = packet.questions.first().ok_or(Skip::Malformed)?;
        let response = packet.has_flags(PacketFlag::RESPONSE);
        let ips = packet
            .answers
            .iter()
            .filter_map(|rr| match &rr.rdata {
                RData::A(a) => Some(std::net::Ipv4Addr::from(a.address).to_string()),
                RData::AAAA(a) => Some(std::net::Ipv6Addr::from(a.address).to_string()),
                _ => None,
            })
            .collect();
        Ok(Self {
            ts_ns: event.ts_ns,
            transport: if tcp { "TCP" } else { "UDP" },
            client_ip,
            client_port,
            server_ip,
            id: packet.id(),
            response,
            qname: question.qname.to_string(),
            qtype: qtype_name(question.qtype),
            rcode: response.then(|| rcode_name(packet.rcode())),
            ips,
        })
    }
}

/// A copy of `message` that claims only its question: the answer,
/// authority and additional counts zeroed, so a parser stops after the
/// question and ignores the cut records behind it.
fn header_and_question(message: &[u8]) -> Vec<u8> {
    let mut copy = message.to_vec();
    copy[6..12].fill(0);
    copy
}

#[cfg(test)]
mod tests {
    use super::*;
    use osprey_abi::{DNS_PAYLOAD_MAX, FlowKey, PROTO_UDP};
    use simple_dns::{CLASS, Name, Question, ResourceRecord, TYPE, rdata};

    /// A query for `name` of type `qtype`.
    fn query(id: u16, name: &'static str, qtype: TYPE) -> Packet<'static> {
        let mut query = Packet::new_query(id);
        query.questions.push(Question::new(
            Name::new_unchecked(name),
            qtype.into(),
            CLASS::IN.into(),
            false,
        ));
        query
    }

    fn event(direction: u8, sport: u16, dport: u16, packet: &Packet) -> DnsEvent {
        let bytes = packet.build_bytes_vec().unwrap();
        let mut payload = [0u8; DNS_PAYLOAD_MAX];
        payload[..bytes.len()].copy_from_slice(&bytes);
        let (src, dst) = if direction == DIR_EGRESS {
            ([10, 0, 0, 1], [10, 0, 0, 53])
        } else {
            ([10, 0, 0, 53], [10, 0, 0, 1])
        };
        DnsEvent {
            ts_ns: 1,
            flow: FlowKey {
                direction,
                ..crate::test_support::v4_flow(src, sport, dst, dport, PROTO_UDP)
            },
            payload_len: bytes.len() as u32,
            captured: bytes.len() as u32,
            payload,
        }
    }

    #[test]
    fn tcp_messages_carry_a_length_prefix_and_continuations_are_skipped() {
        let query = query(0x4321, "tcp.osprey.test", TYPE::AAAA);
        let bytes = query.build_bytes_vec().unwrap();
        let mut framed = (bytes.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&bytes);
        let mut e = event(DIR_EGRESS, 40001, 53, &query);
        e.flow.protocol = osprey_abi::PROTO_TCP;
        e.payload[..framed.len()].copy_from_slice(&framed);
        (e.payload_len, e.captured) = (framed.len() as u32, framed.len() as u32);
        let q = DnsMessage::from_event(&e).unwrap();
        assert_eq!(
            (q.transport, q.id, q.qname.as_str(), q.qtype.as_str()),
            ("TCP", 0x4321, "tcp.osprey.test", "AAAA")
        );
        // The middle of a long message: no length prefix, not a DNS header.
        e.payload[..4].copy_from_slice(&[0, 3, 0xff, 0xff]);
        assert_eq!(DnsMessage::from_event(&e), Err(Skip::Continuation));
    }

    #[test]
    fn parses_client_queries_and_answers_and_skips_the_server_side() {
        let query = query(0x1234, "web.osprey.test", TYPE::A);
        let q = DnsMessage::from_event(&event(DIR_EGRESS, 40000, 53, &query)).unwrap();
        assert_eq!(
            (q.id, q.response, q.qname.as_str(), q.qtype.as_str()),
            (0x1234, false, "web.osprey.test", "A")
        );
        assert_eq!(
            (
                q.client_ip.to_string(),
                q.client_port,
                q.server_ip.to_string()
            ),
            ("10.0.0.1".to_owned(), 40000, "10.0.0.53".to_owned())
        );

        let mut reply = query.into_reply();
        reply.answers.push(ResourceRecord::new(
            Name::new_unchecked("web.osprey.test"),
            CLASS::IN,
            60,
            RData::A(rdata::A {
                address: u32::from(std::net::Ipv4Addr::new(10, 9, 9, 9)),
            }),
        ));
        let r = DnsMessage::from_event(&event(DIR_INGRESS, 53, 40000, &reply)).unwrap();
        assert_eq!(
            (r.response, r.rcode, r.ips.clone()),
            (true, Some("No Error"), vec!["10.9.9.9".to_owned()])
        );
        assert_eq!(r.client_port, 40000);

        assert_eq!(
            DnsMessage::from_event(&event(DIR_INGRESS, 40000, 53, &reply)),
            Err(Skip::ServerSide)
        );
        let mut garbage = event(DIR_EGRESS, 40000, 53, &Packet::new_query(1));
        garbage.captured = 3;
        assert_eq!(DnsMessage::from_event(&garbage), Err(Skip::Malformed));
    }

    /// An answer of 60 A records (~1 KiB, past the classic 512 bytes) is
    /// read whole; cut short of its records (a longer message than the
    /// copy), its question and code still are.
    #[test]
    fn long_answers_are_read_and_cut_ones_keep_their_question() {
        let mut reply = query(0x5151, "many.osprey.test", TYPE::A).into_reply();
        for i in 0..60u8 {
            reply.answers.push(ResourceRecord::new(
                Name::new_unchecked("many.osprey.test"),
                CLASS::IN,
                60,
                RData::A(rdata::A {
                    address: u32::from(std::net::Ipv4Addr::new(10, 8, 0, i)),
                }),
            ));
        }
        let mut e = event(DIR_INGRESS, 53, 40000, &reply);
        assert!(e.payload_len > 512, "{}", e.payload_len);
        let r = DnsMessage::from_event(&e).unwrap();
        assert_eq!((r.id, r.rcode, r.ips.len()), (0x5151, Some("No Error"), 60));

        e.captured = 100;
        let r = DnsMessage::from_event(&e).unwrap();
        assert_eq!(
            (r.id, r.response, r.rcode, r.qname.as_str(), r.ips.len()),
            (0x5151, true, Some("No Error"), "many.osprey.test", 0)
        );
        // Cut inside the question: nothing to read.
        e.captured = 20;
        assert_eq!(DnsMessage::from_event(&e), Err(Skip::Malformed));
    }
}
