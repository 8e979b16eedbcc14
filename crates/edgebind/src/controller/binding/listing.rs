//! What one Cloudflare account shows, read once and shared by every binding of the account.
//!
//! Listing the account's scripts and a zone's routes for each binding would make a resync of N
//! bindings cost 2N reads, more than the account's budget holds at a few hundred bindings. Here
//! a list is read at most once per TTL and serves every binding; a binding that wrote since
//! (or is about to write) asks for a list started after that moment, and concurrent callers
//! share one refresh. A script's secret names are listed only when Cloudflare shows the script
//! changed since they were last listed (`modified_on`, which every secret write moves), or
//! after `SECRETS_AUDIT`, so a converged binding costs no read of its own.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Mutex as AsyncMutex;

use crate::cloudflare::types::{Route, ScriptInfo};
use crate::cloudflare::{CfClient, CfError};

/// Longest a binding trusts its recorded secret names without listing them.
pub(crate) const SECRETS_AUDIT: Duration = Duration::from_secs(3600);

/// One shared list: the last result, when its read started, and a lock so concurrent callers
/// wait for one read instead of each making their own.
struct Shared<T> {
    slot: Mutex<Option<(Instant, Arc<T>)>>,
    refresh: AsyncMutex<()>,
}

impl<T> Default for Shared<T> {
    fn default() -> Self {
        Self {
            slot: Mutex::new(None),
            refresh: AsyncMutex::new(()),
        }
    }
}

impl<T> Shared<T> {
    fn fresh(&self, ttl: Duration, after: Option<Instant>) -> Option<Arc<T>> {
        let slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        slot.as_ref()
            .filter(|(started, _)| started.elapsed() <= ttl && after.is_none_or(|a| *started >= a))
            .map(|(_, v)| v.clone())
    }

    async fn get<F, Fut>(
        &self,
        ttl: Duration,
        after: Option<Instant>,
        read: F,
    ) -> Result<Arc<T>, CfError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<T, CfError>>,
    {
        if let Some(v) = self.fresh(ttl, after) {
            return Ok(v);
        }
        let _guard = self.refresh.lock().await;
        // A read that started after `after` may have completed while this caller waited.
        if let Some(v) = self.fresh(ttl, after) {
            return Ok(v);
        }
        let started = Instant::now();
        let v = Arc::new(read().await?);
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some((started, v.clone()));
        Ok(v)
    }
}

/// The shared lists of one account (one per `CfClient`).
pub struct Listings {
    ttl: Duration,
    scripts: Shared<Vec<ScriptInfo>>,
    routes: Mutex<HashMap<String, Arc<Shared<Vec<Route>>>>>,
    /// Script name -> when a binding last wrote to it, its secrets or its routes.
    written: Mutex<HashMap<String, Instant>>,
    /// Script name -> the script's `modified_on` when its secret names were listed, and when.
    secrets_seen: Mutex<HashMap<String, (Option<String>, Instant)>>,
}

impl Listings {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            scripts: Shared::default(),
            routes: Mutex::new(HashMap::new()),
            written: Mutex::new(HashMap::new()),
            secrets_seen: Mutex::new(HashMap::new()),
        }
    }

    /// When `script` was last written by edgebind (lists older than that do not show it).
    pub fn written_at(&self, script: &str) -> Option<Instant> {
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(script)
            .copied()
    }

    /// Records that `script` (or its secrets or routes) was just written.
    pub fn mark_written(&self, script: &str) {
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(script.to_string(), Instant::now());
    }

    /// Forgets a script (its binding is gone).
    pub fn forget(&self, script: &str) {
        self.written
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(script);
        self.secrets_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(script);
    }

    /// The account's scripts, read no earlier than `after`.
    pub async fn scripts(
        &self,
        cf: &CfClient,
        after: Option<Instant>,
    ) -> Result<Arc<Vec<ScriptInfo>>, CfError> {
        self.scripts
            .get(self.ttl, after, || cf.list_scripts())
            .await
    }

    /// A zone's routes, read no earlier than `after`.
    pub async fn routes(
        &self,
        cf: &CfClient,
        zone: &str,
        after: Option<Instant>,
    ) -> Result<Arc<Vec<Route>>, CfError> {
        let shared = self
            .routes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(zone.to_string())
            .or_default()
            .clone();
        shared.get(self.ttl, after, || cf.list_routes(zone)).await
    }

    /// Whether the secret names of `script` must be listed: never listed, the script changed
    /// since (a secret write moves `modified_on`), or the audit period passed.
    pub fn secrets_stale(&self, script: &str, modified_on: Option<&str>) -> bool {
        let seen = self.secrets_seen.lock().unwrap_or_else(|e| e.into_inner());
        match seen.get(script) {
            None => true,
            Some((m, at)) => {
                modified_on.is_none() || m.as_deref() != modified_on || at.elapsed() > SECRETS_AUDIT
            }
        }
    }

    /// edgebind uploaded `script` (with the secrets it wanted; the others kept), moving its
    /// `modified_on` to `after`. `before`: what the script showed when the names were read,
    /// `None` when it did not exist (then the upload set every name). The names edgebind
    /// records stay as good as they were, so the listing follows the script without a read;
    /// the audit clock keeps running.
    pub fn own_upload(&self, script: &str, before: Option<Option<&str>>, after: Option<&str>) {
        let mut seen = self.secrets_seen.lock().unwrap_or_else(|e| e.into_inner());
        match before {
            None => {
                seen.insert(
                    script.to_string(),
                    (after.map(str::to_string), Instant::now()),
                );
            }
            Some(before) => {
                if let Some((m, _)) = seen.get_mut(script)
                    && before.is_some()
                    && m.as_deref() == before
                {
                    *m = after.map(str::to_string);
                }
            }
        }
    }

    /// Records that the secret names of `script` were listed while it showed `modified_on`.
    pub fn secrets_listed(&self, script: &str, modified_on: Option<&str>) {
        self.secrets_seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                script.to_string(),
                (modified_on.map(str::to_string), Instant::now()),
            );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn concurrent_callers_share_one_read_and_writes_force_a_newer_one() {
        let shared: Arc<Shared<u32>> = Arc::default();
        let reads = Arc::new(AtomicU32::new(0));
        let ttl = Duration::from_secs(60);
        let read = |reads: Arc<AtomicU32>| async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(reads.fetch_add(1, Ordering::SeqCst) + 1)
        };
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (s, r) = (shared.clone(), reads.clone());
            tasks.push(tokio::spawn(
                async move { s.get(ttl, None, || read(r)).await },
            ));
        }
        for t in tasks {
            assert_eq!(*t.await.expect("task").expect("read"), 1);
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1, "eight callers, one read");
        // Within the TTL a cached read serves; a caller that wrote needs a newer one.
        assert_eq!(
            *shared
                .get(ttl, None, || read(reads.clone()))
                .await
                .expect("read"),
            1
        );
        let wrote = Instant::now();
        assert_eq!(
            *shared
                .get(ttl, Some(wrote), || read(reads.clone()))
                .await
                .expect("read"),
            2
        );
        assert_eq!(
            *shared
                .get(ttl, Some(wrote), || read(reads.clone()))
                .await
                .expect("read"),
            2,
            "a read started after the write serves it"
        );
        // An expired entry is read again.
        assert_eq!(
            *shared
                .get(Duration::ZERO, None, || read(reads.clone()))
                .await
                .expect("read"),
            3
        );
    }

    #[tokio::test]
    async fn a_failed_read_is_not_cached() {
        let shared: Shared<u32> = Shared::default();
        let ttl = Duration::from_secs(60);
        let err = shared
            .get(ttl, None, || async {
                Err(CfError::Unreachable("list".into()))
            })
            .await;
        assert!(err.is_err());
        assert_eq!(
            *shared
                .get(ttl, None, || async { Ok(7) })
                .await
                .expect("read"),
            7
        );
    }

    #[test]
    fn secret_names_are_listed_again_only_when_the_script_changed_or_the_audit_is_due() {
        let l = Listings::new(Duration::from_secs(60));
        assert!(l.secrets_stale("w", Some("t1")), "never listed");
        l.secrets_listed("w", Some("t1"));
        assert!(!l.secrets_stale("w", Some("t1")));
        assert!(l.secrets_stale("w", Some("t2")), "modified since");
        assert!(l.secrets_stale("w", None), "no modification time shown");
        l.forget("w");
        assert!(l.secrets_stale("w", Some("t1")));
        // Our own upload of a new script, or of one whose names we knew, needs no listing.
        l.own_upload("w", None, Some("t3"));
        assert!(!l.secrets_stale("w", Some("t3")));
        l.own_upload("w", Some(Some("t3")), Some("t4"));
        assert!(!l.secrets_stale("w", Some("t4")));
        // Names not known when uploading stay unknown.
        l.own_upload("w", Some(Some("t9")), Some("t5"));
        assert!(l.secrets_stale("w", Some("t5")));
    }
}
