//! Refusal reports from the Worker (docs/edge-protocol.md §7.2): requests the Worker refused
//! itself reach the cluster's audit trail as `source: "worker"` lines. The batch is hostile
//! input: it arrives signed like any edge request, but every field is checked here, and a report
//! never creates or changes anything; it only writes audit lines.

use serde::Deserialize;

use super::audit::{AuditEvent, AuditObject, Latency};
use super::policy::{Action, RateLimit};

/// Largest report body (the Worker's batches stay well below: `MAX_RECORDS` short records).
pub const MAX_REPORT_BODY: usize = 32_768;
/// Most records in one report.
pub const MAX_RECORDS: usize = 100;
/// Longest free-text field (issuer, subject, policy names...).
const MAX_TEXT: usize = 256;

/// Reports one key may send: a Worker sends at most one a second, with some room.
pub const REPORT_LIMIT: RateLimit = RateLimit {
    requests_per_minute: 120,
    burst: Some(10),
};

/// Where the Worker reports. No namespace in the path: the key that signs is the scope, so a
/// report cannot even name another tenant's namespace.
pub const REPORT_PATH: &str = "/api/v1/edge-refusals";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Report {
    records: Vec<Record>,
    /// Records the Worker dropped since its last report (its queue was full).
    #[serde(default)]
    dropped: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct Record {
    request_id: String,
    time: String,
    reason_code: String,
    result: u16,
    #[serde(default)]
    trace_id: Option<String>,
    #[serde(default)]
    issuer: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    action: Option<String>,
    #[serde(default)]
    object: Option<RecordObject>,
    #[serde(default)]
    policy: Option<String>,
    #[serde(default)]
    policy_revision: Option<String>,
    #[serde(default)]
    edge_location: Option<String>,
    #[serde(default)]
    ray_id: Option<String>,
    #[serde(default)]
    latency_ms: Option<RecordLatency>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordObject {
    namespace: Option<String>,
    name: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    snapshot: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RecordLatency {
    #[serde(default)]
    verify: f64,
    #[serde(default)]
    policy: f64,
    #[serde(default)]
    sign: f64,
    #[serde(default)]
    upstream: f64,
    #[serde(default)]
    total: f64,
}

/// Why a report was refused (the detail is for the gateway's log, never echoed).
#[derive(Debug, PartialEq, Eq)]
pub enum ReportError {
    TooLarge,
    TooManyRecords,
    /// Not the documented shape, or a field out of its bounds.
    Invalid(&'static str),
}

/// An accepted report: the audit lines to write, and what the Worker says it dropped.
#[derive(Debug)]
pub struct Accepted {
    pub events: Vec<AuditEvent>,
    pub dropped: u64,
}

fn plain(s: &str, max: usize) -> bool {
    !s.is_empty() && s.len() <= max && !s.chars().any(char::is_control)
}

fn hex_of(s: &str, len: usize) -> bool {
    s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// `<16 hex of the ray>-<16 hex of our own>` (§5.1).
fn valid_request_id(s: &str) -> bool {
    s.split_once('-')
        .is_some_and(|(a, b)| hex_of(a, 16) && hex_of(b, 16))
}

fn valid_code(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn opt_text(v: &Option<String>, max: usize, what: &'static str) -> Result<(), ReportError> {
    match v {
        Some(s) if !plain(s, max) => Err(ReportError::Invalid(what)),
        _ => Ok(()),
    }
}

fn latency(l: Option<RecordLatency>) -> Result<Latency, ReportError> {
    let l = l.unwrap_or_default();
    let all = [l.verify, l.policy, l.sign, l.upstream, l.total];
    if all
        .iter()
        .any(|v| !v.is_finite() || *v < 0.0 || *v > 3_600_000.0)
    {
        return Err(ReportError::Invalid("latencyMs"));
    }
    Ok(Latency {
        verify: l.verify,
        policy: l.policy,
        sign: l.sign,
        upstream: l.upstream,
        total: l.total,
    })
}

/// Checks a report sent with the key of `key_namespace` and builds its audit lines. Pure.
/// A record naming another namespace keeps no object: the key speaks for its own namespace only.
pub fn parse_report(
    body: &[u8],
    key_namespace: &str,
    key_id: &str,
) -> Result<Accepted, ReportError> {
    if body.len() > MAX_REPORT_BODY {
        return Err(ReportError::TooLarge);
    }
    let report: Report =
        serde_json::from_slice(body).map_err(|_| ReportError::Invalid("not a report"))?;
    if report.records.len() > MAX_RECORDS {
        return Err(ReportError::TooManyRecords);
    }
    if report.records.is_empty() {
        return Err(ReportError::Invalid("no records"));
    }
    let mut events = Vec::with_capacity(report.records.len());
    for r in report.records {
        events.push(record_event(r, key_namespace, key_id)?);
    }
    Ok(Accepted {
        events,
        dropped: report.dropped,
    })
}

fn record_event(r: Record, key_namespace: &str, key_id: &str) -> Result<AuditEvent, ReportError> {
    if !valid_request_id(&r.request_id) {
        return Err(ReportError::Invalid("requestId"));
    }
    let Ok(at) = r.time.parse::<jiff::Timestamp>() else {
        return Err(ReportError::Invalid("time"));
    };
    if !valid_code(&r.reason_code) {
        return Err(ReportError::Invalid("reasonCode"));
    }
    // Only refusals are reported: the Worker forwards everything else.
    if !(400..=599).contains(&r.result) {
        return Err(ReportError::Invalid("result"));
    }
    if r.trace_id.as_deref().is_some_and(|t| !hex_of(t, 32)) {
        return Err(ReportError::Invalid("traceId"));
    }
    if r.action
        .as_deref()
        .is_some_and(|a| a != "can-i" && Action::parse(a).is_none())
    {
        return Err(ReportError::Invalid("action"));
    }
    opt_text(&r.issuer, MAX_TEXT, "issuer")?;
    opt_text(&r.subject, MAX_TEXT, "subject")?;
    opt_text(&r.policy, MAX_TEXT, "policy")?;
    opt_text(&r.policy_revision, MAX_TEXT, "policyRevision")?;
    opt_text(&r.edge_location, 16, "edgeLocation")?;
    if r.ray_id.as_deref().is_some_and(|v| {
        !plain(v, 32) || !v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
    }) {
        return Err(ReportError::Invalid("rayId"));
    }
    let object = match r.object {
        None => None,
        Some(o) => {
            if o.kind.as_deref().is_some_and(|k| k != "EdgeVolume") {
                return Err(ReportError::Invalid("object"));
            }
            for v in [&o.namespace, &o.name, &o.snapshot].into_iter().flatten() {
                if !plain(v, 253) {
                    return Err(ReportError::Invalid("object"));
                }
            }
            (o.namespace.as_deref() == Some(key_namespace)).then(|| AuditObject {
                namespace: key_namespace.to_string(),
                name: o.name,
                kind: "EdgeVolume",
                snapshot: o.snapshot,
            })
        }
    };
    let mut ev = AuditEvent::new();
    // The Worker's own time of the refusal, in the gateway's format.
    ev.time = at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    ev.source = "worker";
    ev.request_id = Some(r.request_id);
    ev.trace_id = r.trace_id;
    ev.issuer = r.issuer;
    ev.subject = r.subject;
    ev.action = r.action;
    ev.object = object;
    ev.decision = "deny";
    ev.reason_code = r.reason_code;
    ev.policy = r.policy;
    ev.policy_revision = r.policy_revision;
    // The key that verified, not what the record says.
    ev.key_id = Some(key_id.to_string());
    ev.edge_location = r.edge_location;
    ev.ray_id = r.ray_id;
    ev.result = r.result;
    ev.latency_ms = latency(r.latency_ms)?;
    Ok(ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record() -> serde_json::Value {
        json!({
            "requestId": "8f0c1d2e3a4b5c6d-0011223344556677",
            "time": "2026-12-07T22:00:00.123Z",
            "reasonCode": "token_invalid",
            "result": 401,
            "traceId": "0af7651916cd43dd8448eb211c80319c",
            "action": "create",
            "object": {"namespace": "team-a", "name": "db", "kind": "EdgeVolume"},
            "edgeLocation": "FRA",
            "rayId": "8f0c1d2e3a4b5c6d-FRA",
            "latencyMs": {"verify": 1.5, "total": 2.0}
        })
    }

    fn body(records: Vec<serde_json::Value>) -> Vec<u8> {
        serde_json::to_vec(&json!({"records": records, "dropped": 3})).unwrap_or_default()
    }

    #[test]
    fn accepted_records_become_worker_audit_events() {
        let got = parse_report(&body(vec![record()]), "team-a", "edge-1");
        let Ok(a) = got else {
            panic!("refused: {got:?}");
        };
        assert_eq!(a.dropped, 3);
        assert_eq!(a.events.len(), 1);
        let e = &a.events[0];
        assert_eq!(e.source, "worker");
        assert_eq!(e.decision, "deny");
        assert_eq!(e.reason_code, "token_invalid");
        assert_eq!(
            e.request_id.as_deref(),
            Some("8f0c1d2e3a4b5c6d-0011223344556677")
        );
        assert_eq!(e.key_id.as_deref(), Some("edge-1"));
        assert_eq!(e.time, "2026-12-07T22:00:00.123Z");
        assert_eq!(e.result, 401);
        assert_eq!(e.latency_ms.verify, 1.5);
        assert_eq!(
            e.object.as_ref().and_then(|o| o.name.as_deref()),
            Some("db")
        );
    }

    #[test]
    fn a_record_for_another_namespace_keeps_no_object() {
        let mut r = record();
        r["object"]["namespace"] = json!("team-b");
        let a = parse_report(&body(vec![r]), "team-a", "edge-1");
        assert!(a.is_ok_and(|a| a.events[0].object.is_none()));
    }

    #[test]
    fn bad_fields_refuse_the_whole_batch() {
        let cases: Vec<(&str, serde_json::Value)> = vec![
            ("requestId", json!("not-an-id")),
            ("time", json!("yesterday")),
            ("reasonCode", json!("Token Invalid")),
            ("result", json!(200)),
            ("traceId", json!("xyz")),
            ("action", json!("format-disk")),
            ("subject", json!("a\nforged line")),
            ("rayId", json!("a b")),
            ("token", json!("eyJhbGciOi...")),
        ];
        for (field, value) in cases {
            let mut r = record();
            r[field] = value;
            let got = parse_report(&body(vec![record(), r]), "team-a", "edge-1");
            assert!(
                matches!(got, Err(ReportError::Invalid(_))),
                "{field}: {got:?}"
            );
        }
        let mut r = record();
        r["latencyMs"]["total"] = json!(-1.0);
        assert!(parse_report(&body(vec![r]), "team-a", "k").is_err());
        assert!(parse_report(b"{\"records\": []}", "team-a", "k").is_err());
        assert!(parse_report(b"[1,2]", "team-a", "k").is_err());
    }

    #[test]
    fn size_and_count_are_bounded() {
        let small = json!({"requestId": "0000000000000000-0011223344556677",
            "time": "2026-12-07T22:00:00Z", "reasonCode": "token_missing", "result": 401});
        let many = body(vec![small; MAX_RECORDS + 1]);
        assert!(
            many.len() <= MAX_REPORT_BODY,
            "the count check is the one tested"
        );
        assert_eq!(
            parse_report(&many, "team-a", "k").err(),
            Some(ReportError::TooManyRecords)
        );
        let big = vec![b' '; MAX_REPORT_BODY + 1];
        assert_eq!(
            parse_report(&big, "team-a", "k").err(),
            Some(ReportError::TooLarge)
        );
    }
}
