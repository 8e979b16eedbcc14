//! WATCH: newline-delimited JSON events from the bounded history and then live from the
//! resource's broadcast channel. A watcher that falls behind is closed rather than slowing
//! writers; kube's watcher then re-watches from its last resourceVersion (or relists on 410).

use std::borrow::Cow;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::broadcast::{self, error::RecvError, error::TryRecvError};
use tokio::time::Instant;

use super::Shared;
use super::error::{ApiError, ApiResult};
use super::resources::ResKey;
use super::selector::{FieldSelector, LabelSelector};
use super::store::{EventType, WatchEvent, event_line};

/// How one client wants to see objects: namespace and selectors, plus the output shape.
pub(crate) struct View {
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub api_version: String,
    pub kind: String,
    pub metadata_only: bool,
}

impl View {
    pub fn matches(&self, obj: &Value) -> bool {
        let ns_ok = self.namespace.as_deref().is_none_or(|ns| {
            obj.pointer("/metadata/namespace").and_then(Value::as_str) == Some(ns)
        });
        ns_ok && self.labels.matches(obj) && self.fields.matches(obj)
    }

    /// The object as this client asked for it: its requested apiVersion, or metadata only.
    pub fn present<'a>(&self, obj: &'a Value) -> Cow<'a, Value> {
        if self.metadata_only {
            return Cow::Owned(json!({
                "apiVersion": "meta.k8s.io/v1",
                "kind": "PartialObjectMetadata",
                "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
            }));
        }
        if obj.get("apiVersion").and_then(Value::as_str) == Some(self.api_version.as_str()) {
            Cow::Borrowed(obj)
        } else {
            let mut o = obj.clone();
            o["apiVersion"] = Value::String(self.api_version.clone());
            Cow::Owned(o)
        }
    }

    fn needs_rewrite(&self, obj: &Value) -> bool {
        self.metadata_only
            || obj.get("apiVersion").and_then(Value::as_str) != Some(self.api_version.as_str())
    }

    /// The line this client gets for a stored event, if any. A change that moves an object into
    /// or out of the selection becomes ADDED or DELETED.
    fn render(&self, ev: &WatchEvent) -> Option<Bytes> {
        let now = self.matches(&ev.object);
        let before = ev.prev.as_deref().is_some_and(|p| self.matches(p));
        let etype = match ev.etype {
            EventType::Added if now => EventType::Added,
            EventType::Modified if now && before => EventType::Modified,
            EventType::Modified if now => EventType::Added,
            EventType::Modified if before => EventType::Deleted,
            EventType::Deleted if now || before => EventType::Deleted,
            _ => return None,
        };
        if etype == ev.etype && !self.needs_rewrite(&ev.object) {
            return Some(ev.line());
        }
        Some(event_line(etype.as_str(), &self.present(&ev.object)))
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut metadata = json!({ "resourceVersion": rv.to_string() });
        if initial_end {
            metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
        }
        let (api_version, kind) = if self.metadata_only {
            (
                "meta.k8s.io/v1".to_string(),
                "PartialObjectMetadata".to_string(),
            )
        } else {
            (self.api_version.clone(), self.kind.clone())
        };
        event_line(
            "BOOKMARK",
            &json!({ "apiVersion": api_version, "kind": kind, "metadata": metadata }),
        )
    }
}

pub(crate) struct WatchRequest {
    pub key: ResKey,
    pub view: View,
    pub resource_version: Option<String>,
    pub timeout: Duration,
    pub bookmarks: bool,
    pub send_initial_events: bool,
}

struct Stream {
    shared: Arc<Shared>,
    view: View,
    queue: VecDeque<Bytes>,
    rx: Option<broadcast::Receiver<Arc<WatchEvent>>>,
    deadline: Instant,
    bookmarks: bool,
    tick: tokio::time::Interval,
    unavailable: tokio::sync::watch::Receiver<bool>,
}

pub(crate) fn start(shared: Arc<Shared>, req: WatchRequest) -> ApiResult<Response> {
    let WatchRequest {
        key,
        view,
        resource_version,
        timeout,
        bookmarks,
        send_initial_events,
    } = req;
    let mut queue = VecDeque::new();
    let rx = {
        let st = shared.read();
        let res = st.resources.get(&key).ok_or_else(|| {
            ApiError::new(
                404,
                "NotFound",
                "the server could not find the requested resource",
            )
        })?;
        let from = match resource_version.as_deref() {
            None | Some("") | Some("0") => None,
            Some(s) => Some(s.parse::<u64>().map_err(|_| {
                ApiError::bad_request(format!("invalid resource version: \"{s}\""))
            })?),
        };
        match from {
            Some(rv) if !send_initial_events => {
                if rv < res.floor {
                    // As the real server: a 200 stream with one ERROR event, then the end.
                    let status = ApiError::gone(format!(
                        "too old resource version: {rv} ({})",
                        res.floor + 1
                    ))
                    .to_status();
                    queue.push_back(event_line("ERROR", &status));
                    None
                } else {
                    let first = res.history.partition_point(|e| e.rv <= rv);
                    for ev in res.history.range(first..) {
                        if let Some(line) = view.render(ev) {
                            queue.push_back(line);
                        }
                    }
                    Some(res.tx.subscribe())
                }
            }
            _ => {
                // No resourceVersion (or "0", or a streaming list): the current state as ADDED.
                for obj in res.objects.values() {
                    if view.matches(obj) {
                        queue.push_back(event_line("ADDED", &view.present(obj)));
                    }
                }
                if send_initial_events && bookmarks {
                    queue.push_back(view.bookmark(st.rv, true));
                }
                Some(res.tx.subscribe())
            }
        }
    };
    let interval = shared.bookmark_interval;
    let mut tick = tokio::time::interval_at(Instant::now() + interval, interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = Stream {
        unavailable: shared.unavailable.subscribe(),
        shared,
        view,
        queue,
        rx,
        deadline: Instant::now() + timeout,
        bookmarks,
        tick,
    };
    let body = futures::stream::unfold(stream, next_chunk);
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Body::from_stream(body))
        .map_err(|e| ApiError::new(500, "InternalError", e.to_string()))
}

async fn next_chunk(mut s: Stream) -> Option<(Result<Bytes, Infallible>, Stream)> {
    loop {
        if let Some(line) = s.queue.pop_front() {
            return Some((Ok(line), s));
        }
        let rx = s.rx.as_mut()?;
        if *s.unavailable.borrow() {
            return None;
        }
        let want_bookmark = tokio::select! {
            biased;
            _ = s.shared.cancel.cancelled() => return None,
            _ = s.unavailable.wait_for(|v| *v) => return None,
            r = rx.recv() => match r {
                Ok(ev) => {
                    if let Some(line) = s.view.render(&ev) {
                        s.queue.push_back(line);
                    }
                    false
                }
                // Lagged: this watcher is too slow; Closed: the resource went away.
                Err(RecvError::Lagged(_)) | Err(RecvError::Closed) => return None,
            },
            _ = tokio::time::sleep_until(s.deadline) => return None,
            _ = s.tick.tick(), if s.bookmarks => true,
        };
        if want_bookmark && !bookmark(&mut s) {
            return None;
        }
    }
}

/// Queues pending events and then a BOOKMARK at the current resourceVersion. Draining under
/// the store lock guarantees no event at or below that version is still undelivered.
fn bookmark(s: &mut Stream) -> bool {
    let Some(rx) = s.rx.as_mut() else {
        return false;
    };
    let st = s.shared.read();
    loop {
        match rx.try_recv() {
            Ok(ev) => {
                if let Some(line) = s.view.render(&ev) {
                    s.queue.push_back(line);
                }
            }
            Err(TryRecvError::Empty) => break,
            Err(_) => return false,
        }
    }
    let rv = st.rv;
    drop(st);
    s.queue.push_back(s.view.bookmark(rv, false));
    true
}
