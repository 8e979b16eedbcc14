//! Kubernetes Events for edge requests that change something (allowed create, resize,
//! snapshot, restore, delete), on the EdgeVolume or EdgeSnapshot they affect, so that
//! `kubectl describe` shows who changed a volume from the edge. The note carries what the
//! audit event carries (docs/edge-protocol.md §7): never a token, signature or key.

use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use serde_json::Value;

use super::audit::AuditEvent;

/// Longest an Event write may take; the request has been answered already.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(5);

/// A caller-supplied value in a note: as is when it is a plain token, else quoted with escapes, so
/// a subject cannot forge `policy=` or new lines into the note.
fn field(v: Option<&str>) -> String {
    match v {
        None => "-".into(),
        Some(v)
            if !v.is_empty()
                && v.bytes().all(|b| {
                    b.is_ascii_alphanumeric()
                        || matches!(b, b'.' | b'_' | b':' | b'-' | b'/' | b'@')
                }) =>
        {
            v.to_string()
        }
        Some(v) => format!("{v:?}"),
    }
}

/// The Event for an audit event, with the object it regards; `None` when the request changed
/// nothing. `body` is the answer body (the view of the volume or snapshot written).
pub fn change_event(ev: &AuditEvent, body: &Value) -> Option<(ObjectReference, Event)> {
    if ev.decision != "allow" || !(200..300).contains(&ev.result) {
        return None;
    }
    let action = ev.action.as_deref()?;
    let (reason, verb) = match action {
        "create" => ("EdgeCreate", "Create"),
        "resize" => ("EdgeResize", "Resize"),
        "snapshot" => ("EdgeSnapshot", "Snapshot"),
        "restore" => ("EdgeRestore", "Restore"),
        "delete" => ("EdgeDelete", "Delete"),
        _ => return None,
    };
    let obj = ev.object.as_ref()?;
    // A snapshot created or deleted regards the EdgeSnapshot; a restore regards the new volume
    // (the answer's name); everything else the volume named in the path or body.
    let on_snapshot = action == "snapshot" || (action == "delete" && obj.snapshot.is_some());
    let (kind, name) = if on_snapshot {
        ("EdgeSnapshot", obj.snapshot.clone()?)
    } else if action == "restore" {
        ("EdgeVolume", body.get("name")?.as_str()?.to_string())
    } else {
        ("EdgeVolume", obj.name.clone()?)
    };
    let mut note = format!(
        "{action} from the edge: issuer={} subject={} requestId={} keyId={} decision={} result={}",
        field(ev.issuer.as_deref()),
        field(ev.subject.as_deref()),
        field(ev.request_id.as_deref()),
        field(ev.key_id.as_deref()),
        ev.decision,
        ev.result,
    );
    if action == "restore"
        && let (Some(src), Some(snap)) = (&obj.name, &obj.snapshot)
    {
        note.push_str(&format!(" source={src}/{snap}"));
    }
    if let Some(p) = &ev.policy {
        note.push_str(&format!(" policy={}", field(Some(p))));
    }
    let reference = ObjectReference {
        api_version: Some("edgebind.dev/v1alpha1".into()),
        kind: Some(kind.into()),
        namespace: Some(obj.namespace.clone()),
        name: Some(name),
        ..Default::default()
    };
    let event = Event {
        type_: EventType::Normal,
        reason: reason.into(),
        // The Events API limits notes to 1 KiB.
        note: Some(note.chars().take(1000).collect()),
        action: verb.into(),
        secondary: None,
    };
    Some((reference, event))
}

/// Publishes change events through the Events API with reporter `edgebind-gateway`.
#[derive(Clone)]
pub struct EventSink {
    recorder: Recorder,
}

impl EventSink {
    pub fn new(client: kube::Client) -> Self {
        let reporter = Reporter {
            controller: "edgebind-gateway".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        EventSink {
            recorder: Recorder::new(client, reporter),
        }
    }

    /// Publishes the event for `ev`, if any, in the background: a slow or failing API server
    /// never delays or fails the request (failures are logged).
    pub fn publish(&self, ev: &AuditEvent, body: &Value) {
        let Some((reference, event)) = change_event(ev, body) else {
            return;
        };
        let recorder = self.recorder.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(PUBLISH_TIMEOUT, recorder.publish(&event, &reference)).await
            {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot publish edge event"),
                Err(_) => tracing::warn!("publishing an edge event timed out"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::gateway::audit::AuditObject;

    fn allowed(action: &str, name: Option<&str>, snapshot: Option<&str>) -> AuditEvent {
        let mut ev = AuditEvent::new();
        ev.decision = "allow";
        ev.result = 201;
        ev.action = Some(action.into());
        ev.issuer = Some("okta".into());
        ev.subject = Some("okta:alice".into());
        ev.request_id = Some("req-1".into());
        ev.key_id = Some("k1".into());
        ev.object = Some(AuditObject {
            namespace: "team-a".into(),
            name: name.map(str::to_string),
            kind: "EdgeVolume",
            snapshot: snapshot.map(str::to_string),
        });
        ev
    }

    fn target(ev: &AuditEvent, body: Value) -> Option<(String, String, String)> {
        change_event(ev, &body).map(|(r, e)| {
            (
                r.kind.unwrap_or_default(),
                r.name.unwrap_or_default(),
                e.reason,
            )
        })
    }

    #[test]
    fn changes_regard_the_object_they_touch() {
        let t = |a, n, s, body| target(&allowed(a, n, s), body);
        let v = |n: &str| Some(("EdgeVolume".into(), n.into(), String::new()));
        let strip = |o: Option<(String, String, String)>| o.map(|(k, n, _)| (k, n, String::new()));
        assert_eq!(strip(t("create", Some("v1"), None, json!({}))), v("v1"));
        assert_eq!(strip(t("resize", Some("v1"), None, json!({}))), v("v1"));
        assert_eq!(strip(t("delete", Some("v1"), None, json!({}))), v("v1"));
        assert_eq!(
            t("snapshot", Some("v1"), Some("s1"), json!({})),
            Some(("EdgeSnapshot".into(), "s1".into(), "EdgeSnapshot".into()))
        );
        assert_eq!(
            t("delete", Some("v1"), Some("s1"), json!({})),
            Some(("EdgeSnapshot".into(), "s1".into(), "EdgeDelete".into()))
        );
        assert_eq!(
            t("restore", Some("v1"), Some("s1"), json!({"name": "v2"})),
            Some(("EdgeVolume".into(), "v2".into(), "EdgeRestore".into()))
        );
    }

    #[test]
    fn reads_and_refusals_publish_nothing() {
        assert_eq!(target(&allowed("read", Some("v1"), None), json!({})), None);
        let mut denied = allowed("delete", Some("v1"), None);
        denied.decision = "deny";
        denied.result = 403;
        assert_eq!(target(&denied, json!({})), None);
    }

    #[test]
    fn caller_text_cannot_forge_fields_or_lines_in_the_note() {
        let mut ev = allowed("create", Some("v1"), None);
        ev.subject = Some("mallory policy=team-a/admins\nforged=1".into());
        ev.request_id = Some("r 1".into());
        let (_, e) = change_event(&ev, &json!({})).expect("a create is an event");
        let note = e.note.unwrap_or_default();
        assert!(!note.contains('\n'), "{note}");
        assert!(
            note.contains(r#"subject="mallory policy=team-a/admins\nforged=1""#),
            "{note}"
        );
        let outside = note.replace(r#""mallory policy=team-a/admins\nforged=1""#, "");
        assert!(
            !outside.contains("policy="),
            "no forged field outside the quotes: {note}"
        );
    }

    #[test]
    fn note_names_the_caller_and_request() {
        let (_, e) = change_event(&allowed("create", Some("v1"), None), &json!({}))
            .expect("a create is an event");
        let note = e.note.unwrap_or_default();
        for part in [
            "issuer=okta",
            "subject=okta:alice",
            "requestId=req-1",
            "keyId=k1",
            "decision=allow",
            "result=201",
        ] {
            assert!(note.contains(part), "{note} lacks {part}");
        }
    }
}
