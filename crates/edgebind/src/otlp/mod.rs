//! Optional OpenTelemetry export (issue 15): each closed edge request becomes one trace
//! ([`trace::spans`]), sent with OTLP/HTTP in binary protobuf ([`proto`]) by a background
//! exporter ([`export`]) that never blocks a reconcile.
//!
//! Off by default. Configured only through the standard OpenTelemetry environment variables
//! (OpenTelemetry specification, "OpenTelemetry Protocol Exporter" and "Environment Variable
//! Specification"): an endpoint turns it on; `OTEL_SDK_DISABLED=true` or
//! `OTEL_TRACES_EXPORTER=none` turn it off again. Only `http/protobuf` is spoken; `grpc` and
//! `http/json` are refused at startup rather than silently ignored.

pub(crate) mod export;
pub(crate) mod proto;
pub(crate) mod trace;

use std::path::PathBuf;
use std::time::Duration;

use http::{HeaderName, HeaderValue};

pub use export::{Exporter, TraceSink};
pub use trace::trace_id;

/// The OTLP/HTTP path of traces, appended to `OTEL_EXPORTER_OTLP_ENDPOINT`.
const TRACES_PATH: &str = "v1/traces";

/// Where and how to export. `Debug` shows header names only: their values are credentials.
#[derive(Clone)]
pub struct OtlpConfig {
    pub endpoint: url::Url,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// One export call (`OTEL_EXPORTER_OTLP_TIMEOUT`).
    pub timeout: Duration,
    /// Resource attributes, `service.name` first.
    pub resource: Vec<(String, String)>,
    /// CA and client certificate files for an https endpoint.
    pub ca: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub batch: BatchSettings,
}

impl std::fmt::Debug for OtlpConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpConfig")
            .field("endpoint", &shown(&self.endpoint))
            .field(
                "headers",
                &self.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("timeout", &self.timeout)
            .field("resource", &self.resource)
            .field("ca", &self.ca)
            .field("client_cert", &self.client_cert)
            .field("client_key", &self.client_key)
            .field("batch", &self.batch)
            .finish()
    }
}

/// The batch span processor's settings (`OTEL_BSP_*`, with the specification's defaults).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BatchSettings {
    /// Longest a span waits before its batch is sent (`OTEL_BSP_SCHEDULE_DELAY`, 5000 ms).
    pub schedule_delay: Duration,
    /// Everything one batch may take, retries included (`OTEL_BSP_EXPORT_TIMEOUT`, 30000 ms).
    pub export_timeout: Duration,
    /// Spans waiting at most; more are dropped and counted (`OTEL_BSP_MAX_QUEUE_SIZE`, 2048).
    pub max_queue: usize,
    /// Spans per export call at most (`OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, 512).
    pub max_batch: usize,
}

impl Default for BatchSettings {
    fn default() -> Self {
        Self {
            schedule_delay: Duration::from_millis(5000),
            export_timeout: Duration::from_millis(30_000),
            max_queue: 2048,
            max_batch: 512,
        }
    }
}

/// The endpoint as it may be logged: no user info, query or fragment.
pub fn shown(u: &url::Url) -> String {
    format!(
        "{}://{}{}",
        u.scheme(),
        u.host_str().unwrap_or_default(),
        u.port().map(|p| format!(":{p}")).unwrap_or_default()
    ) + u.path()
}

/// `OTEL_EXPORTER_OTLP_TRACES_<X>`, else `OTEL_EXPORTER_OTLP_<X>`; blank is unset.
fn signal_var(get: &dyn Fn(&str) -> Option<String>, x: &str) -> Option<String> {
    get(&format!("OTEL_EXPORTER_OTLP_TRACES_{x}"))
        .filter(|v| !v.trim().is_empty())
        .or_else(|| get(&format!("OTEL_EXPORTER_OTLP_{x}")))
        .filter(|v| !v.trim().is_empty())
        .map(|v| v.trim().to_string())
}

fn millis(name: &str, v: Option<String>, default: u64) -> Result<Duration, String> {
    match v {
        None => Ok(Duration::from_millis(default)),
        Some(v) => v
            .parse::<u64>()
            .ok()
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
            .ok_or_else(|| format!("{name} must be a positive number of milliseconds, not {v:?}")),
    }
}

fn count(
    get: &dyn Fn(&str) -> Option<String>,
    name: &str,
    default: usize,
) -> Result<usize, String> {
    match get(name).filter(|v| !v.trim().is_empty()) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1_000_000).contains(n))
            .ok_or_else(|| format!("{name} must be a number from 1 to 1000000, not {v:?}")),
    }
}

/// Percent-decoding of the W3C Baggage format the header and resource variables use (`+` is
/// not a space there).
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = std::str::from_utf8(b.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `key1=value1,key2=value2`, values percent-decoded. Errors name the key, never the value.
fn pairs(name: &str, v: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for item in v.split(',').filter(|i| !i.trim().is_empty()) {
        let Some((k, val)) = item.split_once('=') else {
            return Err(format!(
                "{name}: an entry has no '=' (the format is key1=value1,key2=value2)"
            ));
        };
        let k = k.trim();
        let val = percent_decode(val.trim())
            .ok_or_else(|| format!("{name}: the value of {k:?} is not valid percent-encoding"))?;
        if k.is_empty() {
            return Err(format!("{name}: an entry has an empty key"));
        }
        out.push((k.to_string(), val));
    }
    Ok(out)
}

impl OtlpConfig {
    /// Reads the configuration from variables (`get` is the environment in production):
    /// `Ok(None)` when export is off (no endpoint, or disabled), `Err` for a setting edgebind
    /// cannot honour.
    pub fn from_env(get: &dyn Fn(&str) -> Option<String>) -> Result<Option<OtlpConfig>, String> {
        let var = |k: &str| {
            get(k)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        };
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
            return Ok(None);
        }
        match var("OTEL_TRACES_EXPORTER").as_deref() {
            None | Some("otlp") => {}
            Some("none") => return Ok(None),
            Some(other) => {
                return Err(format!(
                    "OTEL_TRACES_EXPORTER={other:?} is not supported: edgebind exports traces with \
                     OTLP only (\"otlp\", or \"none\" for no export)"
                ));
            }
        }
        let endpoint = match (
            var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"),
            var("OTEL_EXPORTER_OTLP_ENDPOINT"),
        ) {
            // The signal-specific URL is used as it is.
            (Some(e), _) => url::Url::parse(&e)
                .map_err(|err| format!("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is not a URL: {err}"))?,
            // The base URL gets `v1/traces` appended to its path.
            (None, Some(e)) => {
                let mut u = url::Url::parse(&e)
                    .map_err(|err| format!("OTEL_EXPORTER_OTLP_ENDPOINT is not a URL: {err}"))?;
                if !u.path().ends_with('/') {
                    let p = format!("{}/", u.path());
                    u.set_path(&p);
                }
                u.join(TRACES_PATH)
                    .map_err(|err| format!("OTEL_EXPORTER_OTLP_ENDPOINT: {err}"))?
            }
            // Off by default: the specification's default endpoint is not assumed.
            (None, None) => return Ok(None),
        };
        if !matches!(endpoint.scheme(), "http" | "https") || endpoint.host_str().is_none() {
            return Err(format!(
                "the OTLP endpoint {} must be an http or https URL",
                shown(&endpoint)
            ));
        }
        if let Some(p) = signal_var(get, "PROTOCOL")
            && p != "http/protobuf"
        {
            return Err(format!(
                "OTLP protocol {p:?} is not supported: edgebind sends OTLP/HTTP with binary \
                 protobuf only; set OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf (the default) and an \
                 OTLP/HTTP endpoint (a collector's port 4318, not gRPC's 4317)"
            ));
        }
        if let Some(c) = signal_var(get, "COMPRESSION")
            && c != "none"
        {
            return Err(format!(
                "OTLP compression {c:?} is not supported; unset OTEL_EXPORTER_OTLP_COMPRESSION or \
                 set it to \"none\""
            ));
        }
        let mut headers: Vec<(HeaderName, HeaderValue)> = Vec::new();
        for name in [
            "OTEL_EXPORTER_OTLP_HEADERS",
            "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
        ] {
            let Some(v) = get(name) else { continue };
            for (k, val) in pairs(name, &v)? {
                let hn = HeaderName::from_bytes(k.as_bytes())
                    .map_err(|_| format!("{name}: {k:?} is not a valid header name"))?;
                let mut hv = HeaderValue::from_str(&val).map_err(|_| {
                    format!("{name}: the value of {k:?} is not a valid header value")
                })?;
                hv.set_sensitive(true);
                // The signal-specific variable wins for the same header.
                headers.retain(|(h, _)| h != hn);
                headers.push((hn, hv));
            }
        }
        let timeout = millis(
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            signal_var(get, "TIMEOUT"),
            10_000,
        )?;
        let mut resource = vec![(
            "service.name".to_string(),
            var("OTEL_SERVICE_NAME").unwrap_or_else(|| "edgebind-controller".into()),
        )];
        resource.push((
            "service.version".to_string(),
            env!("CARGO_PKG_VERSION").to_string(),
        ));
        if let Some(v) = get("OTEL_RESOURCE_ATTRIBUTES") {
            for (k, val) in pairs("OTEL_RESOURCE_ATTRIBUTES", &v)? {
                // OTEL_SERVICE_NAME and edgebind's own version win.
                if k == "service.name" && var("OTEL_SERVICE_NAME").is_none() {
                    resource[0].1 = val;
                } else if !resource.iter().any(|(r, _)| *r == k) {
                    resource.push((k, val));
                }
            }
        }
        let batch = BatchSettings {
            schedule_delay: millis(
                "OTEL_BSP_SCHEDULE_DELAY",
                var("OTEL_BSP_SCHEDULE_DELAY"),
                5000,
            )?,
            export_timeout: millis(
                "OTEL_BSP_EXPORT_TIMEOUT",
                var("OTEL_BSP_EXPORT_TIMEOUT"),
                30_000,
            )?,
            max_queue: count(get, "OTEL_BSP_MAX_QUEUE_SIZE", 2048)?,
            max_batch: count(get, "OTEL_BSP_MAX_EXPORT_BATCH_SIZE", 512)?,
        };
        if batch.max_batch > batch.max_queue {
            return Err(
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE must not exceed OTEL_BSP_MAX_QUEUE_SIZE".into(),
            );
        }
        let file = |x: &str| signal_var(get, x).map(PathBuf::from);
        let (client_cert, client_key) = (file("CLIENT_CERTIFICATE"), file("CLIENT_KEY"));
        if client_cert.is_some() != client_key.is_some() {
            return Err(
                "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE and OTEL_EXPORTER_OTLP_CLIENT_KEY go together"
                    .into(),
            );
        }
        Ok(Some(OtlpConfig {
            endpoint,
            headers,
            timeout,
            resource,
            ca: file("CERTIFICATE"),
            client_cert,
            client_key,
            batch,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn cfg(vars: &[(&str, &str)]) -> Result<Option<OtlpConfig>, String> {
        let m: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        OtlpConfig::from_env(&|k| m.get(k).cloned())
    }

    #[test]
    fn off_without_an_endpoint_or_when_disabled() {
        assert!(cfg(&[]).expect("valid").is_none());
        // Settings without an endpoint do not turn it on (not even the spec's default one).
        assert!(
            cfg(&[
                ("OTEL_SERVICE_NAME", "x"),
                ("OTEL_EXPORTER_OTLP_HEADERS", "a=b")
            ])
            .expect("valid")
            .is_none()
        );
        let e = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        assert!(
            cfg(&[e, ("OTEL_SDK_DISABLED", "TRUE")])
                .expect("valid")
                .is_none()
        );
        assert!(
            cfg(&[e, ("OTEL_TRACES_EXPORTER", "none")])
                .expect("valid")
                .is_none()
        );
        assert!(
            cfg(&[e, ("OTEL_SDK_DISABLED", "false")])
                .expect("valid")
                .is_some()
        );
        let err = cfg(&[e, ("OTEL_TRACES_EXPORTER", "zipkin")]).expect_err("refused");
        assert!(err.contains("zipkin"), "{err}");
    }

    #[test]
    fn endpoints_follow_the_specification() {
        let url =
            |vars: &[(&str, &str)]| cfg(vars).expect("valid").expect("on").endpoint.to_string();
        // The base endpoint gets /v1/traces appended, with or without a trailing slash.
        assert_eq!(
            url(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]),
            "http://collector:4318/v1/traces"
        );
        assert_eq!(
            url(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otel.example/base/")]),
            "https://otel.example/base/v1/traces"
        );
        // The signal-specific one is used as it is, and wins.
        assert_eq!(
            url(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                (
                    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                    "http://tempo:4318/otlp/traces"
                ),
            ]),
            "http://tempo:4318/otlp/traces"
        );
        for bad in ["collector:4318", "ftp://collector/", "not a url"] {
            assert!(
                cfg(&[("OTEL_EXPORTER_OTLP_ENDPOINT", bad)]).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn only_http_protobuf_is_spoken() {
        let e = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318");
        for p in ["grpc", "http/json"] {
            let err = cfg(&[e, ("OTEL_EXPORTER_OTLP_PROTOCOL", p)]).expect_err("refused");
            assert!(err.contains(p) && err.contains("http/protobuf"), "{err}");
            assert!(cfg(&[e, ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", p)]).is_err());
        }
        assert!(cfg(&[e, ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")]).is_ok());
        // The signal-specific setting wins over the general one.
        assert!(
            cfg(&[
                e,
                ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
                ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/protobuf")
            ])
            .is_ok()
        );
        assert!(cfg(&[e, ("OTEL_EXPORTER_OTLP_COMPRESSION", "gzip")]).is_err());
        assert!(cfg(&[e, ("OTEL_EXPORTER_OTLP_COMPRESSION", "none")]).is_ok());
    }

    #[test]
    fn headers_are_decoded_kept_secret_and_errors_never_show_them() {
        let c = cfg(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_EXPORTER_OTLP_HEADERS",
                "Authorization=Bearer%20s3cret, x-tenant=a",
            ),
            ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "x-tenant=b"),
        ])
        .expect("valid")
        .expect("on");
        let h: Vec<_> = c
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.to_str().unwrap_or_default()))
            .collect();
        assert_eq!(h, [("authorization", "Bearer s3cret"), ("x-tenant", "b")]);
        assert!(c.headers.iter().all(|(_, v)| v.is_sensitive()));
        assert!(!format!("{c:?}").contains("s3cret"));
        for bad in [
            "Authorization=Bearer%zzs3cret",
            "novalue-s3cret",
            "x=s3%0acret",
        ] {
            let err = cfg(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
                ("OTEL_EXPORTER_OTLP_HEADERS", bad),
            ])
            .expect_err(bad);
            assert!(!err.contains("s3cret"), "{err}");
        }
        // A URL with credentials is never shown with them.
        let c = cfg(&[(
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "https://user:s3cret@collector/?token=s3cret",
        )])
        .expect("valid")
        .expect("on");
        assert!(!format!("{c:?}").contains("s3cret"), "{c:?}");
    }

    #[test]
    fn resource_timeouts_and_batches() {
        let c = cfg(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "service.name=ignored,deployment.environment.name=prod,service.version=9",
            ),
            ("OTEL_SERVICE_NAME", "edgebind-eu"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("OTEL_BSP_SCHEDULE_DELAY", "200"),
            ("OTEL_BSP_MAX_QUEUE_SIZE", "100"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "10"),
        ])
        .expect("valid")
        .expect("on");
        assert_eq!(
            c.resource,
            [
                ("service.name".to_string(), "edgebind-eu".to_string()),
                (
                    "service.version".to_string(),
                    env!("CARGO_PKG_VERSION").to_string()
                ),
                (
                    "deployment.environment.name".to_string(),
                    "prod".to_string()
                ),
            ]
        );
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert_eq!(
            c.batch,
            BatchSettings {
                schedule_delay: Duration::from_millis(200),
                max_queue: 100,
                max_batch: 10,
                ..Default::default()
            }
        );
        let d = cfg(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318")])
            .expect("valid")
            .expect("on");
        assert_eq!(d.resource[0].1, "edgebind-controller");
        assert_eq!(d.timeout, Duration::from_secs(10));
        assert_eq!(d.batch, BatchSettings::default());
        for bad in [
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "0"),
            ("OTEL_BSP_SCHEDULE_DELAY", "soon"),
            ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "4096"),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/k.pem"),
        ] {
            assert!(
                cfg(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), bad]).is_err(),
                "{bad:?}"
            );
        }
    }
}
