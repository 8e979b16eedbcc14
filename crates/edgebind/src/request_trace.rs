//! A request id that travels (issue 15): the Worker derives one id per edge request from
//! `cf-ray` plus its own randomness and signs it (`Edge-Request-Id`); the gateway writes it, with
//! the edge and gateway stage timings, as annotations on the EdgeVolume it creates; the
//! controller carries it into its log lines, events and the LINSTOR resource definition it
//! creates, and closes the request with one event (`RequestCompleted` or `RequestFailed`) that
//! states the stage timings (docs/edge-protocol.md §7.1).
//!
//! The annotations are input like any other: whoever may edit the EdgeVolume may write them, so
//! the id is used only when it is a plain token and the timings only when they parse.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

/// The edge request that created (or last changed) the object.
pub const REQUEST_ID_ANNOTATION: &str = "edgebind.dev/request-id";
/// JSON [`Stages`]: when the edge received it and how long the edge and the gateway took.
pub const REQUEST_STAGES_ANNOTATION: &str = "edgebind.dev/request-stages";
/// The LINSTOR resource-definition property that names the creating request.
pub const REQUEST_ID_PROP: &str = "Aux/edgebind.dev/request-id";
/// Requests accepted longer ago than this are not followed (an old annotation on a restart).
const FOLLOW_FOR_MS: i64 = 60 * 60 * 1000;
/// Requests followed at once; the oldest is dropped beyond this.
const MAX_FOLLOWED: usize = 10_000;

/// A request id as the Worker makes it and the gateway echoes it: 1-64 ASCII letters, digits
/// and `-`.
pub fn valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// The stages before the controller, in Unix milliseconds and milliseconds.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Stages {
    /// When the Worker received the request (its clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_received_at: Option<i64>,
    /// The Worker's token verification.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edge_verify_ms: Option<f64>,
    /// The gateway's signature check, token check and policy decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway_decision_ms: Option<f64>,
    /// When the gateway wrote the object (its clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_at: Option<i64>,
    /// The W3C `traceparent` the Worker forwarded (the caller's, or one the Worker started) and
    /// both audit lines name: the exported trace links to it (`otlp::trace`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// A request id with its stages, as written on the object.
#[derive(Clone, Debug, PartialEq)]
pub struct Stamp {
    pub id: String,
    pub stages: Stages,
}

impl Stamp {
    /// The annotations the gateway writes.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (REQUEST_ID_ANNOTATION.to_string(), self.id.clone()),
            (
                REQUEST_STAGES_ANNOTATION.to_string(),
                serde_json::to_string(&self.stages).unwrap_or_else(|_| "{}".into()),
            ),
        ])
    }

    /// The stamp on an object: `None` without a valid id; stages that do not parse are empty.
    pub fn from_annotations(a: &BTreeMap<String, String>) -> Option<Stamp> {
        let id = a.get(REQUEST_ID_ANNOTATION).filter(|id| valid_id(id))?;
        let stages = a
            .get(REQUEST_STAGES_ANNOTATION)
            .and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default();
        Some(Stamp {
            id: id.clone(),
            stages,
        })
    }
}

/// Where the object stands after a reconcile pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    InProgress,
    Ready,
    /// Only a person can fix it now (`Failed` phase).
    Failed,
}

/// The one closing event of a request.
#[derive(Clone, Debug, PartialEq)]
pub struct Completion {
    pub ready: bool,
    pub note: String,
    /// From the edge receiving the request (else the gateway accepting it) to now, ms.
    pub total_ms: Option<i64>,
    /// The instants the note's durations were computed from (the trace export's spans).
    pub timeline: Timeline,
}

/// A closed request's stamps and the controller's own instants, Unix milliseconds (the edge's
/// and the gateway's clocks for the stamps, the controller's for the rest).
#[derive(Clone, Debug, PartialEq)]
pub struct Timeline {
    pub id: String,
    pub stages: Stages,
    /// The start of the first pass that saw the request.
    pub first_reconcile: i64,
    /// The end of the first pass that wrote for it (LINSTOR placement); `first_reconcile` if
    /// none did.
    pub placed: i64,
    /// The end of the pass that found it Ready or failed.
    pub done: i64,
}

#[derive(Clone, Debug, PartialEq)]
struct Followed {
    id: String,
    stages: Stages,
    first_reconcile: i64,
    placed: Option<i64>,
}

fn ms_text(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1000.0)
    } else {
        format!("{ms:.1} ms")
    }
}

/// One step of a followed request (pure): the entry to keep, and the completion when it closes.
/// A request is followed from the first pass that sees it still in progress or writing for it
/// (so one found already Ready after a restart is not reported twice).
fn advance(
    entry: Option<Followed>,
    stamp: &Stamp,
    (started, now): (i64, i64),
    wrote: bool,
    outcome: Outcome,
) -> (Option<Followed>, Option<Completion>) {
    let mut e = match entry.filter(|e| e.id == stamp.id) {
        Some(e) => e,
        None => {
            let recent = stamp
                .stages
                .accepted_at
                .is_none_or(|a| now.saturating_sub(a) <= FOLLOW_FOR_MS);
            if !recent || (outcome != Outcome::InProgress && !wrote) {
                return (None, None);
            }
            Followed {
                id: stamp.id.clone(),
                stages: stamp.stages.clone(),
                first_reconcile: started,
                placed: None,
            }
        }
    };
    if wrote && e.placed.is_none() {
        e.placed = Some(now);
    }
    if outcome == Outcome::InProgress {
        return (Some(e), None);
    }
    let ready = outcome == Outcome::Ready;
    let s = &e.stages;
    let mut parts = Vec::new();
    if let Some(v) = s.edge_verify_ms {
        parts.push(format!("edge verify {}", ms_text(v)));
    }
    if let Some(v) = s.gateway_decision_ms {
        parts.push(format!("gateway decision {}", ms_text(v)));
    }
    if let Some(a) = s.accepted_at {
        parts.push(format!(
            "first reconcile {}",
            ms_text(e.first_reconcile.saturating_sub(a).max(0) as f64)
        ));
    }
    let placed = e.placed.unwrap_or(e.first_reconcile);
    parts.push(format!(
        "LINSTOR placement {}",
        ms_text(placed.saturating_sub(e.first_reconcile) as f64)
    ));
    parts.push(format!(
        "{} {}",
        if ready { "Ready" } else { "Failed" },
        ms_text(now.saturating_sub(placed) as f64)
    ));
    if let Some(r) = s.edge_received_at {
        parts.push(format!(
            "total from the edge {}",
            ms_text(now.saturating_sub(r).max(0) as f64)
        ));
    }
    let note = format!(
        "request {} {}: {}",
        e.id,
        if ready { "completed" } else { "failed" },
        parts.join(", ")
    );
    let total_ms = s
        .edge_received_at
        .or(s.accepted_at)
        .map(|t| now.saturating_sub(t).max(0));
    let timeline = Timeline {
        id: e.id,
        stages: e.stages,
        first_reconcile: e.first_reconcile,
        placed,
        done: now,
    };
    (
        None,
        Some(Completion {
            ready,
            note,
            total_ms,
            timeline,
        }),
    )
}

/// The requests the controller is following, by object (`namespace/name`).
#[derive(Default)]
pub struct Tracker {
    followed: Mutex<HashMap<String, Followed>>,
}

impl Tracker {
    /// Records one pass over `object` that started at `pass.0` and ended at `pass.1` (Unix
    /// milliseconds); `Some` once, when the request reaches Ready or fails.
    pub fn observe(
        &self,
        object: &str,
        stamp: &Stamp,
        pass: (i64, i64),
        wrote: bool,
        outcome: Outcome,
    ) -> Option<Completion> {
        let mut m = match self.followed.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let (next, done) = advance(m.remove(object), stamp, pass, wrote, outcome);
        if let Some(e) = next {
            if m.len() >= MAX_FOLLOWED
                && let Some(oldest) = m
                    .iter()
                    .min_by_key(|(_, e)| e.first_reconcile)
                    .map(|(k, _)| k.clone())
            {
                m.remove(&oldest);
            }
            m.insert(object.to_string(), e);
        }
        done
    }
}

/// Unix milliseconds now.
pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(id: &str) -> Stamp {
        Stamp {
            id: id.into(),
            stages: Stages {
                edge_received_at: Some(1_000),
                edge_verify_ms: Some(3.25),
                gateway_decision_ms: Some(1.5),
                accepted_at: Some(1_010),
                traceparent: None,
            },
        }
    }

    #[test]
    fn annotations_round_trip_and_bad_ids_are_ignored() {
        let s = stamp("8f1e2d3c4b5a6978-0011223344556677");
        assert_eq!(Stamp::from_annotations(&s.annotations()), Some(s.clone()));
        for bad in ["", "a b", "x\ny", &"a".repeat(65), "id;drop"] {
            let a = BTreeMap::from([(REQUEST_ID_ANNOTATION.to_string(), bad.to_string())]);
            assert_eq!(Stamp::from_annotations(&a), None, "{bad:?}");
        }
        let a = BTreeMap::from([
            (REQUEST_ID_ANNOTATION.to_string(), "r-1".to_string()),
            (
                REQUEST_STAGES_ANNOTATION.to_string(),
                "not json".to_string(),
            ),
        ]);
        assert_eq!(
            Stamp::from_annotations(&a).map(|s| s.stages),
            Some(Stages::default())
        );
    }

    #[test]
    fn a_request_closes_once_with_its_stage_timings() {
        let t = Tracker::default();
        let s = stamp("r-1");
        assert_eq!(
            t.observe("ns/v", &s, (1_100, 1_130), true, Outcome::InProgress),
            None
        );
        assert_eq!(
            t.observe("ns/v", &s, (1_500, 1_500), false, Outcome::InProgress),
            None
        );
        let c = t
            .observe("ns/v", &s, (2_100, 2_100), false, Outcome::Ready)
            .expect("completes");
        assert!(c.ready);
        assert_eq!(c.total_ms, Some(1_100));
        assert_eq!(
            c.timeline,
            Timeline {
                id: "r-1".into(),
                stages: s.stages.clone(),
                first_reconcile: 1_100,
                placed: 1_130,
                done: 2_100,
            }
        );
        assert_eq!(
            c.note,
            "request r-1 completed: edge verify 3.2 ms, gateway decision 1.5 ms, first reconcile 90.0 ms, LINSTOR placement 30.0 ms, Ready 970.0 ms, total from the edge 1.10 s"
        );
        // Ready again at the next resync: no second event.
        assert_eq!(
            t.observe("ns/v", &s, (3_000, 3_000), false, Outcome::Ready),
            None
        );
    }

    #[test]
    fn a_failure_closes_it_and_a_request_already_done_is_not_reported() {
        let t = Tracker::default();
        let s = stamp("r-2");
        assert_eq!(
            t.observe("ns/v", &s, (1_100, 1_100), false, Outcome::InProgress),
            None
        );
        let c = t
            .observe("ns/v", &s, (1_200, 1_200), false, Outcome::Failed)
            .expect("fails");
        assert!(!c.ready && c.note.starts_with("request r-2 failed: "));
        // A controller that starts after the volume became Ready: nothing to report.
        let t = Tracker::default();
        assert_eq!(
            t.observe("ns/v", &s, (1_100, 1_100), false, Outcome::Ready),
            None
        );
        // A new request on the same object replaces the old one.
        assert_eq!(
            t.observe("ns/v", &s, (1_100, 1_100), false, Outcome::InProgress),
            None
        );
        let c = t
            .observe("ns/v", &stamp("r-3"), (1_300, 1_300), true, Outcome::Ready)
            .expect("the new request completes");
        assert!(c.note.starts_with("request r-3 completed"));
        // An annotation older than an hour is history, not a request to follow.
        let t = Tracker::default();
        assert_eq!(
            t.observe(
                "ns/v",
                &s,
                (1_010 + FOLLOW_FOR_MS + 1, 1_010 + FOLLOW_FOR_MS + 1),
                true,
                Outcome::InProgress
            ),
            None
        );
        assert_eq!(t.followed.lock().map(|m| m.len()).unwrap_or(9), 0);
    }
}
