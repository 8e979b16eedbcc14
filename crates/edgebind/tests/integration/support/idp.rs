//! A test identity provider: one Ed25519 key, its JWK Set served on loopback (by its own thread,
//! so it outlives every test's runtime), and tokens minted as an IdP mints them. The gateway
//! verifies these tokens itself (`gateway::token`), so requests in the tests carry them as the
//! Worker forwards them (`Edge-Token`, bound by `tokenHash`).

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};

/// The `iss` of every minted token.
pub const ISSUER_URL: &str = "https://idp.example";
/// The audience every test issuer accepts.
pub const AUDIENCE: &str = "edgebind";
const KID: &str = "test-idp-1";

fn key() -> SigningKey {
    SigningKey::from_bytes(&[77u8; 32])
}

/// The JWK Set document.
pub fn jwks() -> Value {
    let x = URL_SAFE_NO_PAD.encode(key().verifying_key().as_bytes());
    json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": KID, "use": "sig", "alg": "EdDSA"}]})
}

/// URL of the served JWK Set (`http://127.0.0.1:<port>/jwks`).
pub fn jwks_url() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the test IdP");
        let addr = l.local_addr().expect("addr");
        l.set_nonblocking(true).expect("nonblocking");
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let l = tokio::net::TcpListener::from_std(l).expect("listener");
                let app = axum::Router::new()
                    .route("/jwks", axum::routing::get(|| async { axum::Json(jwks()) }));
                let _ = axum::serve(l, app).await;
            });
        });
        format!("http://{addr}/jwks")
    })
}

/// The `spec` of an IdentityIssuer for this IdP (its prefix is the default, `<name>:`).
pub fn issuer_spec() -> Value {
    json!({"issuer": ISSUER_URL, "jwksUri": jwks_url(), "audiences": [AUDIENCE],
           "algorithms": ["EdDSA"], "claimMapping": {"groupsClaim": "groups"}})
}

/// An IdentityIssuer resource for this IdP.
pub fn issuer(name: &str) -> edgebind::crd::IdentityIssuer {
    serde_json::from_value(json!({
        "apiVersion": "edgebind.dev/v1alpha1", "kind": "IdentityIssuer",
        "metadata": {"name": name}, "spec": issuer_spec()
    }))
    .expect("issuer")
}

/// The issuers as a gateway trusts them (verification on).
pub fn trusted(names: &[&str]) -> Vec<edgebind::gateway::token::TrustedIssuer> {
    let all: Vec<_> = names.iter().map(|n| issuer(n)).collect();
    edgebind::gateway::token::trusted_issuers(&all)
}

/// A token for `sub` in `groups` (both without the issuer prefix), valid for ten minutes.
pub fn mint(sub: &str, groups: &[&str]) -> String {
    let now = jiff::Timestamp::now().as_second();
    let header = json!({"alg": "EdDSA", "kid": KID, "typ": "JWT"});
    let claims = json!({"iss": ISSUER_URL, "aud": AUDIENCE, "sub": sub, "groups": groups,
                        "iat": now, "exp": now + 600});
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let sig = key().sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()))
}

/// `sub` and groups of a prefixed principal, for `mint`.
pub fn unprefixed(prefixed: &str) -> &str {
    prefixed.split_once(':').map_or(prefixed, |(_, rest)| rest)
}
