//! The LINSTOR REST client: budgeted, timed, version-aware, and careful with secrets.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderValue};
use serde::de::DeserializeOwned;
use tokio::sync::RwLock;
use url::Url;

use super::budget::Budget;
use super::error::LinstorError;
use super::ops::Op;
use super::rc::{self, ApiCallRc};
use super::stream::ArraySplitter;
use super::tls::{self, TlsSource};
use super::types::ControllerVersion;
use super::version::{self, ApiVersion, Features};
use crate::crd::backend::{Budget as BudgetSpec, Timeouts};
use crate::metrics;

/// Attempts of an idempotent read on transport errors and 502/503/504, with backoff between.
const READ_ATTEMPTS: u32 = 3;

/// How to reach one backend.
#[derive(Clone)]
pub struct ClientConfig {
    pub urls: Vec<Url>,
    pub tls: Option<TlsSource>,
    pub bearer_token: Option<String>,
    pub budget: BudgetSpec,
    pub timeouts: Timeouts,
}

impl std::fmt::Debug for ClientConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientConfig")
            .field(
                "urls",
                &self.urls.iter().map(Url::as_str).collect::<Vec<_>>(),
            )
            .field("tls", &self.tls)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("budget", &self.budget)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

pub struct LinstorClient {
    http: reqwest::Client,
    urls: Vec<Url>,
    active: AtomicUsize,
    auth: Option<HeaderValue>,
    budget: Arc<Budget>,
    timeouts: Timeouts,
    probed: RwLock<Option<(ControllerVersion, Features)>>,
}

impl std::fmt::Debug for LinstorClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinstorClient")
            .field("urls", &self.urls)
            .finish_non_exhaustive()
    }
}

fn user_agent() -> String {
    format!("edgebind/{}", env!("CARGO_PKG_VERSION"))
}

impl LinstorClient {
    pub fn new(cfg: ClientConfig) -> Result<Self, String> {
        if cfg.urls.is_empty() {
            return Err("no LINSTOR controller URL given".into());
        }
        for u in &cfg.urls {
            if u.scheme() != "http" && u.scheme() != "https" {
                return Err(format!("LINSTOR URL {u} must use http or https"));
            }
        }
        let tls = tls::client_config(cfg.tls.as_ref())?;
        let http = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .user_agent(user_agent())
            .connect_timeout(Duration::from_secs(cfg.timeouts.connect_seconds.into()))
            .pool_idle_timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| format!("cannot build HTTP client: {e}"))?;
        let auth = match &cfg.bearer_token {
            Some(t) => {
                let mut v =
                    HeaderValue::from_str(&format!("Bearer {}", t.trim())).map_err(|_| {
                        "the bearer token contains characters not allowed in a header".to_string()
                    })?;
                v.set_sensitive(true);
                Some(v)
            }
            None => None,
        };
        Ok(Self {
            http,
            urls: cfg.urls,
            active: AtomicUsize::new(0),
            auth,
            budget: Arc::new(Budget::new("linstor", &cfg.budget)),
            timeouts: cfg.timeouts,
            probed: RwLock::new(None),
        })
    }

    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// The URL that answered last.
    pub fn active_url(&self) -> &Url {
        &self.urls[self.active.load(Ordering::Relaxed) % self.urls.len()]
    }

    /// `GET /v1/controller/version`, refusing servers older than edgebind supports. Cached.
    pub async fn probe(&self) -> Result<(ControllerVersion, Features), LinstorError> {
        if let Some(p) = self.probed.read().await.clone() {
            return Ok(p);
        }
        let v: ControllerVersion = self.get("/v1/controller/version", &[]).await?;
        let api = ApiVersion::parse(&v.rest_api_version).ok_or_else(|| LinstorError::Decode {
            what: "GET /v1/controller/version".into(),
            reason: format!("rest_api_version {:?} is not a version", v.rest_api_version),
        })?;
        if api < version::MIN_SUPPORTED {
            return Err(LinstorError::Decode {
                what: "GET /v1/controller/version".into(),
                reason: format!(
                    "REST API {api} is older than {} which edgebind needs; upgrade LINSTOR",
                    version::MIN_SUPPORTED
                ),
            });
        }
        let out = (v, Features::for_version(api));
        *self.probed.write().await = Some(out.clone());
        Ok(out)
    }

    /// Forgets the probed version (after the controller was unreachable it may have been upgraded).
    pub async fn reset_probe(&self) {
        *self.probed.write().await = None;
    }

    /// A GET whose body is decoded as `T`.
    pub async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, LinstorError> {
        let mut body = Vec::new();
        self.send("GET", path, query, None, &mut body).await?;
        serde_json::from_slice(&body).map_err(|e| LinstorError::Decode {
            what: format!("GET {path}"),
            reason: e.to_string(),
        })
    }

    /// A list GET, in one call. Never paged: the controller builds the whole filtered list
    /// (and `view/resources` first asks the satellites) on every call and applies
    /// `limit`/`offset` only to the finished list (`View.viewResources` →
    /// `listVolumesApiCallRcWithToResponse`, `ResourceDefinitions.listResourceDefinitionsOneOrMany`,
    /// `View.listSnapshots`; linstor-server @3e9306a9), so N/50 pages cost O(N²/50) server work
    /// where one call costs O(N). The API document's `maximum: 50` for `limit` is not enforced
    /// by the server; leaving `limit` out is within the document.
    pub async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<Vec<T>, LinstorError> {
        self.list_each(path, query, Vec::new, |v, t| v.push(t))
            .await
    }

    /// [`Self::list`], folding each object into an accumulator as the answer arrives: the
    /// answer is never held whole, as bytes or parsed (one unpaged list of 10,000 volumes is
    /// tens of MB). A read that is retried starts again from `init()`.
    pub async fn list_each<T: DeserializeOwned, A>(
        &self,
        path: &str,
        query: &[(&str, String)],
        init: impl FnMut() -> A,
        each: impl FnMut(&mut A, T),
    ) -> Result<A, LinstorError> {
        let mut sink = ListSink {
            split: ArraySplitter::default(),
            acc: None,
            init,
            each,
            _t: std::marker::PhantomData,
        };
        self.send("GET", path, query, None, &mut sink).await?;
        // `send` succeeded, so the sink was started and finished.
        Ok(sink.acc.unwrap_or_else(&mut sink.init))
    }

    /// Executes one write. Warnings are logged; error entries become an error.
    pub async fn execute(&self, op: &Op) -> Result<Vec<ApiCallRc>, LinstorError> {
        let body = op
            .body
            .as_ref()
            .map(|b| serde_json::to_vec(b).unwrap_or_default());
        let mut bytes = Vec::new();
        self.send(op.method, &op.path, &[], body, &mut bytes)
            .await?;
        let rcs = rc::parse_list(&bytes).unwrap_or_default();
        log_warnings(op.method, &op.path, &rcs);
        Ok(rcs)
    }

    /// Sends one request (reads retried), handing a successful answer's body to `sink`.
    async fn send(
        &self,
        method: &'static str,
        path: &str,
        query: &[(&str, String)],
        body: Option<Vec<u8>>,
        sink: &mut impl Sink,
    ) -> Result<(), LinstorError> {
        let mutation = method != "GET";
        let timeout = Duration::from_secs(if mutation {
            self.timeouts.mutation_seconds.into()
        } else {
            self.timeouts.read_seconds.into()
        });
        let template = metrics::path_template(path);
        let attempts = if mutation { 1 } else { READ_ATTEMPTS };
        let mut last_err = None;
        for attempt in 0..attempts {
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(200 * 2u64.pow(attempt - 1))).await;
            }
            let _permit = self
                .budget
                .acquire()
                .await
                .ok_or(LinstorError::BudgetClosed)?;
            match self
                .send_once(
                    method,
                    path,
                    query,
                    body.as_deref(),
                    timeout,
                    mutation,
                    &template,
                    sink,
                )
                .await
            {
                Ok(r) => return Ok(r),
                Err(e) => {
                    let retry = matches!(&e, LinstorError::Unreachable { .. })
                        || matches!(&e, LinstorError::Api { status, .. } if matches!(status, 502..=504));
                    if !retry {
                        return Err(e);
                    }
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or(LinstorError::BudgetClosed))
    }

    #[allow(clippy::too_many_arguments)]
    async fn send_once(
        &self,
        method: &'static str,
        path: &str,
        query: &[(&str, String)],
        body: Option<&[u8]>,
        timeout: Duration,
        mutation: bool,
        template: &str,
        sink: &mut impl Sink,
    ) -> Result<(), LinstorError> {
        let n = self.urls.len();
        let first = self.active.load(Ordering::Relaxed) % n;
        let mut unreachable = Vec::new();
        for i in 0..n {
            let idx = (first + i) % n;
            let base = &self.urls[idx];
            let mut url = base.clone();
            url.set_path(&format!("{}{}", base.path().trim_end_matches('/'), path));
            {
                let mut qp = url.query_pairs_mut();
                for (k, v) in query {
                    qp.append_pair(k, v);
                }
            }
            if query.is_empty() {
                url.set_query(None);
            }
            let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap_or(reqwest::Method::GET);
            let mut req = self.http.request(m, url).timeout(timeout);
            if let Some(a) = &self.auth {
                req = req.header(AUTHORIZATION, a.clone());
            }
            if let Some(b) = body {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(b.to_vec());
            }
            let started = Instant::now();
            match req.send().await {
                Ok(mut resp) => {
                    self.active.store(idx, Ordering::Relaxed);
                    let status = resp.status().as_u16();
                    let unreadable = |e: reqwest::Error| LinstorError::Unreachable {
                        url: base.to_string(),
                        reason: format!("reading the answer failed: {}", plain(&e)),
                    };
                    let decode = |reason: String| LinstorError::Decode {
                        what: format!("{method} {path}"),
                        reason,
                    };
                    let result = if (200..300).contains(&status) {
                        // Chunk by chunk: the sink decides what of the body it keeps.
                        sink.start();
                        loop {
                            match resp.chunk().await {
                                Ok(Some(c)) => {
                                    if let Err(e) = sink.chunk(&c) {
                                        break Err(decode(e));
                                    }
                                }
                                Ok(None) => break sink.finish().map_err(decode),
                                Err(e) => break Err(unreadable(e)),
                            }
                        }
                    } else {
                        match resp.bytes().await {
                            Ok(b) => Err(classify(method, path, status, &b)),
                            Err(e) => Err(unreadable(e)),
                        }
                    };
                    if !matches!(&result, Err(LinstorError::Unreachable { .. })) {
                        metrics::external_request(
                            "linstor",
                            method,
                            template,
                            &status.to_string(),
                            started.elapsed(),
                        );
                    }
                    return result;
                }
                Err(e) => {
                    metrics::external_request(
                        "linstor",
                        method,
                        template,
                        "error",
                        started.elapsed(),
                    );
                    // A mutation that timed out may still complete: never resend it elsewhere;
                    // the reconciler re-reads.
                    let timed_out = e.is_timeout();
                    unreachable.push(format!("{base}: {}", plain(&e)));
                    if mutation && timed_out {
                        break;
                    }
                }
            }
        }
        Err(LinstorError::Unreachable {
            url: self
                .urls
                .iter()
                .map(Url::as_str)
                .collect::<Vec<_>>()
                .join(", "),
            reason: unreachable.join("; "),
        })
    }
}

/// A transport error without the URL's query (which never holds secrets here, but stay terse).
fn plain(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "connection failed".to_string()
    } else {
        "request failed".to_string()
    };
    let mut src = std::error::Error::source(e);
    while let Some(inner) = src {
        s.push_str(&format!(": {inner}"));
        src = inner.source();
    }
    s
}

/// The error an answer with a status outside 2xx stands for.
fn classify(method: &str, path: &str, status: u16, body: &[u8]) -> LinstorError {
    let rcs = rc::parse_list(body).unwrap_or_default();
    match status {
        401 | 403 => LinstorError::Unauthorized { status },
        404 | 405 => {
            // An unknown path carries FAIL_UNKNOWN_ERROR, not FAIL_NOT_FOUND_*.
            let unknown_path = status == 405
                || rcs.iter().any(|r| {
                    r.is_error_code(rc::FAIL_UNKNOWN_ERROR)
                        || r.message.contains("not found on server")
                });
            if unknown_path {
                LinstorError::UnknownPath {
                    method: method.into(),
                    path: path.into(),
                }
            } else {
                LinstorError::Api {
                    method: method.into(),
                    path: path.into(),
                    status,
                    rcs,
                }
            }
        }
        _ => LinstorError::Api {
            method: method.into(),
            path: path.into(),
            status,
            rcs,
        },
    }
}

/// Where a successful answer's body goes, chunk by chunk. `start` begins each attempt afresh.
trait Sink {
    fn start(&mut self);
    fn chunk(&mut self, bytes: &[u8]) -> Result<(), String>;
    fn finish(&mut self) -> Result<(), String>;
}

/// The whole body, for answers that are small (single objects, return codes).
impl Sink for Vec<u8> {
    fn start(&mut self) {
        self.clear();
    }
    fn chunk(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.extend_from_slice(bytes);
        Ok(())
    }
    fn finish(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// A list answer decoded element by element into an accumulator.
struct ListSink<T, A, I, F> {
    split: ArraySplitter,
    acc: Option<A>,
    init: I,
    each: F,
    _t: std::marker::PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned, A, I: FnMut() -> A, F: FnMut(&mut A, T)> Sink for ListSink<T, A, I, F> {
    fn start(&mut self) {
        self.split = ArraySplitter::default();
        self.acc = Some((self.init)());
    }
    fn chunk(&mut self, bytes: &[u8]) -> Result<(), String> {
        let Self {
            split, acc, each, ..
        } = self;
        let Some(acc) = acc.as_mut() else {
            return Err("an answer chunk before the answer started".into());
        };
        split.feed(bytes, |elem| {
            let t: T = serde_json::from_slice(elem).map_err(|e| e.to_string())?;
            each(acc, t);
            Ok(())
        })
    }
    fn finish(&mut self) -> Result<(), String> {
        self.split.finish()
    }
}

fn log_warnings(method: &str, path: &str, rcs: &[ApiCallRc]) {
    for r in rcs.iter().filter(|r| r.is_warning()) {
        tracing::warn!(method, path, ret_code = r.ret_code, message = %r.message, "LINSTOR warning");
    }
}
