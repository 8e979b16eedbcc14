//! Audit events (docs/edge-protocol.md §7), one JSON line per request. Events carry no token,
//! signature, key or body.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde::Serialize;

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuditObject {
    pub namespace: String,
    pub name: Option<String>,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

#[derive(Serialize, Clone, Debug, Default, PartialEq)]
pub struct Latency {
    pub verify: f64,
    pub policy: f64,
    pub sign: f64,
    pub upstream: f64,
    pub total: f64,
}

#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct AuditEvent {
    pub schema: &'static str,
    pub time: String,
    pub source: &'static str,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
    pub issuer: Option<String>,
    pub subject: Option<String>,
    pub action: Option<String>,
    pub object: Option<AuditObject>,
    pub decision: &'static str,
    pub reason_code: String,
    pub policy: Option<String>,
    pub policy_revision: Option<String>,
    pub key_id: Option<String>,
    pub edge_location: Option<String>,
    pub ray_id: Option<String>,
    pub result: u16,
    pub latency_ms: Latency,
}

impl AuditEvent {
    /// A gateway event stamped now, to be filled in.
    pub fn new() -> Self {
        AuditEvent {
            schema: "edgebind.dev/audit/v1",
            time: jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%S%.3fZ")
                .to_string(),
            source: "gateway",
            request_id: None,
            trace_id: None,
            issuer: None,
            subject: None,
            action: None,
            object: None,
            decision: "deny",
            reason_code: String::new(),
            policy: None,
            policy_revision: None,
            key_id: None,
            edge_location: None,
            ray_id: None,
            result: 0,
            latency_ms: Latency::default(),
        }
    }
}

impl Default for AuditEvent {
    fn default() -> Self {
        Self::new()
    }
}

/// Where events go: any writer (stdout in production, a buffer in tests), one line each.
#[derive(Clone)]
pub struct AuditSink {
    out: Arc<Mutex<Box<dyn Write + Send>>>,
}

impl AuditSink {
    pub fn new(w: impl Write + Send + 'static) -> Self {
        AuditSink {
            out: Arc::new(Mutex::new(Box::new(w))),
        }
    }

    pub fn stdout() -> Self {
        Self::new(std::io::stdout())
    }

    /// Writes one event; a failing sink is logged, never fatal to the request.
    pub fn emit(&self, e: &AuditEvent) {
        let Ok(mut line) = serde_json::to_vec(e) else {
            return;
        };
        line.push(b'\n');
        let mut w = match self.out.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if let Err(err) = w.write_all(&line).and_then(|_| w.flush()) {
            tracing::warn!(error = %err, "audit sink write failed");
        }
    }
}

/// A cloneable in-memory writer, for tests.
#[derive(Clone, Default)]
pub struct MemoryWriter(pub Arc<Mutex<Vec<u8>>>);

impl MemoryWriter {
    pub fn lines(&self) -> Vec<serde_json::Value> {
        let buf = self.0.lock().map(|b| b.clone()).unwrap_or_default();
        String::from_utf8_lossy(&buf)
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }
}

impl Write for MemoryWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.0.lock() {
            Ok(mut g) => g.extend_from_slice(buf),
            Err(p) => p.into_inner().extend_from_slice(buf),
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_has_the_documented_shape() {
        let mem = MemoryWriter::default();
        let sink = AuditSink::new(mem.clone());
        let mut e = AuditEvent::new();
        e.reason_code = "sig_invalid".into();
        e.result = 401;
        sink.emit(&e);
        let lines = mem.lines();
        assert_eq!(lines.len(), 1);
        let v = &lines[0];
        for k in [
            "schema",
            "time",
            "source",
            "requestId",
            "traceId",
            "issuer",
            "subject",
            "action",
            "object",
            "decision",
            "reasonCode",
            "policy",
            "policyRevision",
            "keyId",
            "edgeLocation",
            "rayId",
            "result",
            "latencyMs",
        ] {
            assert!(v.get(k).is_some(), "missing {k}");
        }
        assert_eq!(v["source"], "gateway");
        assert_eq!(v["latencyMs"]["sign"], 0.0);
        let t = v["time"].as_str().unwrap_or("");
        assert!(t.ends_with('Z') && t.len() == 24, "{t}");
    }
}
