//! Tracepoint formats from tracefs (`events/<category>/<name>/format`).

use std::{
    collections::{BTreeMap, HashMap},
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
pub enum TracefsError {
    #[error("cannot read {path} (is tracefs mounted at /sys/kernel/tracing?)")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("tracepoint {tracepoint} has no field {field}")]
    MissingField { tracepoint: String, field: String },
}

/// A field of a tracepoint record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Field {
    pub offset: u32,
    pub size: u32,
}

/// The parsed `format` file of one tracepoint.
#[derive(Debug, Clone)]
pub struct TracepointFormat {
    pub name: String,
    fields: HashMap<String, Field>,
    print_fmt: String,
}

const TRACEFS_ROOTS: [&str; 2] = ["/sys/kernel/tracing", "/sys/kernel/debug/tracing"];

impl TracepointFormat {
    /// Reads `events/<category>/<name>/format` from the first tracefs mount found.
    pub fn load(category: &str, name: &str) -> Result<Self, TracefsError> {
        let rel = format!("events/{category}/{name}/format");
        let path = TRACEFS_ROOTS
            .iter()
            .map(|root| Path::new(root).join(&rel))
            .find(|p| p.exists())
            .unwrap_or_else(|| Path::new(TRACEFS_ROOTS[0]).join(&rel));
        let text =
            std::fs::read_to_string(&path).map_err(|source| TracefsError::Read { path, source })?;
        Ok(Self::parse(&format!("{category}/{name}"), &text))
    }

    pub fn parse(name: &str, text: &str) -> Self {
        let mut fields = HashMap::new();
        let mut print_fmt = String::new();
        for line in text.lines() {
            let line = line.trim();
            if let Some(rest) = line.strip_prefix("print fmt:") {
                print_fmt = rest.trim().to_owned();
                continue;
            }
            let Some(rest) = line.strip_prefix("field:") else {
                continue;
            };
            // "field:TYPE NAME[N];\toffset:O;\tsize:S;\tsigned:X;"
            let mut parts = rest.split(';').map(str::trim);
            let Some(decl) = parts.next() else { continue };
            let Some(field_name) = decl.split_whitespace().last() else {
                continue;
            };
            let field_name = field_name.split('[').next().unwrap_or(field_name);
            let mut field = Field { offset: 0, size: 0 };
            for part in parts {
                if let Some(v) = part.strip_prefix("offset:") {
                    field.offset = v.parse().unwrap_or(0);
                } else if let Some(v) = part.strip_prefix("size:") {
                    field.size = v.parse().unwrap_or(0);
                }
            }
            fields.insert(field_name.to_owned(), field);
        }
        Self {
            name: name.to_owned(),
            fields,
            print_fmt,
        }
    }

    /// The field's offset, checking that its size is `size` bytes.
    pub fn offset(&self, field: &str, size: u32) -> Result<u32, TracefsError> {
        match self.fields.get(field) {
            Some(f) if f.size == size => Ok(f.offset),
            _ => Err(TracefsError::MissingField {
                tracepoint: self.name.clone(),
                field: format!("{field} ({size} bytes)"),
            }),
        }
    }

    /// Offset of `field`, a char array of at least `min_size` bytes (its
    /// length differs between kernel versions, like `rwbs`).
    pub fn array_offset(&self, field: &str, min_size: u32) -> Result<u32, TracefsError> {
        match self.fields.get(field) {
            Some(f) if f.size >= min_size => Ok(f.offset),
            _ => Err(TracefsError::MissingField {
                tracepoint: self.name.clone(),
                field: format!("{field} (at least {min_size} bytes)"),
            }),
        }
    }

    /// The value → name table of `__print_symbolic(REC->field, { v, "NAME" }, …)`.
    pub fn symbols(&self, field: &str) -> BTreeMap<u32, String> {
        let marker = format!("__print_symbolic(REC->{field},");
        let Some(start) = self.print_fmt.find(&marker) else {
            return BTreeMap::new();
        };
        let mut out = BTreeMap::new();
        let rest = &self.print_fmt[start + marker.len()..];
        for entry in rest.split('{').skip(1) {
            let Some((body, after)) = entry.split_once('}') else {
                break;
            };
            if let Some((value, name)) = body.split_once(',')
                && let Ok(v) = value.trim().parse::<u32>()
            {
                out.insert(v, name.trim().trim_matches('"').to_owned());
            }
            // `{ v, "NAME" }, {` continues the table; `{ v, "NAME" })` ends it.
            if after.trim_start().starts_with(')') {
                break;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kfree_skb_fields_and_reason_symbols() {
        let f = TracepointFormat::parse("skb/kfree_skb", include_str!("kfree_skb.format"));
        assert_eq!(f.offset("skbaddr", 8).unwrap(), 8);
        assert_eq!(f.offset("protocol", 2).unwrap(), 32);
        assert_eq!(f.offset("reason", 4).unwrap(), 36);
        assert!(f.offset("reason", 8).is_err(), "a size mismatch is refused");
        let symbols = f.symbols("reason");
        assert_eq!(symbols.get(&12).map(String::as_str), Some("NETFILTER_DROP"));
        assert_eq!(symbols.get(&2).map(String::as_str), Some("NOT_SPECIFIED"));
    }

    #[test]
    fn parses_array_fields_of_tcp_retransmit_skb() {
        let f = TracepointFormat::parse(
            "tcp/tcp_retransmit_skb",
            include_str!("tcp_retransmit_skb.format"),
        );
        assert_eq!(f.offset("saddr", 4).unwrap(), 34);
        assert_eq!(f.offset("daddr_v6", 16).unwrap(), 58);
        assert_eq!(f.offset("sport", 2).unwrap(), 28);
        assert_eq!(f.offset("family", 2).unwrap(), 32);
    }
}
