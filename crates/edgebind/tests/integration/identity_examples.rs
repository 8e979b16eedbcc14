//! The five identity examples (`examples/identity/*.yaml`) through the gateway's own checks: a
//! local signer mints tokens in exactly each provider's shape (docs/reference/identity-token-shapes.md,
//! with the provider documentation cited in each example), the gateway verifies them against the
//! issuer as compiled from the example (`token::verify`), maps the principal (`token::principal`)
//! and decides with the example's policies (`policy::evaluate`). For each provider a token with a
//! wrong account, tag, ref, namespace, tenant or audience is refused with its reason. The Worker
//! side (workerd, the real gateway binary) is `worker/test/identity.e2e.test.mjs`.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{self as rs, EcdsaKeyPair, KeyPair, RsaKeyPair};
use serde_json::{Value, json};

use edgebind::crd::{IdentityIssuer, VolumeAccessPolicy};
use edgebind::gateway::compile::{IssuerEntry, compile_bundle};
use edgebind::gateway::policy::{self, Action, Bundle, Decision, PolicyRequest};
use edgebind::gateway::token::{self, JwksCache, TokenFailure};

const NOW: i64 = 1_796_000_100;
const GIB: u64 = 1 << 30;
/// A 2048-bit RSA key made for these tests with `openssl genpkey` (PKCS#1 DER, base64).
const RSA_DER: &str = include_str!("fixtures/test-rsa-2048.der.b64");

fn repo_file(path: &str) -> String {
    let p = format!("{}/../../{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"))
}

/// A key of one algorithm: signs, and shows itself as the issuer's JWK (with `alg`, as the
/// issuer's JWK Set declares it).
enum Signer {
    Ec(EcdsaKeyPair, &'static str, &'static str),
    Rsa(RsaKeyPair),
}

impl Signer {
    fn ec(alg: &'static str) -> Signer {
        let (a, crv): (&'static rs::EcdsaSigningAlgorithm, _) = match alg {
            "ES256" => (&rs::ECDSA_P256_SHA256_FIXED_SIGNING, "P-256"),
            _ => (&rs::ECDSA_P384_SHA384_FIXED_SIGNING, "P-384"),
        };
        let rng = SystemRandom::new();
        let der = EcdsaKeyPair::generate_pkcs8(a, &rng).expect("EC key");
        Signer::Ec(
            EcdsaKeyPair::from_pkcs8(a, der.as_ref(), &rng).expect("EC key"),
            alg,
            crv,
        )
    }

    fn rsa() -> Signer {
        let der = STANDARD.decode(RSA_DER.trim()).expect("base64");
        Signer::Rsa(RsaKeyPair::from_der(&der).expect("RSA key"))
    }

    fn alg(&self) -> &'static str {
        match self {
            Signer::Ec(_, alg, _) => alg,
            Signer::Rsa(_) => "RS256",
        }
    }

    fn jwk(&self, kid: &str) -> Value {
        match self {
            Signer::Ec(k, alg, crv) => {
                let p = k.public_key().as_ref();
                let n = (p.len() - 1) / 2;
                json!({"kty": "EC", "crv": crv, "kid": kid, "alg": alg, "use": "sig",
                       "x": URL_SAFE_NO_PAD.encode(&p[1..=n]), "y": URL_SAFE_NO_PAD.encode(&p[n + 1..])})
            }
            Signer::Rsa(k) => {
                let p = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(k.public());
                json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
                       "n": URL_SAFE_NO_PAD.encode(&p.n), "e": URL_SAFE_NO_PAD.encode(&p.e)})
            }
        }
    }

    /// A compact JWS with header `{"alg", "kid", "typ"}` over `payload`.
    fn mint(&self, kid: &str, payload: &Value) -> String {
        let header = json!({"alg": self.alg(), "kid": kid, "typ": "JWT"});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(payload.to_string())
        );
        let rng = SystemRandom::new();
        let sig = match self {
            Signer::Ec(k, ..) => k
                .sign(&rng, input.as_bytes())
                .expect("sign")
                .as_ref()
                .to_vec(),
            Signer::Rsa(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&rs::RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut sig)
                    .expect("sign");
                sig
            }
        };
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }
}

/// One example file, compiled as the controller compiles it.
struct Example {
    issuer: IssuerEntry,
    bundle: Bundle,
}

fn example(file: &str) -> Example {
    let docs: Vec<Value> = serde_yaml::Deserializer::from_str(&repo_file(file))
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML"))
        .collect();
    let of_kind = |k: &'static str| docs.iter().filter(move |d| d["kind"] == k).cloned();
    let issuers: Vec<IdentityIssuer> = of_kind("IdentityIssuer")
        .map(|d| serde_json::from_value(d).expect("IdentityIssuer"))
        .collect();
    let policies: Vec<VolumeAccessPolicy> = of_kind("VolumeAccessPolicy")
        .map(|d| serde_json::from_value(d).expect("VolumeAccessPolicy"))
        .collect();
    assert_eq!(issuers.len(), 1, "{file}: one issuer");
    assert!(!policies.is_empty(), "{file}: a policy");
    let compiled = compile_bundle(&issuers, &policies);
    // What the Worker loads must also be what the gateway accepts.
    let bundle = Bundle::parse(&compiled.bundle_json()).expect("the bundle validates");
    Example {
        issuer: compiled.issuers[0].clone(),
        bundle,
    }
}

/// The gateway's answer for `action` on volume `name` in team-a: `Ok(reason)` of the decision,
/// or `Err` with the token's refusal.
async fn decide(
    ex: &Example,
    cache: &JwksCache,
    token: &str,
    action: &str,
    name: &str,
) -> Result<String, &'static str> {
    let claims = token::verify(cache, &ex.issuer, token, NOW)
        .await
        .map_err(TokenFailure::code)?;
    let referenced = ex
        .bundle
        .policies
        .iter()
        .flat_map(|p| &p.subjects)
        .filter(|m| m.issuer == ex.issuer.name)
        .flat_map(|m| m.claims.iter().map(|c| c.claim.as_str()));
    let who = token::principal(&ex.issuer, &claims, referenced).map_err(TokenFailure::code)?;
    let labels = Default::default();
    let out = policy::evaluate(
        &ex.bundle,
        &PolicyRequest {
            action: Action::parse(action).expect("action"),
            namespace: "team-a",
            name: Some(name),
            labels: Some(&labels),
            size_bytes: matches!(action, "create" | "resize").then_some(GIB),
            client_ip: Some("203.0.113.7"),
            principal: &who,
        },
    );
    Ok(match (out.decision, out.reason) {
        (Decision::Allow, _) => "policy_allowed".to_string(),
        (_, Some(r)) => r.code().to_string(),
        (d, None) => format!("{d:?}"),
    })
}

/// Mints with `signer` under `ex`'s issuer, with the standard claims filled in.
fn token_for(ex: &Example, signer: &Signer, mut payload: Value) -> String {
    let p = payload.as_object_mut().expect("object");
    p.entry("iss").or_insert(json!(ex.issuer.issuer));
    p.entry("iat").or_insert(json!(NOW - 60));
    p.entry("exp").or_insert(json!(NOW + 240));
    signer.mint("k1", &payload)
}

fn cache(ex: &Example, signer: &Signer) -> JwksCache {
    JwksCache::preloaded(&ex.issuer, vec![signer.jwk("k1")])
}

const AWS_NS: &str = "https://sts.amazonaws.com/";

fn aws_payload(account: &str, role: &str, team: &str, aud: &str) -> Value {
    json!({"aud": aud, "sub": format!("arn:aws:iam::{account}:role/{role}"), "jti": "4c1e",
        AWS_NS: {"aws_account": account, "source_region": "eu-central-1", "org_id": "o-exmpl12345",
                 "ou_path": "o-exmpl12345/r-ab12/ou-ab12-aaaa1111/",
                 "principal_tags": {"team": team, "env": "prod"}, "request_tags": {"team": "storage"}}})
}

#[tokio::test]
async fn aws_iam_outbound_federation_example() {
    let ex = example("examples/identity/aws-iam.yaml");
    const AUD: &str = "https://storage.example.com";
    // STS signs with the algorithm the caller asks for: both ES384 and RS256 verify.
    for signer in [Signer::ec("ES384"), Signer::rsa()] {
        let c = cache(&ex, &signer);
        let ok = token_for(
            &ex,
            &signer,
            aws_payload("210987654321", "app-writer", "storage", AUD),
        );
        assert_eq!(
            decide(&ex, &c, &ok, "create", "app-db").await,
            Ok("policy_allowed".into())
        );
        let claims = token::verify(&c, &ex.issuer, &ok, NOW)
            .await
            .expect("valid");
        let who = token::principal(&ex.issuer, &claims, []).expect("principal");
        assert_eq!(who.subject, "aws:arn:aws:iam::210987654321:role/app-writer");
        assert_eq!(who.groups, vec!["aws:env=prod", "aws:team=storage"]);
        for (what, payload, want) in [
            (
                "another account",
                aws_payload("999999999999", "app-writer", "storage", AUD),
                Ok("policy_no_match"),
            ),
            (
                "another team tag (a request tag saying storage does not count)",
                aws_payload("210987654321", "app-writer", "billing", AUD),
                Ok("policy_no_match"),
            ),
            (
                "a role under a path: * stops at /",
                aws_payload("210987654321", "team/app-writer", "storage", AUD),
                Ok("policy_no_match"),
            ),
            (
                "another audience",
                aws_payload(
                    "210987654321",
                    "app-writer",
                    "storage",
                    "https://other.example",
                ),
                Err("audience_mismatch"),
            ),
        ] {
            let t = token_for(&ex, &signer, payload);
            let got = decide(&ex, &c, &t, "create", "app-db").await;
            assert_eq!(got, want.map(str::to_string), "{}: {what}", signer.alg());
        }
    }
}

fn gha_payload(owner_id: &str, git_ref: &str, aud: &str) -> Value {
    json!({"aud": aud, "sub": "repo:acme/storage-ops:environment:prod", "environment": "prod",
        "repository": "acme/storage-ops", "repository_id": "90210", "repository_owner": "acme",
        "repository_owner_id": owner_id, "repository_visibility": "private", "ref": git_ref,
        "ref_type": "branch", "sha": "e3b0c442", "workflow_ref": format!("acme/storage-ops/.github/workflows/snap.yml@{git_ref}"),
        "job_workflow_ref": "acme/shared/.github/workflows/deploy.yml@refs/tags/v3",
        "runner_environment": "github-hosted", "event_name": "push", "actor": "octo", "actor_id": "77",
        "run_id": "1", "run_number": "1", "run_attempt": "1", "jti": "j", "nbf": NOW - 600})
}

#[tokio::test]
async fn github_actions_example() {
    let ex = example("examples/identity/github-actions.yaml");
    let signer = Signer::rsa();
    let c = cache(&ex, &signer);
    const AUD: &str = "https://storage.example.com";
    for (git_ref, want) in [
        ("refs/heads/main", "policy_allowed"),
        ("refs/heads/release/1.2", "policy_allowed"),
        ("refs/heads/release/1/evil", "policy_no_match"),
        ("refs/heads/feature/x", "policy_no_match"),
        ("refs/tags/release/1.2", "policy_no_match"),
    ] {
        let t = token_for(&ex, &signer, gha_payload("5001", git_ref, AUD));
        assert_eq!(
            decide(&ex, &c, &t, "create", "ci-cache").await,
            Ok(want.into()),
            "{git_ref}"
        );
    }
    // A renamed-and-recycled owner name with another id; GitHub's default audience.
    let t = token_for(&ex, &signer, gha_payload("6666", "refs/heads/main", AUD));
    assert_eq!(
        decide(&ex, &c, &t, "create", "ci-cache").await,
        Ok("policy_no_match".into())
    );
    let t = token_for(
        &ex,
        &signer,
        gha_payload("5001", "refs/heads/main", "https://github.com/acme"),
    );
    assert_eq!(
        decide(&ex, &c, &t, "create", "ci-cache").await,
        Err("audience_mismatch")
    );
}

fn k8s_payload(ns: &str, sa: &str, aud: &str) -> Value {
    json!({"aud": [aud], "sub": format!("system:serviceaccount:{ns}:{sa}"), "nbf": NOW - 60, "jti": "9a4d",
        "kubernetes.io": {"namespace": ns, "serviceaccount": {"name": sa, "uid": "3f0e"},
                          "pod": {"name": "snapper-7c9d-x2", "uid": "b81a"}, "node": {"name": "worker-3", "uid": "0c55"}}})
}

#[tokio::test]
async fn kubernetes_service_account_example() {
    let ex = example("examples/identity/kubernetes.yaml");
    const AUD: &str = "https://storage.example.com";
    for signer in [Signer::ec("ES256"), Signer::rsa()] {
        let c = cache(&ex, &signer);
        for (payload, want) in [
            (k8s_payload("backup", "snapper", AUD), Ok("policy_allowed")),
            (k8s_payload("backup", "restorer", AUD), Ok("policy_allowed")),
            (
                k8s_payload("backup", "intruder", AUD),
                Ok("policy_no_match"),
            ),
            (k8s_payload("other", "snapper", AUD), Ok("policy_no_match")),
            // The default in-pod token is for the API server, not for us.
            (
                k8s_payload(
                    "backup",
                    "snapper",
                    "https://kubernetes.default.svc.cluster.local",
                ),
                Err("audience_mismatch"),
            ),
        ] {
            let t = token_for(&ex, &signer, payload.clone());
            assert_eq!(
                decide(&ex, &c, &t, "create", "backup-1").await,
                want.map(str::to_string),
                "{payload}"
            );
        }
        // A legacy Secret token: another issuer, no aud, no exp.
        let legacy = signer.mint(
            "k1",
            &json!({"iss": "kubernetes/serviceaccount", "sub": "system:serviceaccount:backup:snapper",
                    "kubernetes.io/serviceaccount/namespace": "backup"}),
        );
        assert_eq!(
            decide(&ex, &c, &legacy, "read", "backup-1").await,
            Err("issuer_unknown")
        );
    }
}

const TID: &str = "8d2e6f10-7c1a-4b8e-9d2f-0a1b2c3d4e5f";
const ENTRA_AUD: &str = "6b1f0c2e-4d3a-4f7b-9a11-2c3d4e5f6a7b";

fn entra_payload(tid: &str, roles: &[&str], groups: Option<&[&str]>) -> Value {
    let mut p = json!({"aud": ENTRA_AUD, "iss": format!("https://login.microsoftonline.com/{tid}/v2.0"),
        "nbf": NOW - 60, "ver": "2.0", "tid": tid, "oid": "1a2b3c4d-0000-4000-8000-00000000aaaa",
        "sub": "pQ9xpairwise", "azp": "c0ffee00-0000-4000-8000-000000000001", "azpacr": "1",
        "scp": "volumes.read volumes.write", "roles": roles, "preferred_username": "kim@contoso.example", "uti": "u"});
    match groups {
        Some(g) => p["groups"] = json!(g),
        None => {
            p["_claim_names"] = json!({"groups": "src1"});
            p["_claim_sources"] = json!({"src1": {"endpoint": "https://graph.microsoft.com/v1.0/users/1a2b/getMemberObjects"}});
        }
    }
    p
}

#[tokio::test]
async fn entra_id_example() {
    let ex = example("examples/identity/entra-id.yaml");
    let signer = Signer::rsa();
    let c = cache(&ex, &signer);
    const READERS: &str = "0e6c3a1d-5b7f-4c2e-8a9d-1f2e3d4c5b6a";
    let cases: [(&str, Value, &str, Result<&str, &str>); 7] = [
        (
            "operator role",
            entra_payload(TID, &["Storage.Operator"], Some(&[])),
            "create",
            Ok("policy_allowed"),
        ),
        (
            "no role, reader group",
            entra_payload(TID, &[], Some(&[READERS])),
            "read",
            Ok("policy_allowed"),
        ),
        (
            "no role, reader group, create",
            entra_payload(TID, &[], Some(&[READERS])),
            "create",
            Ok("policy_no_match"),
        ),
        (
            "groups overage with the role: the role still counts",
            entra_payload(TID, &["Storage.Operator"], None),
            "create",
            Ok("policy_allowed"),
        ),
        (
            "groups overage without the role: groups unknown, no group Allow",
            entra_payload(TID, &[], None),
            "read",
            Ok("policy_no_match"),
        ),
        (
            "the role in another tenant's token",
            entra_payload(
                "11111111-2222-4333-8444-555555555555",
                &["Storage.Operator"],
                Some(&[]),
            ),
            "create",
            Err("issuer_unknown"),
        ),
        (
            "another audience",
            {
                let mut p = entra_payload(TID, &["Storage.Operator"], Some(&[]));
                p["aud"] = json!("00000003-0000-0000-c000-000000000000");
                p
            },
            "create",
            Err("audience_mismatch"),
        ),
    ];
    for (what, payload, action, want) in cases {
        let t = token_for(&ex, &signer, payload);
        assert_eq!(
            decide(&ex, &c, &t, action, "app-db").await,
            want.map(str::to_string),
            "{what}"
        );
    }
    // A token of the right issuer whose tid claim disagrees (multi-tenant key reuse): no match.
    let mut p = entra_payload(TID, &["Storage.Operator"], Some(&[]));
    p["tid"] = json!("11111111-2222-4333-8444-555555555555");
    let t = token_for(&ex, &signer, p);
    assert_eq!(
        decide(&ex, &c, &t, "create", "app-db").await,
        Ok("policy_no_match".into())
    );
}

fn okta_payload(groups: &[&str], scp: &[&str], aud: &str) -> Value {
    json!({"ver": 1, "jti": "AT.x9", "aud": aud, "cid": "0oa9client", "sub": "0oa9client",
           "scp": scp, "groups": groups})
}

#[tokio::test]
async fn okta_custom_authorization_server_example() {
    let ex = example("examples/identity/okta.yaml");
    let signer = Signer::rsa();
    let c = cache(&ex, &signer);
    for (what, payload, want) in [
        (
            "member with scope",
            okta_payload(
                &["storage-automation", "oncall"],
                &["volumes.read", "volumes.write"],
                "api://edgebind",
            ),
            Ok("policy_allowed"),
        ),
        (
            "another group",
            okta_payload(&["oncall"], &["volumes.write"], "api://edgebind"),
            Ok("policy_no_match"),
        ),
        (
            "without the write scope",
            okta_payload(&["storage-automation"], &["volumes.read"], "api://edgebind"),
            Ok("policy_no_match"),
        ),
        (
            "the default authorization server's audience",
            okta_payload(&["storage-automation"], &["volumes.write"], "api://default"),
            Err("audience_mismatch"),
        ),
    ] {
        let t = token_for(&ex, &signer, payload);
        assert_eq!(
            decide(&ex, &c, &t, "create", "app-db").await,
            want.map(str::to_string),
            "{what}"
        );
    }
}

/// Algorithms: accepted only as the issuer lists them and its JWK Set declares them; never
/// `none`, never HMAC keyed with the public key (algorithm confusion).
#[tokio::test]
async fn algorithm_refusals() {
    let ex = example("examples/identity/aws-iam.yaml");
    let es = Signer::ec("ES384");
    let c = cache(&ex, &es);
    let payload = aws_payload(
        "210987654321",
        "app-writer",
        "storage",
        "https://storage.example.com",
    );
    let good = token_for(&ex, &es, payload.clone());
    assert_eq!(
        decide(&ex, &c, &good, "read", "app-db").await,
        Ok("policy_allowed".into())
    );
    let body = good.split('.').nth(1).expect("payload").to_string();
    let b64 = |v: Value| URL_SAFE_NO_PAD.encode(v.to_string());

    // alg none, with and without a signature part.
    let none = format!("{}.{body}.", b64(json!({"alg": "none", "kid": "k1"})));
    assert_eq!(
        decide(&ex, &c, &none, "read", "app-db").await,
        Err("alg_not_allowed")
    );
    let none = format!("{}.{body}", b64(json!({"alg": "none"})));
    assert_eq!(
        decide(&ex, &c, &none, "read", "app-db").await,
        Err("token_malformed")
    );

    // HS256/HS384 keyed with the issuer's public key, as an attacker would build it.
    let jwk = es.jwk("k1");
    for (alg, hmac) in [
        ("HS256", ring::hmac::HMAC_SHA256),
        ("HS384", ring::hmac::HMAC_SHA384),
    ] {
        let input = format!("{}.{body}", b64(json!({"alg": alg, "kid": "k1"})));
        for secret in [
            jwk.to_string(),
            jwk["x"].as_str().unwrap_or_default().to_string(),
        ] {
            let key = ring::hmac::Key::new(hmac, secret.as_bytes());
            let sig = ring::hmac::sign(&key, input.as_bytes());
            let forged = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()));
            assert_eq!(
                decide(&ex, &c, &forged, "read", "app-db").await,
                Err("alg_not_allowed"),
                "{alg}"
            );
        }
    }

    // An algorithm the issuer allows (RS256) but this key does not declare (ES384): no key.
    let rsa = Signer::rsa();
    let rs_token = token_for(&ex, &rsa, payload.clone());
    assert_eq!(
        decide(&ex, &c, &rs_token, "read", "app-db").await,
        Err("key_unknown")
    );

    // An algorithm the issuer does not list (ES256), even with a matching key.
    let es256 = Signer::ec("ES256");
    let c256 = cache(&ex, &es256);
    let t = token_for(&ex, &es256, payload.clone());
    assert_eq!(
        decide(&ex, &c256, &t, "read", "app-db").await,
        Err("alg_not_allowed")
    );

    // EdDSA verifies when the issuer lists it and the JWK Set holds an Ed25519 key.
    let mut ed_issuer = ex.issuer.clone();
    ed_issuer.algorithms = serde_json::from_value(json!(["EdDSA"])).expect("algs");
    let ed = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
    let input = format!("{}.{body}", b64(json!({"alg": "EdDSA", "kid": "ed"})));
    let sig = ed25519_dalek::Signer::sign(&ed, input.as_bytes());
    let t = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.to_bytes()));
    let edjwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "ed", "alg": "EdDSA",
                       "x": URL_SAFE_NO_PAD.encode(ed.verifying_key().as_bytes())});
    let ced = JwksCache::preloaded(&ed_issuer, vec![edjwk]);
    assert!(token::verify(&ced, &ed_issuer, &t, NOW).await.is_ok());
}
