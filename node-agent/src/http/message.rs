//! The HTTP/1.x starts in one captured segment, parsed with `httparse`.
//!
//! A segment the kernel captured begins with a request or status line. Its
//! header block is parsed; when it ends inside the segment and its body
//! length is known (`Content-Length`, or none on a request), a pipelined
//! start right after the body is parsed too. What cannot be parsed is named
//! by a reason (`osprey_http_unparsed_total{reason}`) and never attributed
//! to another request:
//! - `malformed`: not HTTP/1.x after all (garbage after a method token,
//!   binary data), nothing is taken from the segment;
//! - `headers_truncated`: the header block is longer than the capture
//!   (`http_capture_bytes`); the start counts, with the headers that fit;
//! - `headers_split`: the segment ends inside the header block (the rest is
//!   in a later segment, which the kernel does not capture); the start
//!   counts, with the headers the segment holds;
//! - `invalid_traceparent`: a `traceparent` the W3C rules reject; the request
//!   counts, without a trace.

use std::mem::MaybeUninit;

use httparse::{Header, ParserConfig, Status};

use super::traceparent::TraceParent;

/// Headers parsed per start; more is `malformed`.
const MAX_HEADERS: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, as OpenTelemetry names it (`_OTHER` past the known ones).
    pub method: &'static str,
    /// The target's path (without the query).
    pub path: String,
    pub trace: Trace,
    /// `tracestate` (with a valid traceparent), kept opaque.
    pub tracestate: Option<String>,
}

/// The request's W3C trace context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trace {
    None,
    Parent(TraceParent),
    /// A traceparent the W3C rules reject, or several of them.
    Invalid,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    Request(Request),
    Response(Response),
}

/// The starts of one segment and what could not be parsed in it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub starts: Vec<Start>,
    pub unparsed: Vec<&'static str>,
}

/// Parses `captured` (the segment's first bytes); `truncated` when the
/// segment holds more than was captured.
pub fn parse(captured: &[u8], truncated: bool) -> Segment {
    let mut out = Segment::default();
    let mut rest = captured;
    while !rest.is_empty() {
        match one(rest) {
            One::Complete { start, len } => {
                out.starts.push(start);
                match len {
                    Some(len) if len < rest.len() && looks_like_start(&rest[len..]) => {
                        rest = &rest[len..]
                    }
                    _ => break,
                }
            }
            One::Partial(start) => {
                out.starts.push(start);
                out.unparsed.push(if truncated {
                    "headers_truncated"
                } else {
                    "headers_split"
                });
                break;
            }
            One::Malformed => {
                out.unparsed.push("malformed");
                break;
            }
            // Not even the request or status line is whole.
            One::LineCut => {
                out.unparsed.push(if truncated {
                    "headers_truncated"
                } else {
                    "headers_split"
                });
                break;
            }
        }
    }
    for s in &out.starts {
        if let Start::Request(r) = s
            && r.trace == Trace::Invalid
        {
            out.unparsed.push("invalid_traceparent");
        }
    }
    out
}

enum One {
    /// A start whose header block ended; `len` = header block + body, when known.
    Complete {
        start: Start,
        len: Option<usize>,
    },
    /// A start whose header block runs past the bytes at hand.
    Partial(Start),
    LineCut,
    Malformed,
}

fn one(bytes: &[u8]) -> One {
    match header_block(bytes) {
        Ok((start, Some(len))) => One::Complete { start, len },
        Ok((start, None)) => One::Partial(start),
        Err(Cut) => One::LineCut,
        Err(Bad) => One::Malformed,
    }
}

/// The start at the beginning of `bytes`, and the length of it with its
/// body when its header block ends there (None: it does not; Some(None):
/// the body length is unknown).
#[allow(clippy::type_complexity)]
fn header_block(bytes: &[u8]) -> Result<(Start, Option<Option<usize>>), Unparsable> {
    let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
    match parse_head(bytes, &mut headers).map_err(|()| Bad)? {
        (start, Status::Complete(head), body) => Ok((start, Some(body.map(|b| head + b)))),
        (_, Status::Partial, _) => {
            // Parse the complete lines only, as if the block ended there.
            let Some(end) = bytes.windows(2).rposition(|w| w == b"\r\n") else {
                return Err(Cut);
            };
            let mut cut = Vec::with_capacity(end + 4);
            cut.extend_from_slice(&bytes[..end + 2]);
            cut.extend_from_slice(b"\r\n");
            let mut headers = [const { MaybeUninit::uninit() }; MAX_HEADERS];
            match parse_head(&cut, &mut headers).map_err(|()| Bad)? {
                (start, Status::Complete(_), _) => Ok((start, None)),
                _ => Err(Bad),
            }
        }
    }
}

enum Unparsable {
    /// The first line is not whole.
    Cut,
    Bad,
}
use Unparsable::{Bad, Cut};

/// One request or response head, and the length of its body if known.
/// `headers` is left uninitialised (no 2 KiB of zeroes per start); the
/// parser hands back the part it filled.
fn parse_head<'b>(
    bytes: &'b [u8],
    headers: &mut [MaybeUninit<Header<'b>>],
) -> Result<(Start, Status<usize>, Option<usize>), ()> {
    let config = ParserConfig::default();
    if bytes.starts_with(b"HTTP/") {
        let mut res = httparse::Response::new(&mut []);
        let status = config
            .parse_response_with_uninit_headers(&mut res, bytes, headers)
            .map_err(|_| ())?;
        let code = res.code.unwrap_or(0);
        let chunked = has_chunked(res.headers);
        let body = if chunked {
            None
        } else {
            content_length(res.headers)
        };
        Ok((Start::Response(Response { status: code }), status, body))
    } else {
        let mut req = httparse::Request::new(&mut []);
        let status = config
            .parse_request_with_uninit_headers(&mut req, bytes, headers)
            .map_err(|_| ())?;
        let (Some(method), Some(target)) = (req.method, req.path) else {
            return Err(());
        };
        let mut parents = req
            .headers
            .iter()
            .filter(|h| h.name.eq_ignore_ascii_case("traceparent"));
        let trace = match (parents.next(), parents.next()) {
            (None, _) => Trace::None,
            (Some(one), None) => {
                TraceParent::parse(one.value).map_or(Trace::Invalid, Trace::Parent)
            }
            // Several: none of them is the caller's.
            (Some(_), Some(_)) => Trace::Invalid,
        };
        let tracestate = matches!(trace, Trace::Parent(_))
            .then(|| {
                req.headers
                    .iter()
                    .find(|h| h.name.eq_ignore_ascii_case("tracestate"))
                    .map(|h| String::from_utf8_lossy(h.value).into_owned())
            })
            .flatten();
        let body = if has_chunked(req.headers) {
            None
        } else {
            Some(content_length(req.headers).unwrap_or(0))
        };
        let path = target.split('?').next().unwrap_or_default().to_owned();
        Ok((
            Start::Request(Request {
                method: method_name(method),
                path,
                trace,
                tracestate,
            }),
            status,
            body,
        ))
    }
}

fn content_length(headers: &[Header]) -> Option<usize> {
    let h = headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-length"))?;
    std::str::from_utf8(h.value).ok()?.trim().parse().ok()
}

fn has_chunked(headers: &[Header]) -> bool {
    headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("transfer-encoding")
            && String::from_utf8_lossy(h.value)
                .to_ascii_lowercase()
                .contains("chunked")
    })
}

/// Whether `bytes` begin like a request or status line (what the kernel
/// looks for): the next pipelined start, or the rest of a body.
fn looks_like_start(bytes: &[u8]) -> bool {
    bytes.starts_with(b"HTTP/1.")
        || METHODS
            .iter()
            .any(|m| bytes.starts_with(m.as_bytes()) && bytes.get(m.len()) == Some(&b' '))
}

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// The method as OpenTelemetry's `http.request.method` has it.
fn method_name(method: &str) -> &'static str {
    METHODS
        .iter()
        .find(|m| **m == method)
        .copied()
        .unwrap_or("_OTHER")
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn request(s: &Segment, i: usize) -> &Request {
        match &s.starts[i] {
            Start::Request(r) => r,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_request_with_traceparent_and_a_response() {
        let raw = format!(
            "GET /users/42?x=1 HTTP/1.1\r\nHost: b\r\nTraceParent: {TP}\r\ntracestate: k=v\r\n\r\n"
        );
        let s = parse(raw.as_bytes(), false);
        assert!(s.unparsed.is_empty(), "{s:?}");
        let r = request(&s, 0);
        assert_eq!((r.method, r.path.as_str()), ("GET", "/users/42"));
        let Trace::Parent(tp) = r.trace else { panic!() };
        assert_eq!(tp.flags, 1);
        assert_eq!(r.tracestate.as_deref(), Some("k=v"));
        let s = parse(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
            false,
        );
        assert_eq!(s.starts, vec![Start::Response(Response { status: 503 })]);
    }

    #[test]
    fn pipelined_starts_in_one_segment_are_all_parsed() {
        let raw = b"POST /a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET /b HTTP/1.1\r\n\r\nPUT /c HTTP/1.1\r\n\r\n";
        let s = parse(raw, false);
        let got: Vec<_> = (0..s.starts.len())
            .map(|i| (request(&s, i).method, request(&s, i).path.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("POST", "/a".into()),
                ("GET", "/b".into()),
                ("PUT", "/c".into())
            ]
        );
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n";
        assert_eq!(parse(raw, false).starts.len(), 2);
        // A body that is not followed by a start ends the segment quietly.
        let raw = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokmore body bytes";
        assert_eq!(
            parse(raw, false),
            Segment {
                starts: vec![Start::Response(Response { status: 200 })],
                unparsed: vec![],
            }
        );
    }

    #[test]
    fn a_split_or_truncated_header_block_counts_with_what_it_holds() {
        let raw = format!("GET /slow HTTP/1.1\r\ntraceparent: {TP}\r\nAccept: text/ht");
        let s = parse(raw.as_bytes(), false);
        assert_eq!(s.unparsed, ["headers_split"]);
        assert!(matches!(request(&s, 0).trace, Trace::Parent(_)));
        let s = parse(raw.as_bytes(), true);
        assert_eq!(s.unparsed, ["headers_truncated"]);
        assert_eq!(request(&s, 0).path, "/slow");
    }

    /// The bad-input table: each is counted under its reason and yields no
    /// start that could be taken for another request's.
    #[test]
    fn bad_input_is_named_never_misattributed() {
        let two = format!("GET / HTTP/1.1\r\ntraceparent: {TP}\r\ntraceparent: {TP}\r\n\r\n");
        let cases: &[(&[u8], &[&str], usize)] = &[
            (b"GET \x00\x01\x02\x03 garbage\r\n\r\n", &["malformed"], 0),
            (b"GET /\x7f HTTP/1.1\r\n\r\n", &["malformed"], 0),
            (b"POST\x00\xff\xfe binary on port 80", &["malformed"], 0),
            (b"HTTP/1.1 abc OK\r\n\r\n", &["malformed"], 0),
            (
                b"GET / HTTP/1.1\r\ntraceparent: 00-xyz-01\r\n\r\n",
                &["invalid_traceparent"],
                1,
            ),
            (two.as_bytes(), &["invalid_traceparent"], 1),
            (b"GET / HTTP/1.1", &["headers_split"], 0),
        ];
        for (raw, reasons, starts) in cases {
            let s = parse(raw, false);
            assert_eq!(&s.unparsed, reasons, "{}", String::from_utf8_lossy(raw));
            assert_eq!(s.starts.len(), *starts, "{}", String::from_utf8_lossy(raw));
            for st in &s.starts {
                if let Start::Request(r) = st {
                    assert_eq!(r.trace, Trace::Invalid);
                }
            }
        }
    }

    #[test]
    fn unknown_methods_are_other() {
        let s = parse(b"GET / HTTP/1.1\r\n\r\nBREW /pot HTTP/1.1\r\n\r\n", false);
        // BREW does not look like a start: the rest is taken for a body.
        assert_eq!(s.starts.len(), 1);
        assert_eq!(method_name("BREW"), "_OTHER");
    }
}
