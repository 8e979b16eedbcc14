//! The §9 test vector and the refusal order.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderMap, HeaderValue};

use super::*;
use crate::gateway::keys::parse_public_key;

const IDENTITY: &str = "eyJ2IjoxLCJpc3N1ZXIiOiJva3RhLXByb2QiLCJpc3N1ZXJVcmwiOiJodHRwczovL2lkcC5leGFtcGxlLmNvbSIsInN1YmplY3QiOiJva3RhLXByb2Q6YWxpY2UiLCJncm91cHMiOlsib2t0YS1wcm9kOnN0b3JhZ2UtYWRtaW5zIl0sImNsYWltcyI6e30sInRva2VuSnRpIjoianRpLTEiLCJ0b2tlbkV4cCI6MTc2NDI0MDMwMCwiY2xpZW50SXAiOiIyMDMuMC4xMTMuNyIsImVkZ2VMb2NhdGlvbiI6IkZSQSIsInJheUlkIjpudWxsLCJwb2xpY3lSZXZpc2lvbiI6InNoYTI1NjowMCIsImRlY2lzaW9uIjoiYWxsb3ciLCJwb2xpY3kiOiJ0ZWFtLWEvc3RvcmFnZS1hZG1pbnMifQ";
const SIG_INPUT: &str = r#"sig1=("@method" "@authority" "@path" "@query" "content-type" "content-digest" "edge-identity" "edge-request-id");created=1764240000;expires=1764240060;nonce="AAECAwQFBgcICQoLDA0ODw";alg="ed25519";keyid="test-key-ed25519";tag="edgebind-v1""#;
const SIGNATURE: &str = "sig1=:hvY11vnA4VyIdIC4fwoO6EDCLFW+6vcXV2hFFqBCXWNkGlosQjxf52NyNy+WdQH2RPXwThDcftZslvGLDpHzDA==:";
const PATH: &str = "/api/v1/namespaces/team-a/volumes/pvc-42";
const PKCS8: &str = "MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF";
const X: &str = "JrQLj5P_89iXES9-vFgrIy29clF9CC_oPPsw3c5D0bs";

fn vector_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    let mut put = |k: &'static str, v: &str| {
        h.insert(k, HeaderValue::from_str(v).expect("vector header is ASCII"));
    };
    put("content-type", "application/json");
    put(
        "content-digest",
        "sha-256=:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=:",
    );
    put("edge-identity", IDENTITY);
    put("edge-request-id", "0b7c6a53-2f4e-4b8e-9a43-6f1d2c3b4a59");
    put("signature-input", SIG_INPUT);
    put("signature", SIGNATURE);
    h
}

fn keys() -> KeySet {
    KeySet::new([(
        "test-key-ed25519".to_string(),
        parse_public_key(X.as_bytes()).expect("vector key"),
        "team-a".to_string(),
    )])
}

fn check(h: &HeaderMap, path: &str, body: &[u8], now: i64) -> Result<Verified, Reason> {
    let req = SignedRequest {
        method: "GET",
        authority: Some("gw.example.com"),
        path,
        query: None,
        headers: h,
        body,
    };
    verify(&req, &keys(), now).map_err(|r| r.reason)
}

#[test]
fn vector_verifies_inside_the_window() {
    let h = vector_headers();
    for now in [1764240000, 1764240045, 1764240090] {
        let v = check(&h, PATH, b"", now).expect("vector verifies");
        assert_eq!(v.key_id, "test-key-ed25519");
        assert_eq!(v.nonce, "AAECAwQFBgcICQoLDA0ODw");
    }
}

#[test]
fn vector_base_is_the_documented_one() {
    let h = vector_headers();
    let req = SignedRequest {
        method: "get",
        authority: Some("GW.example.com"),
        path: PATH,
        query: None,
        headers: &h,
        body: b"",
    };
    let base = signature_base(&req, &SIG_INPUT["sig1=".len()..]).expect("all headers present");
    assert_eq!(base.lines().count(), 9);
    assert!(base.starts_with("\"@method\": GET\n\"@authority\": gw.example.com\n"));
    assert!(base.contains("\n\"@query\": ?\n"));
    assert!(!base.ends_with('\n'));
}

#[test]
fn vector_expires_after_skew() {
    assert_eq!(
        check(&vector_headers(), PATH, b"", 1764240091),
        Err(Reason::SigExpired)
    );
    assert_eq!(
        check(&vector_headers(), PATH, b"", 1764239969),
        Err(Reason::SigFuture)
    );
}

#[test]
fn any_changed_covered_value_is_sig_invalid() {
    assert_eq!(
        check(
            &vector_headers(),
            "/api/v1/namespaces/team-a/volumes/pvc-43",
            b"",
            1764240010
        ),
        Err(Reason::SigInvalid)
    );
    for (name, value) in [
        ("edge-request-id", "0b7c6a53-2f4e-4b8e-9a43-6f1d2c3b4a5a"),
        ("edge-identity", "e30"),
        ("content-type", "text/plain"),
        ("content-digest", "sha-256=:AAAA:"),
    ] {
        let mut h = vector_headers();
        h.insert(name, HeaderValue::from_static(value));
        assert_eq!(
            check(&h, PATH, b"", 1764240010),
            Err(Reason::SigInvalid),
            "{name}"
        );
    }
    let mut h = vector_headers();
    h.remove("edge-request-id");
    assert_eq!(check(&h, PATH, b"", 1764240010), Err(Reason::SigInvalid));
}

#[test]
fn body_not_matching_digest_is_digest_mismatch() {
    assert_eq!(
        check(&vector_headers(), PATH, b"{}", 1764240010),
        Err(Reason::DigestMismatch)
    );
}

#[test]
fn other_key_id_is_key_unknown() {
    let mut h = vector_headers();
    h.insert(
        "signature-input",
        HeaderValue::from_str(&SIG_INPUT.replace("test-key-ed25519", "other-key")).expect("ascii"),
    );
    assert_eq!(check(&h, PATH, b"", 1764240010), Err(Reason::KeyUnknown));
}

#[test]
fn header_problems_map_to_their_codes() {
    let mut h = vector_headers();
    h.remove("signature");
    assert_eq!(check(&h, PATH, b"", 1764240010), Err(Reason::SigMissing));

    let mut h = vector_headers();
    h.append("signature", HeaderValue::from_static("sig1=:AAAA:"));
    assert_eq!(check(&h, PATH, b"", 1764240010), Err(Reason::SigMultiple));

    let mut h = vector_headers();
    let two = format!("{SIG_INPUT}, sig2=(\"@method\")");
    h.insert(
        "signature-input",
        HeaderValue::from_str(&two).expect("ascii"),
    );
    assert_eq!(check(&h, PATH, b"", 1764240010), Err(Reason::SigMultiple));

    // A duplicated label parses as one member (the last wins) while the signed bytes would
    // start at the first: refused in either header.
    let mut h = vector_headers();
    let dup = format!("{SIG_INPUT}, {SIG_INPUT}");
    h.insert(
        "signature-input",
        HeaderValue::from_str(&dup).expect("ascii"),
    );
    assert_eq!(check(&h, PATH, b"", 1764240010), Err(Reason::SigMultiple));
    let mut h = vector_headers();
    let dup = format!("sig1=:AAAA:, {SIGNATURE}");
    h.insert("signature", HeaderValue::from_str(&dup).expect("ascii"));
    assert_eq!(check(&h, PATH, b"", 1764240010), Err(Reason::SigMultiple));

    let mut h = vector_headers();
    h.insert(
        "signature-input",
        HeaderValue::from_static("sig2=(\"@method\")"),
    );
    assert_eq!(check(&h, PATH, b"", 1764240010), Err(Reason::SigMissing));

    for bad in [
        SIG_INPUT.replace("edgebind-v1", "other-v1"),
        SIG_INPUT.replace("\"ed25519\"", "\"rsa-pss-sha512\""),
        SIG_INPUT.replace(" \"edge-request-id\"", ""),
        SIG_INPUT.replace("\"@method\" \"@authority\"", "\"@authority\" \"@method\""),
        SIG_INPUT.replace(
            "created=1764240000;expires=1764240060",
            "expires=1764240060;created=1764240000",
        ),
        SIG_INPUT.replace("AAECAwQFBgcICQoLDA0ODw", "short"),
        SIG_INPUT.replace("(\"@method\"", "(\"@method"),
    ] {
        let mut h = vector_headers();
        h.insert(
            "signature-input",
            HeaderValue::from_str(&bad).expect("ascii"),
        );
        assert_eq!(
            check(&h, PATH, b"", 1764240010),
            Err(Reason::SigTag),
            "{bad}"
        );
    }
}

#[test]
fn lifetime_over_sixty_seconds_is_sig_window() {
    let mut h = vector_headers();
    h.insert(
        "signature-input",
        HeaderValue::from_str(&SIG_INPUT.replace("expires=1764240060", "expires=1764240061"))
            .expect("ascii"),
    );
    assert_eq!(check(&h, PATH, b"", 1764240010), Err(Reason::SigWindow));
}

#[test]
fn verification_leaves_the_nonce_to_the_caller() {
    // The nonce is recorded only once the request is authorised (api::admit), so verifying
    // the same request twice succeeds both times and stores nothing.
    let h = vector_headers();
    let req = SignedRequest {
        method: "GET",
        authority: Some("gw.example.com"),
        path: PATH,
        query: None,
        headers: &h,
        body: b"",
    };
    let v = verify(&req, &keys(), 1764240010).expect("verifies");
    assert_eq!(v.forget_after(), 1764240060 + SKEW_SECONDS);
    assert!(verify(&req, &keys(), 1764240011).is_ok());
    let nonces = NonceCache::new(16);
    assert!(nonces.check_and_insert(&v.key_id, &v.nonce, v.forget_after(), 1764240011));
    assert!(!nonces.check_and_insert(&v.key_id, &v.nonce, v.forget_after(), 1764240012));
}

#[test]
fn nonce_cache_forgets_expired_pairs_and_fails_closed_when_full() {
    let c = NonceCache::new(2);
    assert!(c.check_and_insert("k", "a", 100, 10));
    assert!(c.check_and_insert("k", "b", 200, 10));
    assert!(!c.check_and_insert("k", "c", 100, 50), "full of live pairs");
    assert!(
        c.check_and_insert("k", "c", 300, 150),
        "a expired, room again"
    );
    assert_eq!(c.len(), 2);
}

#[test]
fn a_key_that_fills_its_partition_leaves_the_other_keys_room() {
    let c = NonceCache::new(3);
    for n in ["a", "b", "c"] {
        assert!(c.check_and_insert("flooder", n, 100, 10));
    }
    assert!(
        !c.check_and_insert("flooder", "d", 100, 10),
        "its own partition is full"
    );
    for n in ["a", "b", "c"] {
        assert!(
            c.check_and_insert("quiet", n, 100, 10),
            "another key is unaffected"
        );
    }
    // Once everything has expired, sweeping drops the partitions of keys no longer in use.
    assert!(c.check_and_insert("flooder", "e", 300, 200));
    assert_eq!(c.len(), 1);
}

#[test]
fn signer_reproduces_the_vector() {
    let der = STANDARD.decode(PKCS8).expect("vector pkcs8");
    let seed: [u8; 32] = der[der.len() - 32..].try_into().expect("32-byte seed");
    let key = ed25519_dalek::SigningKey::from_bytes(&seed);
    let mut h = HeaderMap::new();
    h.insert("edge-identity", HeaderValue::from_static(IDENTITY));
    h.insert(
        "edge-request-id",
        HeaderValue::from_static("0b7c6a53-2f4e-4b8e-9a43-6f1d2c3b4a59"),
    );
    Signer {
        key: &key,
        key_id: "test-key-ed25519",
        created: 1764240000,
        expires: 1764240060,
        nonce: "AAECAwQFBgcICQoLDA0ODw",
    }
    .sign("GET", "gw.example.com", PATH, None, &mut h, b"");
    assert_eq!(
        h.get("signature").map(|v| v.as_bytes()),
        Some(SIGNATURE.as_bytes())
    );
    assert_eq!(
        h.get("signature-input").map(|v| v.as_bytes()),
        Some(SIG_INPUT.as_bytes())
    );
}

mod props {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn parsing_never_panics(input in ".{0,300}", sig in ".{0,120}") {
            let mut h = HeaderMap::new();
            if let (Ok(i), Ok(s)) = (HeaderValue::from_str(&input), HeaderValue::from_str(&sig)) {
                h.insert("signature-input", i);
                h.insert("signature", s);
                let _ = parse_headers(&h);
            }
        }

        /// A second member in either header, under any label (`sig1` again included), is never
        /// accepted: the signed bytes start at the first member, a parser keeps the last.
        #[test]
        fn a_second_member_is_refused_whatever_its_label(
            label in "[a-z][a-z0-9]{0,6}",
            in_signature in any::<bool>(),
            first in any::<bool>(),
        ) {
            let mut h = vector_headers();
            let (name, vector) = if in_signature {
                ("signature", SIGNATURE)
            } else {
                ("signature-input", SIG_INPUT)
            };
            let other = format!("{label}={}", &vector["sig1=".len()..]);
            let both = if first { format!("{other}, {vector}") } else { format!("{vector}, {other}") };
            h.insert(name, HeaderValue::from_str(&both).expect("ascii"));
            let got = check(&h, PATH, b"", 1764240010);
            prop_assert!(got.is_err(), "{both} was accepted");
            if label == "sig1" || in_signature || !first {
                prop_assert_eq!(got.err(), Some(Reason::SigMultiple));
            }
        }

        #[test]
        fn mutated_vector_input_never_panics_nor_verifies(pos in 0usize..400, byte in 0x20u8..0x7f) {
            let mut bytes = SIG_INPUT.as_bytes().to_vec();
            let pos = pos % bytes.len();
            prop_assume!(bytes[pos] != byte);
            bytes[pos] = byte;
            let mut h = vector_headers();
            if let Ok(v) = HeaderValue::from_bytes(&bytes) {
                h.insert("signature-input", v);
                prop_assert!(check(&h, PATH, b"", 1764240010).is_err());
            }
        }
    }
}
