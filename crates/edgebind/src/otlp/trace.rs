//! One closed edge request as one trace (pure): a root span from the edge receiving the request
//! to the object being Ready (or failed), and one child span per stage of the completion event.
//!
//! The ids are derived from the request id, so anyone holding the id (an event, a log line,
//! the Worker's response header) can find the trace, and exporting the same request twice (a
//! new leader closing it again) yields the same spans: trace id = the first 16 bytes of
//! SHA-256(request id), span id = the first 8 bytes of SHA-256(request id "/" span name).

use sha2::{Digest, Sha256};

use crate::request_trace::Completion;

/// An attribute value (the `AnyValue` kinds edgebind uses).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Str(String),
    #[allow(dead_code)]
    Bool(bool),
    Int(i64),
    Double(f64),
}

/// `Span.SpanKind` (trace.proto).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SpanKind {
    Internal = 1,
    Server = 2,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) enum SpanStatus {
    Ok,
    Error(String),
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent_span_id: Option<[u8; 8]>,
    /// Spans of other traces this one follows from (`Span.links`: trace id, span id).
    pub links: Vec<([u8; 16], [u8; 8])>,
    pub name: String,
    pub kind: SpanKind,
    pub start_unix_nano: u64,
    pub end_unix_nano: u64,
    pub attributes: Vec<(String, Value)>,
    pub status: Option<SpanStatus>,
}

/// The object the request created or changed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Object<'a> {
    pub kind: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
}

/// The trace id and parent span id of a W3C `traceparent` (Trace Context §3.2: version `00`,
/// lower-case hex, neither id all zeroes); `None` for anything else.
pub(crate) fn parse_traceparent(v: &str) -> Option<([u8; 16], [u8; 8])> {
    fn hex<const N: usize>(s: &str) -> Option<[u8; N]> {
        if s.len() != 2 * N || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return None;
        }
        let mut out = [0u8; N];
        for (i, o) in out.iter_mut().enumerate() {
            *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        Some(out)
    }
    let p: Vec<&str> = v.split('-').collect();
    let [version, trace, span, flags] = p.as_slice() else {
        return None;
    };
    hex::<1>(flags)?;
    let (t, s) = (hex::<16>(trace)?, hex::<8>(span)?);
    (*version == "00" && t != [0; 16] && s != [0; 8]).then_some((t, s))
}

/// The root span's name; the stage spans are named as in the completion event.
pub(crate) const ROOT: &str = "edge request";

/// The trace id of a request id.
pub fn trace_id(request_id: &str) -> [u8; 16] {
    let d = Sha256::digest(request_id.as_bytes());
    let mut id = [0u8; 16];
    id.copy_from_slice(&d[..16]);
    // All zeroes is the invalid id (trace.proto); 2^-128, but never send it.
    if id == [0; 16] {
        id[15] = 1;
    }
    id
}

fn span_id(request_id: &str, name: &str) -> [u8; 8] {
    let d = Sha256::digest(format!("{request_id}/{name}").as_bytes());
    let mut id = [0u8; 8];
    id.copy_from_slice(&d[..8]);
    if id == [0; 8] {
        id[7] = 1;
    }
    id
}

/// Unix milliseconds to Unix nanoseconds, in integers: an f64 cannot hold today's Unix time in
/// nanoseconds exactly.
fn at(ms: i64) -> i128 {
    i128::from(ms) * 1_000_000
}

/// A duration in (fractional) milliseconds as nanoseconds; negative or not a number is 0.
fn span_of(ms: f64) -> i128 {
    if ms.is_finite() && ms > 0.0 {
        (ms * 1_000_000.0).round() as i128
    } else {
        0
    }
}

/// Nanoseconds as the wire's unsigned field; before 1970 is 0.
fn nanos(ns: i128) -> u64 {
    u64::try_from(ns.max(0)).unwrap_or(u64::MAX)
}

/// The spans of a closed request: the root first, then the stages in order. A stage whose
/// stamps are missing (an object written by hand with only a request id) is left out; the
/// root covers every child, whatever the skew between the edge's, the gateway's and the
/// controller's clocks.
pub(crate) fn spans(object: &Object<'_>, c: &Completion) -> Vec<Span> {
    let t = &c.timeline;
    let s = &t.stages;
    let tid = trace_id(&t.id);
    let root_id = span_id(&t.id, ROOT);
    let end_name = if c.ready { "Ready" } else { "Failed" };
    // (name, start ns, end ns)
    let mut stages: Vec<(&str, i128, i128)> = Vec::new();
    if let (Some(r), Some(v)) = (s.edge_received_at, s.edge_verify_ms) {
        stages.push(("edge verify", at(r), at(r) + span_of(v)));
    }
    if let Some(a) = s.accepted_at {
        if let Some(d) = s.gateway_decision_ms {
            stages.push(("gateway decision", at(a) - span_of(d), at(a)));
        }
        stages.push(("first reconcile", at(a), at(t.first_reconcile)));
    }
    stages.push(("LINSTOR placement", at(t.first_reconcile), at(t.placed)));
    stages.push((end_name, at(t.placed), at(t.done)));
    let start = stages
        .iter()
        .map(|x| x.1.min(x.2))
        .chain(s.edge_received_at.map(at))
        .min()
        .unwrap_or(at(t.done));
    let end = stages.iter().map(|x| x.2).fold(at(t.done), i128::max);
    let outcome = if c.ready { "ready" } else { "failed" };
    let status = if c.ready {
        SpanStatus::Ok
    } else {
        SpanStatus::Error(c.note.clone())
    };
    let mut attributes = vec![
        ("edgebind.request_id".to_string(), Value::Str(t.id.clone())),
        (
            "k8s.namespace.name".to_string(),
            Value::Str(object.namespace.to_string()),
        ),
        (
            "edgebind.object.kind".to_string(),
            Value::Str(object.kind.to_string()),
        ),
        (
            "edgebind.object.name".to_string(),
            Value::Str(object.name.to_string()),
        ),
        ("edgebind.outcome".to_string(), Value::Str(outcome.into())),
    ];
    if let Some(ms) = c.total_ms {
        attributes.push(("edgebind.total_ms".to_string(), Value::Int(ms)));
    }
    let mut out = vec![Span {
        trace_id: tid,
        span_id: root_id,
        parent_span_id: None,
        // The caller's (or the Worker's) W3C trace, which the audit lines name.
        links: s
            .traceparent
            .as_deref()
            .and_then(parse_traceparent)
            .into_iter()
            .collect(),
        name: ROOT.into(),
        kind: SpanKind::Server,
        start_unix_nano: nanos(start),
        end_unix_nano: nanos(end),
        attributes,
        status: Some(status.clone()),
    }];
    for (name, a, b) in stages {
        let (a, b) = (a.min(b), b.max(a));
        out.push(Span {
            trace_id: tid,
            span_id: span_id(&t.id, name),
            parent_span_id: Some(root_id),
            links: vec![],
            name: name.into(),
            kind: SpanKind::Internal,
            start_unix_nano: nanos(a),
            end_unix_nano: nanos(b),
            attributes: vec![(
                "edgebind.duration_ms".into(),
                Value::Double((b - a) as f64 / 1e6),
            )],
            // Only the last stage failed; the others did their part.
            status: (name == "Failed").then(|| status.clone()),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request_trace::{Stages, Timeline};

    fn completion(ready: bool, stages: Stages) -> Completion {
        Completion {
            ready,
            note: "request r-1 ...".into(),
            total_ms: Some(1_100),
            timeline: Timeline {
                id: "r-1".into(),
                stages,
                first_reconcile: 1_100,
                placed: 1_130,
                done: 2_100,
            },
        }
    }

    fn full() -> Stages {
        Stages {
            edge_received_at: Some(1_000),
            edge_verify_ms: Some(3.25),
            gateway_decision_ms: Some(1.5),
            accepted_at: Some(1_010),
            traceparent: Some(TP.into()),
        }
    }

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn the_root_links_to_the_w3c_trace_of_the_request() {
        // The example of W3C Trace Context §3.2.2.
        let (t, s) = parse_traceparent(TP).expect("valid");
        assert_eq!(t[..4], [0x4b, 0xf9, 0x2f, 0x35]);
        assert_eq!(s, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
        let spans = spans(&OBJ, &completion(true, full()));
        assert_eq!(spans[0].links, [(t, s)]);
        assert!(spans[1..].iter().all(|x| x.links.is_empty()));
        for bad in [
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
        ] {
            assert_eq!(parse_traceparent(bad), None, "{bad}");
            let st = Stages {
                traceparent: Some(bad.into()),
                ..full()
            };
            assert!(spans_of(st)[0].links.is_empty(), "{bad}");
        }
    }

    fn spans_of(st: Stages) -> Vec<Span> {
        spans(&OBJ, &completion(true, st))
    }

    const OBJ: Object<'static> = Object {
        kind: "EdgeVolume",
        namespace: "team-a",
        name: "data",
    };

    #[test]
    fn a_completed_request_is_a_root_with_one_child_per_stage() {
        let s = spans(&OBJ, &completion(true, full()));
        let names: Vec<_> = s.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(
            names,
            [
                ROOT,
                "edge verify",
                "gateway decision",
                "first reconcile",
                "LINSTOR placement",
                "Ready"
            ]
        );
        let root = &s[0];
        // SHA-256("r-1") begins a5fa777a (`printf r-1 | sha256sum`).
        assert_eq!(root.trace_id, trace_id("r-1"));
        assert_eq!(
            root.trace_id[..4],
            [0xa5, 0xfa, 0x77, 0x7a],
            "{:02x?}",
            root.trace_id
        );
        assert_eq!(root.parent_span_id, None);
        assert_eq!(
            (root.start_unix_nano, root.end_unix_nano),
            (1_000_000_000, 2_100_000_000)
        );
        assert_eq!(root.status, Some(SpanStatus::Ok));
        assert!(
            root.attributes
                .contains(&("edgebind.request_id".into(), Value::Str("r-1".into())))
        );
        assert!(
            root.attributes
                .contains(&("k8s.namespace.name".into(), Value::Str("team-a".into())))
        );
        let times: Vec<_> = s[1..]
            .iter()
            .map(|x| (x.start_unix_nano, x.end_unix_nano))
            .collect();
        assert_eq!(
            times,
            [
                (1_000_000_000, 1_003_250_000),
                (1_008_500_000, 1_010_000_000),
                (1_010_000_000, 1_100_000_000),
                (1_100_000_000, 1_130_000_000),
                (1_130_000_000, 2_100_000_000)
            ]
        );
        for c in &s[1..] {
            assert_eq!(c.trace_id, root.trace_id);
            assert_eq!(c.parent_span_id, Some(root.span_id));
            assert_ne!(c.span_id, root.span_id);
            assert_eq!(c.status, None);
        }
        // Deterministic: the same request gives the same spans.
        assert_eq!(spans(&OBJ, &completion(true, full())), s);
    }

    #[test]
    fn a_failure_marks_the_root_and_the_last_stage_and_missing_stamps_drop_their_stages() {
        let s = spans(&OBJ, &completion(false, Stages::default()));
        let names: Vec<_> = s.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, [ROOT, "LINSTOR placement", "Failed"]);
        let err = Some(SpanStatus::Error("request r-1 ...".into()));
        assert_eq!(s[0].status, err);
        assert_eq!(s[2].status, err);
        assert_eq!(s[1].status, None);
        assert_eq!(s[0].start_unix_nano, 1_100_000_000);
        // Today's instants keep their nanoseconds (an f64 would round them).
        let now = Stages {
            edge_received_at: Some(1_796_691_357_049),
            ..full()
        };
        assert_eq!(
            spans(&OBJ, &completion(true, now))[1].start_unix_nano,
            1_796_691_357_049_000_000
        );
        // An edge clock ahead of the cluster's: the root still covers its children.
        let skewed = Stages {
            edge_received_at: Some(1_050),
            edge_verify_ms: Some(100.0),
            ..full()
        };
        let s = spans(&OBJ, &completion(true, skewed));
        for c in &s[1..] {
            assert!(c.start_unix_nano >= s[0].start_unix_nano, "{}", c.name);
            assert!(c.end_unix_nano <= s[0].end_unix_nano, "{}", c.name);
            assert!(c.start_unix_nano <= c.end_unix_nano, "{}", c.name);
        }
    }
}
