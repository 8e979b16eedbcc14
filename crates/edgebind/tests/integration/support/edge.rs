//! Requests to the gateway signed as the edge Worker signs them.

use serde_json::{Value, json};

/// A request signed as the Worker signs it, to be delivered once or more (replays).
pub struct SignedEdge {
    authority: String,
    method: String,
    path: String,
    headers: http::HeaderMap,
    body: Vec<u8>,
}

/// Signs one request for the gateway at `authority` (host:port, or a Service name that several
/// replicas answer to).
pub fn sign(
    authority: &str,
    key: &ed25519_dalek::SigningKey,
    issuer: &str,
    method: &str,
    path: &str,
    body: Value,
    request_id: &str,
) -> SignedEdge {
    use edgebind::gateway::{identity, signature::Signer};
    use http::{HeaderMap, HeaderValue};
    // The caller's token, forwarded as the Worker forwards it (the gateway verifies it).
    let token = crate::support::idp::mint("alice", &["admins"]);
    let ident = identity::encode(&json!({
        "v": 1, "issuer": issuer, "issuerUrl": "https://idp.example",
        "subject": format!("{issuer}:alice"), "groups": [format!("{issuer}:admins")], "claims": {},
        "tokenJti": null, "tokenExp": 0, "tokenHash": edgebind::gateway::token::token_hash(&token),
        "clientIp": "203.0.113.7",
        "edgeLocation": "FRA", "rayId": null, "policyRevision": "sha256:test",
        "decision": "allow", "policy": null
    }));
    let mut h = HeaderMap::new();
    h.insert("edge-token", HeaderValue::from_str(&token).expect("ascii"));
    h.insert(
        "edge-identity",
        HeaderValue::from_str(&ident).expect("ascii"),
    );
    h.insert(
        "edge-request-id",
        HeaderValue::from_str(request_id).expect("ascii"),
    );
    // GET and DELETE carry no body.
    let body = if body.is_null() {
        Vec::new()
    } else {
        body.to_string().into_bytes()
    };
    let created = jiff::Timestamp::now().as_second();
    // 16 random bytes, base64url, as the Worker makes them.
    let nonce = base64::Engine::encode(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        uuid::Uuid::new_v4().as_bytes(),
    );
    Signer {
        key,
        key_id: "edge-1",
        created,
        expires: created + 60,
        nonce: &nonce,
    }
    .sign(method, authority, path, None, &mut h, &body);
    SignedEdge {
        authority: authority.to_string(),
        method: method.to_string(),
        path: path.to_string(),
        headers: h,
        body,
    }
}

impl SignedEdge {
    /// The values of the credential headers (which must never reach an Event).
    pub fn credentials(&self) -> Vec<String> {
        [
            "edge-identity",
            "edge-token",
            "signature",
            "signature-input",
        ]
        .iter()
        .filter_map(|n| {
            self.headers
                .get(*n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        })
        .collect()
    }

    /// Sends it, byte for byte, to the gateway listening at `base` (`Host` is the signed
    /// authority); returns the status.
    pub async fn deliver(&self, base: &str) -> u16 {
        let m = reqwest::Method::from_bytes(self.method.as_bytes()).expect("method");
        let mut rb = crate::support::http::client()
            .request(m, format!("{base}{}", self.path))
            .header("host", &self.authority);
        for (k, v) in &self.headers {
            rb = rb.header(k.as_str(), v.as_bytes());
        }
        let resp = rb
            .body(self.body.clone())
            .send()
            .await
            .expect("gateway answers");
        resp.status().as_u16()
    }
}

/// Sends one request to the gateway signed as the Worker signs it; returns the status and the
/// values of the credential headers (which must never reach an Event).
pub async fn send_signed(
    base: &str,
    key: &ed25519_dalek::SigningKey,
    issuer: &str,
    method: &str,
    path: &str,
    body: Value,
    request_id: &str,
) -> (u16, Vec<String>) {
    let authority = base.trim_start_matches("http://");
    let r = sign(authority, key, issuer, method, path, body, request_id);
    (r.deliver(base).await, r.credentials())
}
