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
