//! Label text from OTLP: attribute values, exemplars, bucket bounds.

use std::collections::BTreeMap;

use super::names::label_name;
use super::text::Text;
use super::translate::Exemplar;
use super::view::{AnyValue, Exemplar as OtlpExemplar};

pub fn le_string(v: f64) -> String {
    if v == f64::INFINITY {
        "+Inf".to_owned()
    } else {
        let s = format!("{v}");
        if s.contains('.') || s.contains('e') || s.contains("inf") || s.contains("NaN") {
            s
        } else {
            format!("{s}.0")
        }
    }
}

pub fn exemplar_value(e: &OtlpExemplar<'_>) -> f64 {
    e.value.map_or(0.0, |v| v.as_f64())
}

pub fn exemplar<'a>(e: &'a OtlpExemplar<'a>) -> Exemplar<'a> {
    let mut labels: BTreeMap<Text<'a>, Text<'a>> = e
        .filtered_attributes
        .iter()
        .map(|a| (label_name(a.key).into(), value_text(a.value.as_ref())))
        .collect();
    if !e.trace_id.is_empty() {
        labels.insert("trace_id".into(), hex(e.trace_id).into());
    }
    if !e.span_id.is_empty() {
        labels.insert("span_id".into(), hex(e.span_id).into());
    }
    Exemplar {
        labels: labels.into_iter().collect(),
        value: exemplar_value(e),
        timestamp_ms: (e.time_unix_nano / 1_000_000) as i64,
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// An attribute value as a label value (arrays and maps as JSON-ish text).
pub fn value_string(v: Option<&AnyValue<'_>>) -> String {
    match v {
        Some(AnyValue::String(s)) => (*s).to_owned(),
        Some(AnyValue::Bool(b)) => b.to_string(),
        Some(AnyValue::Int(i)) => i.to_string(),
        Some(AnyValue::Double(d)) => d.to_string(),
        Some(AnyValue::Bytes(b)) => hex(b),
        Some(AnyValue::Array(a)) => {
            let items: Vec<_> = a.iter().map(|v| value_string(v.as_ref())).collect();
            format!("[{}]", items.join(","))
        }
        Some(AnyValue::Kvlist(kv)) => {
            let items: Vec<_> = kv
                .iter()
                .map(|a| format!("{}:{}", a.key, value_string(a.value.as_ref())))
                .collect();
            format!("{{{}}}", items.join(","))
        }
        None | Some(AnyValue::Empty) => String::new(),
    }
}

/// An attribute value as a label value: a string value is borrowed.
pub fn value_text<'a>(v: Option<&AnyValue<'a>>) -> Text<'a> {
    match v {
        Some(AnyValue::String(s)) => Text::Borrowed(s),
        None | Some(AnyValue::Empty) => Text::Borrowed(""),
        Some(_) => value_string(v).into(),
    }
}
