//! The `Edge-Identity` header (docs/edge-protocol.md §5.4): the principal the Worker
//! authenticated and signed. The gateway trusts it only after the signature verified.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

/// Longest accepted encoded header.
pub const MAX_ENCODED_LEN: usize = 8192;

/// The principal as the policy sees it (§2.2, §3.2).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Principal {
    /// Issuer **name**.
    pub issuer: String,
    /// Prefixed subject.
    pub subject: String,
    /// Prefixed groups.
    pub groups: Vec<String>,
    /// The token says its groups are held elsewhere (§2.3, Entra ID's overage): a policy entry
    /// that names groups cannot be evaluated for this caller, which fails closed.
    pub groups_unknown: bool,
    /// Normalized claim values; `None` is *unevaluable*. A name absent from the map is also
    /// unevaluable.
    pub claims: BTreeMap<String, Option<Vec<String>>>,
}

/// The decoded identity.
#[derive(Clone, Debug, PartialEq)]
pub struct EdgeIdentity {
    pub principal: Principal,
    pub client_ip: Option<String>,
    pub edge_location: Option<String>,
    pub ray_id: Option<String>,
    /// The Worker's bundle revision, and its advisory decision and policy (logged only).
    pub policy_revision: Option<String>,
    pub worker_decision: Option<String>,
    pub worker_policy: Option<String>,
    /// base64url SHA-256 of the token the Worker forwarded in `Edge-Token` (`gateway::token`).
    pub token_hash: Option<String>,
    /// When the Worker received the request (Unix ms) and its token check took (ms): the edge
    /// stages of the request's completion event (`request_trace`).
    pub received_at: Option<i64>,
    pub verify_ms: Option<f64>,
}

fn opt_string(obj: &serde_json::Map<String, Value>, key: &str) -> Option<String> {
    obj.get(key).and_then(Value::as_str).map(str::to_string)
}

/// A claim value as the Worker normalized it: a list of strings, anything else unevaluable.
fn claim_values(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|e| e.as_str().map(str::to_string))
        .collect()
}

/// Decodes and checks the header value. `None` means `identity_invalid`.
pub fn parse(header: &str) -> Option<EdgeIdentity> {
    let header = header.trim();
    if header.len() > MAX_ENCODED_LEN {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(header).ok()?;
    let Value::Object(obj) = serde_json::from_slice::<Value>(&bytes).ok()? else {
        return None;
    };
    if obj.get("v").and_then(Value::as_i64) != Some(1) {
        return None;
    }
    let issuer = opt_string(&obj, "issuer")?;
    let subject = opt_string(&obj, "subject")?;
    let groups = obj
        .get("groups")?
        .as_array()?
        .iter()
        .map(|g| g.as_str().map(str::to_string))
        .collect::<Option<Vec<_>>>()?;
    let claims = match obj.get("claims") {
        Some(Value::Object(c)) => c
            .iter()
            .map(|(k, v)| (k.clone(), claim_values(v)))
            .collect(),
        _ => BTreeMap::new(),
    };
    Some(EdgeIdentity {
        principal: Principal {
            issuer,
            subject,
            groups,
            groups_unknown: obj.get("groupsUnknown") == Some(&Value::Bool(true)),
            claims,
        },
        client_ip: opt_string(&obj, "clientIp"),
        edge_location: opt_string(&obj, "edgeLocation"),
        ray_id: opt_string(&obj, "rayId"),
        policy_revision: opt_string(&obj, "policyRevision"),
        worker_decision: opt_string(&obj, "decision"),
        worker_policy: opt_string(&obj, "policy"),
        token_hash: opt_string(&obj, "tokenHash"),
        received_at: obj.get("receivedAt").and_then(Value::as_i64),
        verify_ms: obj
            .get("verifyMs")
            .and_then(Value::as_f64)
            .filter(|v| v.is_finite() && *v >= 0.0),
    })
}

/// Encodes an identity the way the Worker does (for tests and tools).
pub fn encode(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn vector_identity_parses() {
        let id = parse("eyJ2IjoxLCJpc3N1ZXIiOiJva3RhLXByb2QiLCJpc3N1ZXJVcmwiOiJodHRwczovL2lkcC5leGFtcGxlLmNvbSIsInN1YmplY3QiOiJva3RhLXByb2Q6YWxpY2UiLCJncm91cHMiOlsib2t0YS1wcm9kOnN0b3JhZ2UtYWRtaW5zIl0sImNsYWltcyI6e30sInRva2VuSnRpIjoianRpLTEiLCJ0b2tlbkV4cCI6MTc2NDI0MDMwMCwiY2xpZW50SXAiOiIyMDMuMC4xMTMuNyIsImVkZ2VMb2NhdGlvbiI6IkZSQSIsInJheUlkIjpudWxsLCJwb2xpY3lSZXZpc2lvbiI6InNoYTI1NjowMCIsImRlY2lzaW9uIjoiYWxsb3ciLCJwb2xpY3kiOiJ0ZWFtLWEvc3RvcmFnZS1hZG1pbnMifQ").expect("vector identity");
        assert_eq!(id.principal.subject, "okta-prod:alice");
        assert_eq!(id.principal.groups, vec!["okta-prod:storage-admins"]);
        assert_eq!(id.client_ip.as_deref(), Some("203.0.113.7"));
        assert_eq!(id.ray_id, None);
    }

    #[test]
    fn malformed_identities_are_refused() {
        let ok = json!({"v": 1, "issuer": "i", "subject": "i:s", "groups": []});
        assert!(parse(&encode(&ok)).is_some());
        for bad in [
            json!({"v": 2, "issuer": "i", "subject": "i:s", "groups": []}),
            json!({"v": 1, "subject": "i:s", "groups": []}),
            json!({"v": 1, "issuer": "i", "subject": 5, "groups": []}),
            json!({"v": 1, "issuer": "i", "subject": "i:s", "groups": "g"}),
            json!({"v": 1, "issuer": "i", "subject": "i:s", "groups": [1]}),
            json!([1]),
        ] {
            assert!(parse(&encode(&bad)).is_none(), "{bad}");
        }
        assert!(parse("!!!").is_none());
        assert!(parse(&"A".repeat(MAX_ENCODED_LEN + 1)).is_none());
    }

    #[test]
    fn claims_that_are_not_string_lists_are_unevaluable() {
        let v = json!({"v": 1, "issuer": "i", "subject": "i:s", "groups": [],
            "claims": {"tenant": ["acme"], "odd": null, "mixed": ["a", 1]}});
        let id = parse(&encode(&v)).expect("valid");
        assert_eq!(
            id.principal.claims["tenant"],
            Some(vec!["acme".to_string()])
        );
        assert_eq!(id.principal.claims["odd"], None);
        assert_eq!(id.principal.claims["mixed"], None);
    }
}
