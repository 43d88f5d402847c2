//! One WAL record on disk:
//!
//! ```text
//! len u32 LE | crc32 u32 LE | signal u8 | items u32 LE | unix_ms u64 LE | payload (len bytes)
//! ```
//!
//! The CRC (crc32fast, IEEE) covers everything after itself. A record whose
//! header or payload is cut short, or whose CRC does not match, ends the
//! segment: it is a torn tail, truncated when the WAL opens.

use std::io::{self, Read};

pub const HEADER: usize = 21;

/// Which OTLP signal a record holds (its payload is the request, protobuf).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Signal {
    Metrics = 1,
    Traces = 2,
    Logs = 3,
}

impl Signal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Metrics => "metrics",
            Self::Traces => "traces",
            Self::Logs => "logs",
        }
    }

    fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Self::Metrics),
            2 => Some(Self::Traces),
            3 => Some(Self::Logs),
            _ => None,
        }
    }
}

/// A queued request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub signal: Signal,
    /// Data points, spans or log records in the payload.
    pub items: u32,
    /// When the collector accepted it.
    pub unix_ms: u64,
    pub payload: bytes::Bytes,
}

impl Record {
    pub fn encoded_len(&self) -> u64 {
        (HEADER + self.payload.len()) as u64
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(HEADER + self.payload.len());
        body.extend_from_slice(&(self.payload.len() as u32).to_le_bytes());
        body.extend_from_slice(&[0; 4]);
        body.push(self.signal as u8);
        body.extend_from_slice(&self.items.to_le_bytes());
        body.extend_from_slice(&self.unix_ms.to_le_bytes());
        body.extend_from_slice(&self.payload);
        let crc = crc32fast::hash(&body[8..]);
        body[4..8].copy_from_slice(&crc.to_le_bytes());
        body
    }
}

/// What reading the next record found.
pub enum Next {
    Record(Record),
    /// A clean end of the segment.
    End,
    /// A cut-short or corrupt record: the segment's valid data ends here.
    Torn(&'static str),
}

/// Reads one record. `limit` is the largest payload accepted (a garbage
/// length must not allocate gigabytes).
pub fn read(r: &mut impl Read, limit: u32) -> io::Result<Next> {
    let mut header = [0u8; HEADER];
    match read_full(r, &mut header)? {
        0 => return Ok(Next::End),
        n if n < HEADER => return Ok(Next::Torn("short header")),
        _ => {}
    }
    let len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes"));
    let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    if len > limit {
        return Ok(Next::Torn("length beyond the record limit"));
    }
    let mut payload = vec![0u8; len as usize];
    if read_full(r, &mut payload)? < payload.len() {
        return Ok(Next::Torn("short payload"));
    }
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&header[8..]);
    hasher.update(&payload);
    if hasher.finalize() != crc {
        return Ok(Next::Torn("checksum mismatch"));
    }
    let Some(signal) = Signal::from_u8(header[8]) else {
        return Ok(Next::Torn("unknown signal"));
    };
    Ok(Next::Record(Record {
        signal,
        items: u32::from_le_bytes(header[9..13].try_into().expect("4 bytes")),
        unix_ms: u64::from_le_bytes(header[13..21].try_into().expect("8 bytes")),
        payload: payload.into(),
    }))
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(p: &[u8]) -> Record {
        Record {
            signal: Signal::Traces,
            items: 7,
            unix_ms: 1234,
            payload: bytes::Bytes::copy_from_slice(p),
        }
    }

    #[test]
    fn round_trip_and_every_cut_is_torn() {
        let r = rec(b"hello");
        let bytes = r.encode();
        match read(&mut bytes.as_slice(), 1 << 20).unwrap() {
            Next::Record(back) => assert_eq!(back, r),
            _ => panic!("not a record"),
        }
        for cut in 1..bytes.len() {
            assert!(
                matches!(read(&mut &bytes[..cut], 1 << 20).unwrap(), Next::Torn(_)),
                "cut {cut}"
            );
        }
        let mut flipped = bytes.clone();
        flipped[HEADER + 1] ^= 1;
        assert!(matches!(
            read(&mut flipped.as_slice(), 1 << 20).unwrap(),
            Next::Torn("checksum mismatch")
        ));
        assert!(matches!(read(&mut &[][..], 1 << 20).unwrap(), Next::End));
    }
}
