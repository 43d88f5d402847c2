//! Label text from OTLP: attribute values, exemplars, bucket bounds.

use std::collections::BTreeMap;

use opentelemetry_proto::tonic::{
    common::v1::{AnyValue, any_value},
    metrics::v1::Exemplar as OtlpExemplar,
};

use super::names::label_name;
use super::text::Text;
use super::translate::Exemplar;

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

pub fn exemplar_value(e: &OtlpExemplar) -> f64 {
    use opentelemetry_proto::tonic::metrics::v1::exemplar::Value;
    match e.value {
        Some(Value::AsDouble(v)) => v,
        Some(Value::AsInt(v)) => v as f64,
        None => 0.0,
    }
}

pub fn exemplar(e: &OtlpExemplar) -> Exemplar<'_> {
    let mut labels: BTreeMap<Text<'_>, Text<'_>> = e
        .filtered_attributes
        .iter()
        .map(|a| (label_name(&a.key).into(), value_text(a.value.as_ref())))
        .collect();
    if !e.trace_id.is_empty() {
        labels.insert("trace_id".into(), hex(&e.trace_id).into());
    }
    if !e.span_id.is_empty() {
        labels.insert("span_id".into(), hex(&e.span_id).into());
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
pub fn value_string(v: Option<&AnyValue>) -> String {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => hex(b),
        Some(any_value::Value::ArrayValue(a)) => {
            let items: Vec<_> = a.values.iter().map(|v| value_string(Some(v))).collect();
            format!("[{}]", items.join(","))
        }
        Some(any_value::Value::KvlistValue(kv)) => {
            let items: Vec<_> = kv
                .values
                .iter()
                .map(|a| format!("{}:{}", a.key, value_string(a.value.as_ref())))
                .collect();
            format!("{{{}}}", items.join(","))
        }
        None => String::new(),
    }
}

/// An attribute value as a label value: a string value is borrowed.
pub fn value_text(v: Option<&AnyValue>) -> Text<'_> {
    match v.and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => Text::Borrowed(s),
        None => Text::Borrowed(""),
        Some(_) => value_string(v).into(),
    }
}
