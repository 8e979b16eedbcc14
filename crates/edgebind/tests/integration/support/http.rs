//! A small JSON HTTP client for talking to simulators in tests.

use serde_json::Value;
use std::time::Duration;

/// reqwest is built without a default rustls provider; install ring once per process.
pub fn client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("building a reqwest client with default settings")
}

/// Sends `method url` with an optional raw JSON body; returns status and parsed body
/// (`Value::Null` for an empty or non-JSON body).
pub async fn call_raw(
    c: &reqwest::Client,
    method: &str,
    url: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let m = reqwest::Method::from_bytes(method.as_bytes()).expect("valid HTTP method in test");
    let mut rb = c.request(m, url);
    if let Some(b) = body {
        rb = rb
            .header("content-type", "application/json")
            .body(b.to_string());
    }
    let resp = rb
        .send()
        .await
        .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap_or_default();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

pub async fn call(
    c: &reqwest::Client,
    method: &str,
    url: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let text = body.map(|b| b.to_string());
    call_raw(c, method, url, text.as_deref()).await
}
