//! HTTP/1.x read from the wire at the socket hooks: the kernel hands each
//! segment that starts a request or response to userspace ([`message`]
//! parses it, [`traceparent`] reads its W3C trace context), and the
//! [`tracker`] pairs requests with responses per connection into the
//! [`metrics`] families, each with the request's trace as its exemplar.
//! [`route`] turns paths into bounded `http_route` values; [`spans`] sends a
//! span per request.

pub mod message;
pub mod metrics;
pub mod route;
pub mod spans;
pub mod traceparent;
pub mod tracker;

use osprey_abi::{FlowKey, HTTP_PAYLOAD_MAX, HttpEvent};

/// An [`HttpEvent`] as the tracker keeps it: its captured bytes only. The
/// kernel sends each record cut after them (typically 100–300 bytes), and
/// decoded whole each would take the 1 KiB array again, in every batch
/// waiting for the tracker.
#[derive(Debug, Clone)]
pub struct HttpStart {
    /// CLOCK_MONOTONIC ns when the socket layer saw the segment.
    pub ts_ns: u64,
    /// Its flow, with `direction` and `cgroup_id` set.
    pub flow: FlowKey,
    /// The segment held more payload than was captured.
    pub cut: bool,
    pub payload: Box<[u8]>,
}

impl crate::kernel::ring::Record for HttpStart {
    fn decode(bytes: &[u8]) -> Option<Self> {
        use std::mem::offset_of;
        let fixed = offset_of!(HttpEvent, payload);
        if bytes.len() < fixed {
            return None;
        }
        let captured: u32 = field(bytes, offset_of!(HttpEvent, captured))?;
        let payload_len: u32 = field(bytes, offset_of!(HttpEvent, payload_len))?;
        let copied = (captured as usize)
            .min(HTTP_PAYLOAD_MAX)
            .min(bytes.len() - fixed);
        Some(HttpStart {
            ts_ns: field(bytes, offset_of!(HttpEvent, ts_ns))?,
            flow: field(bytes, offset_of!(HttpEvent, flow))?,
            cut: captured < payload_len,
            payload: bytes[fixed..fixed + copied].into(),
        })
    }
}

/// The plain-data field of type `F` at `offset` in `bytes`, if it is there.
fn field<F: aya::Pod>(bytes: &[u8], offset: usize) -> Option<F> {
    crate::kernel::ring::decode_pod(bytes.get(offset..)?, std::mem::size_of::<F>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::ring::Record;

    #[test]
    fn a_start_keeps_only_its_captured_bytes() {
        use std::mem::offset_of;
        let fixed = offset_of!(HttpEvent, payload);
        let mut bytes = vec![0u8; fixed + 5];
        let mut put = |at: usize, v: &[u8]| bytes[at..at + v.len()].copy_from_slice(v);
        put(offset_of!(HttpEvent, ts_ns), &7u64.to_ne_bytes());
        put(offset_of!(HttpEvent, payload_len), &900u32.to_ne_bytes());
        put(offset_of!(HttpEvent, captured), &5u32.to_ne_bytes());
        put(fixed, b"GET /");
        let got = HttpStart::decode(&bytes).unwrap();
        assert_eq!((got.ts_ns, got.cut), (7, true));
        assert_eq!(&*got.payload, b"GET /");
        // A record that claims more than it holds keeps what it holds.
        let at = offset_of!(HttpEvent, captured);
        bytes[at..at + 4].copy_from_slice(&64u32.to_ne_bytes());
        assert_eq!(&*HttpStart::decode(&bytes).unwrap().payload, b"GET /");
        assert!(HttpStart::decode(&bytes[..fixed - 1]).is_none());
    }
}
