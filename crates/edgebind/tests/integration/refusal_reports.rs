//! Refusal reports from the Worker (docs/edge-protocol.md §7.2) at a real gateway: an accepted
//! batch becomes `source: "worker"` audit lines; a forged, foreign, oversized or malformed one is
//! refused, logged without secrets, and writes no record and changes nothing.

use serde_json::{Value, json};

use crate::gateway::{Req, code, req, start};

const REPORT: &str = "/api/v1/edge-refusals";
const RID: &str = "8f0c1d2e3a4b5c6d-0011223344556677";

fn record(request_id: &str) -> Value {
    json!({
        "requestId": request_id, "time": "2026-12-07T22:00:00.000Z",
        "reasonCode": "token_invalid", "result": 401,
        "action": "create", "object": {"namespace": "team-a", "name": "db", "kind": "EdgeVolume"},
        "edgeLocation": "FRA", "rayId": "8f0c1d2e3a4b5c6d-FRA",
        "latencyMs": {"verify": 1.0, "policy": 0.0, "sign": 0.0, "upstream": 0.0, "total": 1.5}
    })
}

/// A record with only the required fields.
fn small() -> Value {
    json!({"requestId": RID, "time": "2026-12-07T22:00:00Z", "reasonCode": "token_missing", "result": 401})
}

fn report(records: Vec<Value>) -> Option<Value> {
    Some(json!({"records": records, "dropped": 0}))
}

fn worker_lines(gw: &crate::gateway::Gw) -> Vec<Value> {
    gw.audit
        .lines()
        .into_iter()
        .filter(|l| l["source"] == "worker")
        .collect()
}

#[tokio::test]
async fn an_accepted_batch_becomes_worker_audit_lines() {
    let gw = start().await;
    let before = gw.snapshot_state();
    let other = "0000000000000000-a1b2c3d4e5f60718";
    let (s, body, _) = gw
        .send(req(
            "POST",
            REPORT,
            report(vec![record(RID), record(other)]),
        ))
        .await;
    assert_eq!((s, &body["accepted"]), (202, &json!(2)), "{body}");
    let lines = worker_lines(&gw);
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["requestId"], RID);
    assert_eq!(lines[1]["requestId"], other);
    assert_eq!(lines[0]["decision"], "deny");
    assert_eq!(lines[0]["reasonCode"], "token_invalid");
    assert_eq!(lines[0]["keyId"], "edge-1");
    assert_eq!(lines[0]["schema"], "edgebind.dev/audit/v1");
    assert_eq!(lines[0]["object"]["namespace"], "team-a");
    // The report itself is audited as the gateway's own decision.
    assert!(gw.audit.lines().iter().any(|l| l["source"] == "gateway"
        && l["action"] == "report-refusals"
        && l["reasonCode"] == "report_accepted"));
    assert_eq!(gw.snapshot_state(), before, "a report changes nothing");
}

#[tokio::test]
async fn hostile_reports_are_refused_and_write_no_record() {
    let gw = start().await;
    let b = gw.with_tenant_b();
    let before = gw.snapshot_state();

    // Forged: signed over one batch, another delivered.
    let forged = Req {
        send_body: Some(serde_json::to_vec(&report(vec![record(RID)])).unwrap_or_default()),
        ..req(
            "POST",
            REPORT,
            report(vec![record("0000000000000000-0000000000000001")]),
        )
    };
    let (s, body, _) = gw.send(forged).await;
    assert_eq!((s, code(&body)), (401, "digest_mismatch"));

    let unsigned = Req {
        unsigned: true,
        ..req("POST", REPORT, report(vec![record(RID)]))
    };
    let (s, body, _) = gw.send(unsigned).await;
    assert_eq!((s, code(&body)), (401, "sig_missing"));

    // Another namespace's key reports about team-a's volume: its record names no team-a
    // object and is attributed to team-b's key.
    let (s, _, _) = b
        .send(Req {
            key_id: "team-b.edge.1",
            ..req("POST", REPORT, report(vec![record(RID)]))
        })
        .await;
    assert_eq!(s, 202);
    let lines = worker_lines(&gw);
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["keyId"], "team-b.edge.1");
    assert_eq!(
        lines[0]["object"],
        Value::Null,
        "no line about team-a from team-b's key"
    );

    // Too many records, too many bytes.
    let (s, body, _) = gw
        .send(req("POST", REPORT, report(vec![small(); 101])))
        .await;
    assert_eq!((s, code(&body)), (400, "request_invalid"));
    let mut big = record(RID);
    big["subject"] = json!("x".repeat(200));
    let (s, body, _) = gw.send(req("POST", REPORT, report(vec![big; 99]))).await;
    assert_eq!((s, code(&body)), (413, "body_too_large"));

    // Bad fields, one of them a token smuggled into the record.
    let secret = "eyJhbGciOiJSUzI1NiJ9.c2VjcmV0.c2ln";
    let mut smuggled = record(RID);
    smuggled["token"] = json!(secret);
    let mut forged_line = record(RID);
    forged_line["subject"] = json!("x\n{\"source\":\"gateway\"}");
    let mut ok_status = record(RID);
    ok_status["result"] = json!(200);
    for bad in [smuggled, forged_line, ok_status] {
        let (s, body, _) = gw.send(req("POST", REPORT, report(vec![bad]))).await;
        assert_eq!((s, code(&body)), (400, "request_invalid"));
    }
    let (s, body, _) = gw.send(req("GET", REPORT, None)).await;
    assert_eq!((s, code(&body)), (405, "method_not_allowed"));

    assert_eq!(
        worker_lines(&gw).len(),
        1,
        "no record from a refused report"
    );
    let all = gw.audit.lines();
    let allowed = all
        .iter()
        .filter(|l| l["action"] == "report-refusals" && l["decision"] == "allow")
        .count();
    assert_eq!(allowed, 1, "only team-b's well-formed report was accepted");
    let text = serde_json::to_string(&all).unwrap_or_default();
    assert!(!text.contains(secret), "the audit never holds a token");
    assert_eq!(gw.snapshot_state(), before, "a report changes nothing");
}

#[tokio::test]
async fn a_replayed_report_writes_nothing_twice() {
    let gw = start().await;
    let signed = gw.sign(req("POST", REPORT, report(vec![record(RID)])));
    let (s, _, _) = gw.deliver(&signed).await;
    assert_eq!(s, 202);
    let (s, body, _) = gw.deliver(&signed).await;
    assert_eq!((s, code(&body)), (401, "nonce_replayed"));
    assert_eq!(worker_lines(&gw).len(), 1);
}

#[tokio::test]
async fn reports_are_rate_limited_per_key() {
    let gw = start().await;
    // Burst 10, then 2 a second: far fewer than 30 refill while 30 are sent.
    let mut codes = Vec::new();
    for _ in 0..30 {
        let (s, body, _) = gw.send(req("POST", REPORT, report(vec![small()]))).await;
        codes.push((s, code(&body).to_string()));
    }
    assert!(codes[..10].iter().all(|(s, _)| *s == 202), "{codes:?}");
    assert!(
        codes.contains(&(429, "rate_limited".to_string())),
        "{codes:?}"
    );
    // The same key's ordinary requests are not held back by its reports.
    let (s, _, _) = gw
        .send(req("GET", "/api/v1/namespaces/team-a/volumes/pvc-1", None))
        .await;
    assert_eq!(s, 200);
}
