//! Tests of the gateway's token check. Keys are made here (Ed25519, P-256 with ring); the
//! RS256 case is a token and public key that jose (the Worker's library) produced, so the two
//! implementations agree on the encoding.

use std::sync::Arc;

use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::json;

use super::*;

const NOW: i64 = 1_764_240_100;
const RSA_JWK: &str = r#"{"kty": "RSA", "n": "tETAOut8_35sIRVFi9jedBvvJKj66Q0VFIrgpQMDqhwHHHKgHswN7Cuhn6xvOyYaoWP4MwvVeBfihPaM1tDd8VRMC4XyejIuuEj17mpdnvowa9Nu_Kh90fhLQzbg50_TTVLEQaBp65IgUCZbaKNTib7jw7Vhmmt8YuUJ6zZcl6aBdjo7VWYmyCK7_f78QQu6nbnWrwhY3MXjmvvPPvzWl8FT2oBaqEKjMDGCXrTbxul4ESgYuyql-R9gk8pP0bJ39v7ID1ydb2B-tzLlIhOLGkzIISkF5IP2tBPePH3kW3AueLqIsmy3k5fogcjeJLCTWBi70wOS3ZRB_cfGSz1QMw", "e": "AQAB", "kid": "rsa-1"}"#;
const RSA_TOKEN: &str = "eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYS0xIn0.eyJncm91cHMiOlsib3BzIl0sImlzcyI6Imh0dHBzOi8vaWRwLmV4YW1wbGUiLCJzdWIiOiJjYXJvbCIsImF1ZCI6ImVkZ2ViaW5kIiwiaWF0IjoxNzY0MjQwMDAwLCJleHAiOjQxMDI0NDQ4MDB9.Ag8_Rx6G6o4-LkU6jzvHnYohIzUT0dS7z2vmNl-tdU-GH3RsF0CLvwxzuuy22YwuCgoFGAM5Trf4rDTvgT24TNHvHmANzchwvFvyy5I6goc0Wf56El6_naP0BwzJvAK6Rn9cbjOYzU45F4tSjap4nyN_cZPpLnqZYp7qkK6m3-i8cZEQDdcLQj_gHBXrUAXEvccPKnrl8k3fAsZelaIDG9tqbc26A0K_RIBOFmKYeFKHqxK6r3dPL-L4-zv5nb7hj-gAjwKU0BPg2zTKAwSZkBuTwf_TIT7-goD2wkNaePmllte_Zj70c-L_hCcf688fMTsyqG_KJpemxlkSMOO3cQ";

fn issuer(algorithms: &[&str]) -> IssuerEntry {
    let i: IdentityIssuer = serde_json::from_value(json!({
        "apiVersion": "edgebind.dev/v1alpha1", "kind": "IdentityIssuer",
        "metadata": {"name": "idp"},
        "spec": {"issuer": "https://idp.example", "audiences": ["edgebind"], "algorithms": algorithms,
                 "maxTokenAgeSeconds": 3600,
                 "claimMapping": {"groupsClaim": "groups", "prefix": "idp:"}}
    }))
    .expect("issuer");
    trusted_issuers(&[i]).remove(0).entry
}

fn b64(v: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// A token signed by `sign` over `header.payload`.
fn jwt(
    header: serde_json::Value,
    payload: serde_json::Value,
    sign: impl Fn(&[u8]) -> Vec<u8>,
) -> String {
    let input = format!("{}.{}", b64(&header), b64(&payload));
    let sig = sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn claims(extra: serde_json::Value) -> serde_json::Value {
    let mut c = json!({"iss": "https://idp.example", "sub": "alice", "aud": ["other", "edgebind"],
                       "iat": NOW - 10, "exp": NOW + 600, "groups": ["storage", "storage", "ops"]});
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            if v.is_null() {
                c.remove(k);
            } else {
                c.insert(k.clone(), v.clone());
            }
        }
    }
    c
}

struct Ed {
    key: ed25519_dalek::SigningKey,
    jwk: serde_json::Value,
}

fn ed(kid: &str, seed: u8) -> Ed {
    let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let x = URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes());
    Ed {
        key,
        jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": x, "kid": kid, "use": "sig"}),
    }
}

fn ed_token(k: &Ed, kid: &str, payload: serde_json::Value) -> String {
    use ed25519_dalek::Signer;
    jwt(json!({"alg": "EdDSA", "kid": kid}), payload, |m| {
        k.key.sign(m).to_bytes().to_vec()
    })
}

async fn check(
    i: &IssuerEntry,
    keys: Vec<serde_json::Value>,
    token: &str,
) -> Result<Map<String, Value>, TokenFailure> {
    verify(&JwksCache::preloaded(i, keys), i, token, NOW).await
}

#[tokio::test]
async fn eddsa_token_verifies_and_maps_like_the_worker() {
    let i = issuer(&["EdDSA"]);
    let k = ed("k1", 1);
    let t = ed_token(&k, "k1", claims(json!({"tier": 3})));
    let c = check(&i, vec![k.jwk.clone()], &t).await.expect("valid");
    let p = principal(&i, &c, ["tier", "absent"]).expect("maps");
    assert_eq!(p.issuer, "idp");
    assert_eq!(p.subject, "idp:alice");
    assert_eq!(
        p.groups,
        ["idp:storage", "idp:ops"],
        "prefixed, duplicates removed, order kept"
    );
    assert_eq!(p.claims["tier"], Some(vec!["3".to_string()]));
    assert_eq!(p.claims["absent"], Some(vec![]));
}

#[tokio::test]
async fn es256_token_verifies() {
    let rng = SystemRandom::new();
    let pkcs8 =
        EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).expect("keygen");
    let kp = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
        .expect("key");
    let point = kp.public_key().as_ref();
    let jwk = json!({"kty": "EC", "crv": "P-256", "kid": "ec",
                     "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])});
    let t = jwt(
        json!({"alg": "ES256", "kid": "ec"}),
        claims(json!({})),
        |m| kp.sign(&rng, m).expect("sign").as_ref().to_vec(),
    );
    let i = issuer(&["ES256"]);
    assert!(check(&i, vec![jwk.clone()], &t).await.is_ok());
    // The same point under another curve name does not verify.
    let mut wrong = jwk;
    wrong["crv"] = json!("P-384");
    assert_eq!(
        check(&i, vec![wrong], &t).await.err(),
        Some(TokenFailure::SignatureInvalid)
    );
}

#[tokio::test]
async fn rs256_token_from_jose_verifies() {
    let i = issuer(&["RS256"]);
    let jwk: serde_json::Value = serde_json::from_str(RSA_JWK).expect("jwk");
    // jose's token is valid until 2100 and was issued at NOW - 100.
    let c = check(&i, vec![jwk.clone()], RSA_TOKEN)
        .await
        .expect("valid");
    assert_eq!(principal(&i, &c, []).expect("maps").subject, "idp:carol");
    // One flipped bit in the signature.
    let mut bad = RSA_TOKEN.to_string();
    let last = bad.pop().expect("non-empty");
    bad.push(if last == 'A' { 'B' } else { 'A' });
    assert_eq!(
        check(&i, vec![jwk], &bad).await.err(),
        Some(TokenFailure::SignatureInvalid)
    );
}

#[tokio::test]
async fn every_refusal_has_its_failure() {
    let i = issuer(&["EdDSA"]);
    let k = ed("k1", 1);
    let other = ed("k1", 2);
    let keys = || vec![k.jwk.clone()];
    let t = |p: serde_json::Value| ed_token(&k, "k1", p);
    let cases: Vec<(&str, String, TokenFailure)> = vec![
        ("not a JWS", "a.b".into(), TokenFailure::Malformed),
        ("garbage parts", "!.!.!".into(), TokenFailure::Malformed),
        (
            "other issuer",
            t(claims(json!({"iss": "https://evil.example"}))),
            TokenFailure::IssuerMismatch,
        ),
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none"})),
                b64(&claims(json!({})))
            ),
            TokenFailure::AlgNotAllowed,
        ),
        (
            "HS256",
            jwt(
                json!({"alg": "HS256", "kid": "k1"}),
                claims(json!({})),
                |_| vec![0; 32],
            ),
            TokenFailure::AlgNotAllowed,
        ),
        (
            "unknown kid",
            ed_token(&k, "k9", claims(json!({}))),
            TokenFailure::KeyUnknown,
        ),
        (
            "signed by another key",
            ed_token(&other, "k1", claims(json!({}))),
            TokenFailure::SignatureInvalid,
        ),
        (
            "expired",
            t(claims(json!({"exp": NOW - 61}))),
            TokenFailure::Expired,
        ),
        (
            "no exp",
            t(claims(json!({"exp": null}))),
            TokenFailure::ClaimInvalid,
        ),
        (
            "nbf ahead",
            t(claims(json!({"nbf": NOW + 61}))),
            TokenFailure::NotYetValid,
        ),
        (
            "iat ahead",
            t(claims(json!({"iat": NOW + 61}))),
            TokenFailure::NotYetValid,
        ),
        (
            "too old",
            t(claims(json!({"iat": NOW - 3600 - 61}))),
            TokenFailure::TooOld,
        ),
        (
            "no iat with a max age",
            t(claims(json!({"iat": null}))),
            TokenFailure::ClaimInvalid,
        ),
        (
            "other audience",
            t(claims(json!({"aud": "someone-else"}))),
            TokenFailure::AudienceMismatch,
        ),
        (
            "no audience",
            t(claims(json!({"aud": null}))),
            TokenFailure::AudienceMismatch,
        ),
    ];
    for (what, token, want) in cases {
        assert_eq!(check(&i, keys(), &token).await.err(), Some(want), "{what}");
    }
    // Within the skew everything passes.
    let edge = t(claims(
        json!({"exp": NOW - 60, "nbf": NOW + 60, "iat": NOW + 60}),
    ));
    assert!(check(&i, keys(), &edge).await.is_ok());
    // Claims the mapping cannot read.
    for bad in [
        json!({"sub": ""}),
        json!({"sub": 7}),
        json!({"groups": [1]}),
        json!({"groups": {"a": 1}}),
    ] {
        let c = check(&i, keys(), &t(claims(bad.clone())))
            .await
            .expect("signature fine");
        assert_eq!(
            principal(&i, &c, []).err(),
            Some(TokenFailure::ClaimInvalid),
            "{bad}"
        );
    }
}

#[tokio::test]
async fn an_unknown_kid_refetches_at_most_once_per_cooldown() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let k1 = ed("k1", 1);
    let k2 = ed("k2", 2);
    let served = Arc::new(std::sync::Mutex::new(json!({"keys": [k1.jwk.clone()]})));
    let hits = Arc::new(AtomicUsize::new(0));
    let app = {
        let (served, hits) = (served.clone(), hits.clone());
        axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let (served, hits) = (served.clone(), hits.clone());
                async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    axum::Json(served.lock().map(|g| g.clone()).unwrap_or_default())
                }
            }),
        )
    };
    let l = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = l.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(l, app).await });
    let mut i = issuer(&["EdDSA"]);
    i.jwks_uri = Some(format!("http://{addr}/jwks"));
    let cache = JwksCache::default();
    let t1 = ed_token(&k1, "k1", claims(json!({})));
    assert!(
        verify(&cache, &i, &t1, NOW).await.is_ok(),
        "first use fetches"
    );
    assert!(
        verify(&cache, &i, &t1, NOW).await.is_ok(),
        "then the cache answers"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    // The issuer rotates to k2; a flood of k2 tokens within the cooldown fetches nothing more.
    *served.lock().expect("lock") = json!({"keys": [k1.jwk.clone(), k2.jwk.clone()]});
    let t2 = ed_token(&k2, "k2", claims(json!({})));
    for _ in 0..20 {
        assert_eq!(
            verify(&cache, &i, &t2, NOW).await.err(),
            Some(TokenFailure::KeyUnknown)
        );
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1, "refetches are rate-limited");
    // An issuer whose keys cannot be fetched at all: 503, not 401.
    let mut gone = issuer(&["EdDSA"]);
    gone.name = "gone".into();
    gone.jwks_uri = Some("http://127.0.0.1:9/jwks".into());
    assert_eq!(
        verify(&cache, &gone, &t1, NOW).await.err(),
        Some(TokenFailure::JwksUnavailable)
    );
}

#[tokio::test]
async fn a_verified_token_is_remembered_only_while_it_and_its_issuer_hold() {
    let i = issuer(&["EdDSA"]);
    let k = ed("k1", 1);
    let cache = JwksCache::preloaded(&i, vec![k.jwk.clone()]);
    let t = ed_token(&k, "k1", claims(json!({"exp": NOW + 100})));
    assert!(verify(&cache, &i, &t, NOW).await.is_ok());
    assert!(
        verify(&cache, &i, &t, NOW + 1).await.is_ok(),
        "answered from memory"
    );
    // Past its exp and the skew: refused, not answered from memory.
    assert_eq!(
        verify(&cache, &i, &t, NOW + 161).await.err(),
        Some(TokenFailure::Expired)
    );
    // The issuer stops accepting the audience: checked again, and refused.
    let mut narrowed = i.clone();
    narrowed.audiences = vec!["another-app".into()];
    assert_eq!(
        verify(&cache, &narrowed, &t, NOW).await.err(),
        Some(TokenFailure::AudienceMismatch)
    );
}

#[test]
fn token_hash_is_base64url_sha256() {
    assert_eq!(
        token_hash("abc"),
        "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
    );
}

mod props {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Whatever arrives as `Edge-Token` (three dot-separated parts of anything, or not), the
        /// check refuses it without panicking and without fetching anything.
        #[test]
        fn arbitrary_tokens_are_refused_without_panic(
            parts in proptest::collection::vec("[A-Za-z0-9_\\-]{0,60}", 0..5),
            raw in ".{0,200}",
            use_raw in any::<bool>(),
        ) {
            let i = issuer(&["EdDSA", "RS256", "ES256"]);
            let token = if use_raw { raw } else { parts.join(".") };
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let got = rt.block_on(check(&i, vec![ed("k1", 1).jwk], &token));
            prop_assert!(got.is_err());
        }

        /// A valid token with its payload part replaced by any other JSON object never verifies.
        #[test]
        fn a_swapped_payload_never_verifies(sub in "[a-z]{1,12}", aud in "[a-z]{1,12}") {
            let i = issuer(&["EdDSA"]);
            let k = ed("k1", 1);
            let t = ed_token(&k, "k1", claims(json!({})));
            let mut parts: Vec<String> = t.split('.').map(str::to_string).collect();
            parts[1] = b64(&claims(json!({"sub": sub, "aud": aud})));
            let rt = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
            let got = rt.block_on(check(&i, vec![k.jwk], &parts.join(".")));
            prop_assert!(got.is_err());
        }
    }
}
