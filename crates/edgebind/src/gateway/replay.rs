//! Replay protection that holds across gateway replicas and restarts (issue 12).
//!
//! The in-memory `NonceCache` sees only what its own process accepted: the same signed request
//! sent to the other replica, or again after a restart, would pass it. So before a request
//! changes anything, its `(keyid, nonce)` is recorded where every replica sees it and which
//! survives a restart: a Kubernetes object whose name is derived from the pair. Creating it
//! is the compare-and-set (the API server answers 409 to the second create, from whichever
//! replica), and the mutation runs only after the create succeeded. Reads and `can-i` change
//! nothing and keep to the per-process cache.
//!
//! The records are coordination.k8s.io Leases in the gateway's namespace (small, meant for
//! coordination, no Secret access needed) and are deleted once the signature has expired.

use std::collections::HashMap;
use std::sync::Mutex;

use futures::future::BoxFuture;
use k8s_openapi::api::coordination::v1::Lease;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use serde_json::json;
use sha2::{Digest, Sha256};

/// Label on every record, for the sweep.
pub const RECORD_LABEL: &str = "edgebind.dev/edge-nonce";
/// Annotation holding the Unix second after which the record may go.
pub const EXPIRES_ANNOTATION: &str = "edgebind.dev/expires";

/// What recording a mutation's nonce found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Recorded {
    /// First time: the mutation may run.
    First,
    /// Recorded before, by this or another replica: a replay.
    Replay,
}

/// Where mutations' nonces are recorded.
pub trait ReplayLedger: Send + Sync + 'static {
    /// Records the pair until `forget_after` (Unix seconds). `Err` when the record cannot be
    /// written: the caller refuses the request (fail closed).
    fn record<'a>(
        &'a self,
        key_id: &'a str,
        nonce: &'a str,
        forget_after: i64,
    ) -> BoxFuture<'a, Result<Recorded, String>>;
}

/// The name of a pair's record: `edge-nonce-` and 40 hex digits of SHA-256 over the pair (key
/// ids and nonces may hold characters a name may not).
pub fn record_name(key_id: &str, nonce: &str) -> String {
    let mut h = Sha256::new();
    h.update(key_id.as_bytes());
    h.update([0u8]);
    h.update(nonce.as_bytes());
    let hex: String = h
        .finalize()
        .iter()
        .take(20)
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("edge-nonce-{hex}")
}

/// In one process: shared by every `GatewayState` that holds the same `Arc` (tests run two
/// gateways on one ledger to stand for two replicas on one API server).
#[derive(Default)]
pub struct MemoryLedger {
    seen: Mutex<HashMap<String, i64>>,
}

impl ReplayLedger for MemoryLedger {
    fn record<'a>(
        &'a self,
        key_id: &'a str,
        nonce: &'a str,
        forget_after: i64,
    ) -> BoxFuture<'a, Result<Recorded, String>> {
        Box::pin(async move {
            let mut seen = match self.seen.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            let now = jiff::Timestamp::now().as_second();
            seen.retain(|_, until| *until >= now);
            Ok(
                match seen.insert(record_name(key_id, nonce), forget_after) {
                    None => Recorded::First,
                    Some(_) => Recorded::Replay,
                },
            )
        })
    }
}

/// Leases in the gateway's namespace.
pub struct LeaseLedger {
    api: Api<Lease>,
}

impl LeaseLedger {
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        LeaseLedger {
            api: Api::namespaced(client, namespace),
        }
    }

    /// Deletes the records whose signatures have expired; returns how many. Every replica
    /// sweeps; a record another replica deleted first is not an error.
    pub async fn sweep(&self, now: i64) -> Result<usize, kube::Error> {
        let list = self
            .api
            .list(&ListParams::default().labels(RECORD_LABEL))
            .await?;
        let mut deleted = 0;
        for lease in list.items {
            let expired = lease
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(EXPIRES_ANNOTATION))
                .and_then(|v| v.parse::<i64>().ok())
                // A record without a readable expiry is swept too: nothing else would.
                .is_none_or(|until| until < now);
            let Some(name) = lease.metadata.name.filter(|_| expired) else {
                continue;
            };
            match self.api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => deleted += 1,
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(deleted)
    }
}

impl ReplayLedger for LeaseLedger {
    fn record<'a>(
        &'a self,
        key_id: &'a str,
        nonce: &'a str,
        forget_after: i64,
    ) -> BoxFuture<'a, Result<Recorded, String>> {
        Box::pin(async move {
            let lease: Lease = serde_json::from_value(json!({
                "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {
                    "name": record_name(key_id, nonce),
                    "labels": {RECORD_LABEL: "true",
                               "app.kubernetes.io/managed-by": super::backend::FIELD_MANAGER},
                    "annotations": {EXPIRES_ANNOTATION: forget_after.to_string()},
                },
                "spec": {},
            }))
            .map_err(|e| e.to_string())?;
            let pp = PostParams {
                field_manager: Some(super::backend::FIELD_MANAGER.into()),
                ..Default::default()
            };
            let create = self.api.create(&pp, &lease);
            match tokio::time::timeout(super::backend::KUBE_TIMEOUT, create).await {
                Ok(Ok(_)) => Ok(Recorded::First),
                Ok(Err(kube::Error::Api(e))) if e.code == 409 => Ok(Recorded::Replay),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("the API server did not answer in time".into()),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_names_are_valid_and_distinct() {
        let a = record_name("team-a.edge.1.ab", "AAAAAAAAAAAAAAAAAAAAAA");
        let b = record_name("team-a.edge.1.ab", "AAAAAAAAAAAAAAAAAAAAAQ");
        // The separator keeps ("ab", "c") and ("a", "bc") apart.
        assert_ne!(record_name("ab", "c"), record_name("a", "bc"));
        assert_ne!(a, b);
        assert_eq!(a.len(), "edge-nonce-".len() + 40);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
        );
    }

    proptest::proptest! {
        /// Whatever a key id or nonce holds, its record's name is a valid object name.
        #[test]
        fn any_pair_names_a_valid_record(key in ".{0,200}", nonce in ".{0,80}") {
            let n = record_name(&key, &nonce);
            proptest::prop_assert_eq!(n.len(), 51);
            proptest::prop_assert!(n.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-'));
        }
    }

    #[tokio::test]
    async fn a_memory_ledger_shared_by_two_gateways_sees_the_replay() {
        let ledger = std::sync::Arc::new(MemoryLedger::default());
        let (first, second) = (ledger.clone(), ledger);
        let until = jiff::Timestamp::now().as_second() + 60;
        assert_eq!(first.record("k", "n", until).await, Ok(Recorded::First));
        assert_eq!(second.record("k", "n", until).await, Ok(Recorded::Replay));
        assert_eq!(second.record("k", "m", until).await, Ok(Recorded::First));
    }
}
