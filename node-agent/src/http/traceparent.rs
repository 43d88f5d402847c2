//! The W3C Trace Context `traceparent` header
//! (<https://www.w3.org/TR/trace-context/#traceparent-header>):
//! `version-traceid-parentid-flags`, lowercase hex.

use std::fmt;

/// A valid `traceparent`: ids as the header carries them (lowercase hex).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceParent {
    pub trace_id: [u8; 16],
    pub parent_id: [u8; 8],
    pub flags: u8,
}

/// Why a `traceparent` value was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("not version-traceid-parentid-flags in lowercase hex")]
    Format,
    #[error("version ff is forbidden")]
    Version,
    #[error("an all-zero trace id or parent id")]
    ZeroId,
}

impl TraceParent {
    /// Parses a header value as the specification says: version 00 is exactly
    /// 55 characters; a later version may append fields after a `-`, which
    /// are ignored; uppercase hex, version `ff` and all-zero ids are invalid.
    pub fn parse(value: &[u8]) -> Result<Self, Invalid> {
        let value = value.trim_ascii();
        if value.len() < 55 || value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
            return Err(Invalid::Format);
        }
        let version = hex::<1>(&value[..2])?[0];
        if version == 0xff {
            return Err(Invalid::Version);
        }
        if (version == 0 && value.len() != 55) || (value.len() > 55 && value[55] != b'-') {
            return Err(Invalid::Format);
        }
        let trace_id = hex::<16>(&value[3..35])?;
        let parent_id = hex::<8>(&value[36..52])?;
        let flags = hex::<1>(&value[53..55])?[0];
        if trace_id == [0; 16] || parent_id == [0; 8] {
            return Err(Invalid::ZeroId);
        }
        Ok(Self {
            trace_id,
            parent_id,
            flags,
        })
    }

    /// Whether the caller sampled (recorded) the trace.
    pub fn sampled(&self) -> bool {
        self.flags & 1 != 0
    }
}

/// `N` bytes from `2N` lowercase hex digits.
fn hex<const N: usize>(digits: &[u8]) -> Result<[u8; N], Invalid> {
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Ok(c - b'0'),
        b'a'..=b'f' => Ok(c - b'a' + 10),
        _ => Err(Invalid::Format),
    };
    let mut out = [0u8; N];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = nibble(pair[0])? << 4 | nibble(pair[1])?;
    }
    Ok(out)
}

/// Lowercase hex of an id, as exemplars and spans carry it.
pub struct Hex<'a>(pub &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_specifications_example_parses() {
        let tp = TraceParent::parse(EXAMPLE).unwrap();
        assert_eq!(
            Hex(&tp.trace_id).to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(Hex(&tp.parent_id).to_string(), "00f067aa0ba902b7");
        assert!(tp.sampled());
        // Surrounding whitespace is not part of the value.
        assert_eq!(
            TraceParent::parse(b" 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00 ")
                .map(|t| t.sampled()),
            Ok(false)
        );
    }

    #[test]
    fn invalid_values_are_rejected_as_the_specification_says() {
        let cases: &[(&[u8], Invalid)] = &[
            (
                b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                Invalid::Format,
            ),
            (
                b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                Invalid::Version,
            ),
            (
                b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                Invalid::ZeroId,
            ),
            (
                b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                Invalid::ZeroId,
            ),
            (
                b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
                Invalid::Format,
            ),
            (
                b"00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
                Invalid::Format,
            ),
            (
                b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                Invalid::Format,
            ),
            (
                b"0g-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                Invalid::Format,
            ),
            (b"", Invalid::Format),
        ];
        for (value, want) in cases {
            assert_eq!(
                TraceParent::parse(value),
                Err(*want),
                "{}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn a_later_version_may_carry_more_fields() {
        let v = b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future";
        assert!(TraceParent::parse(v).is_ok());
        let v = b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x";
        assert_eq!(TraceParent::parse(v), Err(Invalid::Format));
    }
}
