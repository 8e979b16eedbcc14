//! The protobuf encoding of the one OTLP message edgebind sends, `ExportTraceServiceRequest`,
//! written by hand: the official `opentelemetry-proto` crate (0.33) gives its trace messages
//! only with its `trace` feature, which brings the `opentelemetry` and `opentelemetry_sdk`
//! crates, plus prost and its derive macro; that is a lot of build for five messages of a dozen
//! fields, all of them encoded here.
//!
//! Field numbers and types are those of open-telemetry/opentelemetry-proto (commit
//! 05e412fbc8a6d4a5af55ddc1b56c7d09f0ffcba9): `collector/trace/v1/trace_service.proto`,
//! `trace/v1/trace.proto`, `resource/v1/resource.proto`, `common/v1/common.proto`. The test
//! suite decodes this output with the official Python messages (tests/python/test_otlp_export.py).

use super::trace::{Span, SpanStatus, Value};

/// Protobuf wire types (protobuf encoding guide, "Message Structure").
const VARINT: u64 = 0;
const I64: u64 = 1;
const LEN: u64 = 2;

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn tag(out: &mut Vec<u8>, field: u64, wire: u64) {
    varint(out, (field << 3) | wire);
}

fn bytes_field(out: &mut Vec<u8>, field: u64, b: &[u8]) {
    tag(out, field, LEN);
    varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

/// A nested message: its body is built first, then written with its length.
fn message(out: &mut Vec<u8>, field: u64, build: impl FnOnce(&mut Vec<u8>)) {
    let mut body = Vec::new();
    build(&mut body);
    bytes_field(out, field, &body);
}

fn fixed64(out: &mut Vec<u8>, field: u64, v: u64) {
    tag(out, field, I64);
    out.extend_from_slice(&v.to_le_bytes());
}

/// `common.v1.KeyValue { string key = 1; AnyValue value = 2; }` with
/// `AnyValue { string string_value = 1; bool bool_value = 2; int64 int_value = 3;
/// double double_value = 4; ... }`.
fn key_value(out: &mut Vec<u8>, field: u64, key: &str, value: &Value) {
    message(out, field, |kv| {
        bytes_field(kv, 1, key.as_bytes());
        message(kv, 2, |any| match value {
            Value::Str(s) => bytes_field(any, 1, s.as_bytes()),
            Value::Bool(b) => {
                tag(any, 2, VARINT);
                varint(any, u64::from(*b));
            }
            Value::Int(i) => {
                tag(any, 3, VARINT);
                // int64: two's complement as a 64-bit varint.
                varint(any, *i as u64);
            }
            Value::Double(d) => fixed64(any, 4, d.to_bits()),
        });
    });
}

/// `trace.v1.Span`: trace_id = 1, span_id = 2, parent_span_id = 4, name = 5, kind = 6,
/// start_time_unix_nano = 7 (fixed64), end_time_unix_nano = 8 (fixed64), attributes = 9,
/// links = 13 (`Link { bytes trace_id = 1; bytes span_id = 2; }`), status = 15
/// (`Status { string message = 2; StatusCode code = 3; }`).
fn span(out: &mut Vec<u8>, s: &Span) {
    message(out, 2, |m| {
        bytes_field(m, 1, &s.trace_id);
        bytes_field(m, 2, &s.span_id);
        if let Some(p) = &s.parent_span_id {
            bytes_field(m, 4, p);
        }
        bytes_field(m, 5, s.name.as_bytes());
        tag(m, 6, VARINT);
        varint(m, s.kind as u64);
        fixed64(m, 7, s.start_unix_nano);
        fixed64(m, 8, s.end_unix_nano);
        for (k, v) in &s.attributes {
            key_value(m, 9, k, v);
        }
        for (trace, span) in &s.links {
            message(m, 13, |l| {
                bytes_field(l, 1, trace);
                bytes_field(l, 2, span);
            });
        }
        if let Some(st) = &s.status {
            message(m, 15, |status| {
                let (code, msg) = match st {
                    SpanStatus::Ok => (1, ""),
                    SpanStatus::Error(msg) => (2, msg.as_str()),
                };
                if !msg.is_empty() {
                    bytes_field(status, 2, msg.as_bytes());
                }
                tag(status, 3, VARINT);
                varint(status, code);
            });
        }
    });
}

/// `ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }` with one
/// `ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }`,
/// `Resource { repeated KeyValue attributes = 1; }`, and one
/// `ScopeSpans { InstrumentationScope scope = 1; repeated Span spans = 2; }`,
/// `InstrumentationScope { string name = 1; string version = 2; }`.
pub(crate) fn export_request(
    resource: &[(String, Value)],
    scope: (&str, &str),
    spans: &[Span],
) -> Vec<u8> {
    let mut out = Vec::new();
    message(&mut out, 1, |rs| {
        message(rs, 1, |r| {
            for (k, v) in resource {
                key_value(r, 1, k, v);
            }
        });
        message(rs, 2, |ss| {
            message(ss, 1, |sc| {
                bytes_field(sc, 1, scope.0.as_bytes());
                bytes_field(sc, 2, scope.1.as_bytes());
            });
            for s in spans {
                span(ss, s);
            }
        });
    });
    out
}

/// Reads a varint at `*at`, moving past it.
fn read_varint(b: &[u8], at: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*at)?;
        *at += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// One field read back: number, wire type, the value of a varint, the bytes of a LEN field.
type Field<'a> = (u64, u64, u64, &'a [u8]);

/// The fields of a message body. Fixed-size fields are skipped; `None` for bytes that are not a
/// message.
fn fields(b: &[u8]) -> Option<Vec<Field<'_>>> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < b.len() {
        let key = read_varint(b, &mut at)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            VARINT => out.push((field, wire, read_varint(b, &mut at)?, &b[..0])),
            I64 => at = at.checked_add(8).filter(|e| *e <= b.len())?,
            LEN => {
                let n = usize::try_from(read_varint(b, &mut at)?).ok()?;
                let end = at.checked_add(n).filter(|e| *e <= b.len())?;
                out.push((field, wire, 0, &b[at..end]));
                at = end;
            }
            // I32
            5 => at = at.checked_add(4).filter(|e| *e <= b.len())?,
            _ => return None,
        }
    }
    Some(out)
}

/// What a receiver's 200 says it rejected: `ExportTraceServiceResponse { ExportTracePartialSuccess
/// partial_success = 1; }` with `ExportTracePartialSuccess { int64 rejected_spans = 1; string
/// error_message = 2; }` (`collector/trace/v1/trace_service.proto`). An empty body is full
/// success; `None` for a body that is not this message.
pub(crate) fn partial_success(body: &[u8]) -> Option<(i64, String)> {
    let mut rejected = 0i64;
    let mut message = String::new();
    for (field, wire, _, inner) in fields(body)? {
        if field != 1 || wire != LEN {
            continue;
        }
        for (f, w, v, b) in fields(inner)? {
            match (f, w) {
                (1, VARINT) => rejected = v as i64,
                (2, LEN) => message = String::from_utf8_lossy(b).into_owned(),
                _ => {}
            }
        }
    }
    Some((rejected, message))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_partial_success_is_read_and_other_bodies_are_not_trusted() {
        assert_eq!(partial_success(&[]), Some((0, String::new())));
        // partial_success (1, LEN 9) { rejected_spans (1) 3; error_message (2) "old!!" }
        let body = [0x0a, 9, 0x08, 3, 0x12, 5, b'o', b'l', b'd', b'!', b'!'];
        assert_eq!(partial_success(&body), Some((3, "old!!".into())));
        // Unknown fields of every wire type are skipped.
        let mut with_unknown = vec![0x15, 1, 2, 3, 4, 0x19, 0, 0, 0, 0, 0, 0, 0, 0, 0x20, 7];
        with_unknown.extend_from_slice(&body);
        assert_eq!(partial_success(&with_unknown), Some((3, "old!!".into())));
        // Truncated or not protobuf at all (an HTML error page answered with 200).
        assert_eq!(partial_success(&body[..6]), None);
        assert_eq!(partial_success(b"<html>ok</html>"), None);
        assert_eq!(partial_success(&[0x0f]), None);
    }

    #[test]
    fn varints_and_fixed_fields_follow_the_wire_format() {
        // The protobuf encoding guide's examples: 1 -> 01, 150 -> 96 01, 300 -> ac 02.
        for (v, want) in [
            (1u64, vec![0x01]),
            (150, vec![0x96, 0x01]),
            (300, vec![0xac, 0x02]),
        ] {
            let mut out = Vec::new();
            varint(&mut out, v);
            assert_eq!(out, want, "{v}");
        }
        // A negative int64 takes ten bytes.
        let mut out = Vec::new();
        varint(&mut out, -1i64 as u64);
        assert_eq!(out.len(), 10);
        // Field 7, wire type 1 (I64): tag 0x39, then eight little-endian bytes.
        let mut out = Vec::new();
        fixed64(&mut out, 7, 0x0102_0304_0506_0708);
        assert_eq!(out, [0x39, 8, 7, 6, 5, 4, 3, 2, 1]);
    }

    #[test]
    fn a_key_value_nests_its_any_value() {
        let mut out = Vec::new();
        key_value(&mut out, 1, "k", &Value::Str("v".into()));
        // KeyValue (field 1, LEN 8) { key (field 1) "k"; value (field 2, LEN 3) { string_value "v" } }
        assert_eq!(out, [0x0a, 8, 0x0a, 1, b'k', 0x12, 3, 0x0a, 1, b'v']);
    }
}
