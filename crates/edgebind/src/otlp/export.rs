//! The exporter: a bounded queue that reconciles add to without waiting ([`TraceSink::submit`];
//! full means the trace is dropped and counted), and one background task that sends batches
//! with OTLP/HTTP. A batch is retried on the OTLP specification's retryable responses (429,
//! 502, 503, 504, and no response at all), waiting what `Retry-After` asks or an exponential
//! backoff, within the batch's time budget (`OTEL_BSP_EXPORT_TIMEOUT`); then it is given up
//! and counted. Metric: `edgebind_otlp_spans_total{result="exported|dropped|failed"}`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::OtlpConfig;
use super::proto;
use super::trace::{Span, Value};

/// Attempts of one batch at most.
const MAX_ATTEMPTS: u32 = 5;
/// First backoff without `Retry-After`; doubles per attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(8);

struct Shared {
    queue: Mutex<VecDeque<Span>>,
    max_queue: usize,
    max_batch: usize,
    /// A full batch is waiting.
    full: Notify,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Span>> {
        match self.queue.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn take(&self) -> Vec<Span> {
        let mut q = self.lock();
        let n = q.len().min(self.max_batch);
        q.drain(..n).collect()
    }
}

/// Where the controller hands its traces; cheap to clone.
#[derive(Clone)]
pub struct TraceSink(Arc<Shared>);

impl std::fmt::Debug for TraceSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TraceSink")
            .field("max_queue", &self.0.max_queue)
            .finish()
    }
}

fn count(result: &'static str, n: usize) {
    crate::metrics::get()
        .otlp_spans
        .get_or_create(&crate::metrics::ResultLabel { result })
        .inc_by(n as u64);
}

impl TraceSink {
    /// Queues one trace whole, or drops it whole when the queue has no room (a half trace
    /// would show a request without its root). Never waits.
    pub(crate) fn submit(&self, spans: Vec<Span>) {
        let n = spans.len();
        let mut q = self.0.lock();
        if q.len() + n > self.0.max_queue {
            drop(q);
            count("dropped", n);
            return;
        }
        q.extend(spans);
        let full = q.len() >= self.0.max_batch;
        drop(q);
        if full {
            self.0.full.notify_one();
        }
    }
}

/// What to do after one attempt.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Verdict {
    Done,
    Retry(Duration),
    GiveUp(&'static str),
}

/// The decision after attempt `attempt` (0-based) got `status` (`None`: no response), with
/// `left` of the batch's budget (pure). OTLP/HTTP "Retryable Response Codes": 429, 502, 503
/// and 504 are retried, honouring `Retry-After`; other failures are not. `jitter` in [0, 1)
/// spreads the backoff over its upper half.
pub(crate) fn verdict(
    status: Option<u16>,
    retry_after: Option<Duration>,
    attempt: u32,
    left: Duration,
    jitter: f64,
) -> Verdict {
    match status {
        Some(s) if (200..300).contains(&s) => Verdict::Done,
        None | Some(429 | 502 | 503 | 504) => {
            if attempt + 1 >= MAX_ATTEMPTS {
                return Verdict::GiveUp("retries exhausted");
            }
            let wait = retry_after.unwrap_or_else(|| {
                let b = FIRST_BACKOFF
                    .saturating_mul(1u32 << attempt.min(8))
                    .min(MAX_BACKOFF);
                b.mul_f64(0.5 + 0.5 * jitter.clamp(0.0, 1.0))
            });
            if wait >= left {
                Verdict::GiveUp("the batch's time budget would be spent waiting")
            } else {
                Verdict::Retry(wait)
            }
        }
        Some(_) => Verdict::GiveUp("the receiver refused the batch (not retryable)"),
    }
}

/// The running exporter; [`Exporter::shutdown`] sends what is queued.
pub struct Exporter {
    sink: TraceSink,
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

struct Sender {
    http: reqwest::Client,
    cfg: OtlpConfig,
    resource: Vec<(String, Value)>,
}

impl Exporter {
    /// Builds the HTTP client (TLS files are read now: a bad one is a startup error) and
    /// starts the background task. Needs a Tokio runtime.
    pub fn start(cfg: OtlpConfig) -> Result<Exporter, String> {
        let tls = (cfg.ca.is_some() || cfg.client_cert.is_some()).then(|| {
            crate::linstor::tls::TlsSource::Files {
                cert: cfg.client_cert.clone(),
                key: cfg.client_key.clone(),
                ca: cfg.ca.clone(),
            }
        });
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(crate::linstor::tls::client_config(tls.as_ref())?)
            .user_agent(concat!("edgebind/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(cfg.timeout.min(Duration::from_secs(10)))
            .build()
            .map_err(|e| format!("cannot build the OTLP HTTP client: {e}"))?;
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            max_queue: cfg.batch.max_queue,
            max_batch: cfg.batch.max_batch,
            full: Notify::new(),
        });
        let resource = cfg
            .resource
            .iter()
            .map(|(k, v)| (k.clone(), Value::Str(v.clone())))
            .collect();
        let sender = Sender {
            http,
            cfg,
            resource,
        };
        let stop = CancellationToken::new();
        let task = tokio::spawn(run(shared.clone(), sender, stop.clone()));
        Ok(Exporter {
            sink: TraceSink(shared),
            stop,
            task,
        })
    }

    pub fn sink(&self) -> TraceSink {
        self.sink.clone()
    }

    /// Sends what is queued (each batch within its budget), waiting at most `limit`.
    pub async fn shutdown(self, limit: Duration) {
        self.stop.cancel();
        let mut task = self.task;
        if tokio::time::timeout(limit, &mut task).await.is_err() {
            task.abort();
            let left = self.sink.0.lock().len();
            count("dropped", left);
        }
    }
}

async fn run(shared: Arc<Shared>, sender: Sender, stop: CancellationToken) {
    let delay = sender.cfg.batch.schedule_delay;
    loop {
        let stopping = tokio::select! {
            _ = tokio::time::sleep(delay) => false,
            _ = shared.full.notified() => false,
            _ = stop.cancelled() => true,
        };
        loop {
            let batch = shared.take();
            if batch.is_empty() {
                break;
            }
            sender.send(batch).await;
            // On a schedule, one batch; a backlog or a shutdown is drained.
            if !stopping && shared.lock().len() < shared.max_batch {
                break;
            }
        }
        if stopping {
            return;
        }
    }
}

impl Sender {
    async fn send(&self, batch: Vec<Span>) {
        let n = batch.len();
        let body = bytes::Bytes::from(proto::export_request(
            &self.resource,
            ("edgebind", env!("CARGO_PKG_VERSION")),
            &batch,
        ));
        let budget = self.cfg.batch.export_timeout;
        let started = Instant::now();
        let mut attempt = 0;
        loop {
            let left = budget.saturating_sub(started.elapsed());
            let mut req = self
                .http
                .post(self.cfg.endpoint.clone())
                .timeout(self.cfg.timeout.min(left.max(Duration::from_millis(1))))
                .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                .body(body.clone());
            for (k, v) in &self.cfg.headers {
                req = req.header(k, v);
            }
            let mut rejected = None;
            let (status, retry_after, error) = match req.send().await {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let ra = crate::cloudflare::client::retry_after_header(r.headers());
                    // Read the body (the connection is reused): a 200 may reject some spans.
                    let body = r.bytes().await.unwrap_or_default();
                    if status == 200 {
                        rejected = proto::partial_success(&body);
                    }
                    (Some(status), ra, None)
                }
                // The error names the URL; `shown` is logged instead (it may carry user info).
                Err(e) => (None, None, Some(e.without_url().to_string())),
            };
            let left = budget.saturating_sub(started.elapsed());
            match verdict(status, retry_after, attempt, left, rand::random::<f64>()) {
                Verdict::Done => {
                    // OTLP/HTTP "Partial Success": not retried; the rejected spans count as
                    // failed, with the receiver's reason.
                    let (r, why) = rejected.unwrap_or_default();
                    let r = usize::try_from(r).unwrap_or(0).min(n);
                    if r > 0 {
                        tracing::warn!(endpoint = %super::shown(&self.cfg.endpoint), rejected = r, spans = n, reason = %why.chars().take(200).collect::<String>(), "the OTLP receiver rejected spans");
                        count("failed", r);
                    }
                    count("exported", n - r);
                    return;
                }
                Verdict::Retry(wait) => {
                    tracing::debug!(endpoint = %super::shown(&self.cfg.endpoint), ?status, ?wait, "OTLP export retried");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                Verdict::GiveUp(why) => {
                    count("failed", n);
                    tracing::warn!(
                        endpoint = %super::shown(&self.cfg.endpoint),
                        status = ?status,
                        error = error.as_deref().unwrap_or_default(),
                        spans = n,
                        attempts = attempt + 1,
                        "OTLP trace export failed: {why}"
                    );
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_follow_the_otlp_retryable_codes_and_the_budget() {
        let left = Duration::from_secs(30);
        assert_eq!(verdict(Some(200), None, 0, left, 0.0), Verdict::Done);
        assert_eq!(verdict(Some(202), None, 3, left, 0.0), Verdict::Done);
        for s in [Some(429), Some(502), Some(503), Some(504), None] {
            assert_eq!(
                verdict(s, None, 0, left, 0.0),
                Verdict::Retry(Duration::from_millis(500)),
                "{s:?}"
            );
        }
        // Retry-After wins over the backoff.
        assert_eq!(
            verdict(Some(503), Some(Duration::from_secs(3)), 0, left, 0.9),
            Verdict::Retry(Duration::from_secs(3))
        );
        // The backoff doubles, with jitter over its upper half, up to the cap.
        assert_eq!(
            verdict(Some(503), None, 2, left, 0.999_999),
            Verdict::Retry(Duration::from_secs(4).mul_f64(0.999_999_5))
        );
        assert_eq!(
            verdict(Some(503), None, 3, left, 1.0),
            Verdict::Retry(MAX_BACKOFF)
        );
        // Other failures are not retried.
        for s in [400, 401, 403, 404, 413, 500] {
            assert!(matches!(
                verdict(Some(s), None, 0, left, 0.0),
                Verdict::GiveUp(_)
            ));
        }
        // A wait past the budget, or the last attempt, gives up.
        assert!(matches!(
            verdict(Some(429), Some(Duration::from_secs(60)), 0, left, 0.0),
            Verdict::GiveUp(_)
        ));
        assert!(matches!(
            verdict(Some(503), None, MAX_ATTEMPTS - 1, left, 0.0),
            Verdict::GiveUp(_)
        ));
    }

    fn span(name: &str) -> Span {
        Span {
            trace_id: [1; 16],
            span_id: [2; 8],
            parent_span_id: None,
            links: vec![],
            name: name.into(),
            kind: super::super::trace::SpanKind::Internal,
            start_unix_nano: 1,
            end_unix_nano: 2,
            attributes: vec![],
            status: None,
        }
    }

    #[test]
    fn a_full_queue_drops_whole_traces_and_counts_them() {
        let shared = Arc::new(Shared {
            queue: Mutex::new(VecDeque::new()),
            max_queue: 5,
            max_batch: 2,
            full: Notify::new(),
        });
        let sink = TraceSink(shared.clone());
        let dropped = || {
            crate::metrics::get()
                .otlp_spans
                .get_or_create(&crate::metrics::ResultLabel { result: "dropped" })
                .get()
        };
        let before = dropped();
        sink.submit(vec![span("a"), span("b"), span("c")]);
        sink.submit(vec![span("d"), span("e"), span("f")]);
        assert_eq!(shared.lock().len(), 3, "the second trace did not fit whole");
        assert!(dropped() >= before + 3);
        // Batches take at most max_batch, oldest first.
        let names = |b: Vec<Span>| b.into_iter().map(|s| s.name).collect::<Vec<_>>();
        assert_eq!(names(shared.take()), ["a", "b"]);
        assert_eq!(names(shared.take()), ["c"]);
        assert!(shared.take().is_empty());
    }
}
