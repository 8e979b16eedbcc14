//! What one LINSTOR backend holds, read in bulk.
//!
//! Volumes do not GET their own state: one refresh lists resource definitions, the resource
//! view and the snapshot view (paged), and every volume of the backend reads from it. A volume
//! edgebind just wrote to is "dirty" and gets a fresh read: a targeted one when few are dirty,
//! a shared full refresh during bulk changes. So a converged resync costs a constant number of
//! list calls per backend, whatever the number of volumes.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex as AsyncMutex;

use super::volume::plan::Observed;
use crate::linstor::types::{ResourceDefinition, ResourceWithVolumes, Snapshot};
use crate::linstor::{LinstorClient, LinstorError};

/// Above this many dirty names, one full refresh is cheaper than targeted reads.
const DIRTY_FULL_REFRESH: usize = 8;

#[derive(Default)]
struct State {
    rds: HashMap<String, ResourceDefinition>,
    resources: HashMap<String, Vec<ResourceWithVolumes>>,
    snapshots: HashMap<String, Vec<Snapshot>>,
    /// Start time of the last complete full refresh.
    full_at: Option<Instant>,
    /// Names written since, with the time of the write.
    dirty: HashMap<String, Instant>,
}

pub struct Inventory {
    client: Arc<LinstorClient>,
    ttl: Duration,
    state: std::sync::Mutex<State>,
    refresh: AsyncMutex<()>,
}

fn key(name: &str) -> String {
    // LINSTOR names are case-insensitive.
    name.to_ascii_uppercase()
}

impl Inventory {
    pub fn new(client: Arc<LinstorClient>, ttl: Duration) -> Self {
        Self {
            client,
            ttl,
            state: std::sync::Mutex::new(State::default()),
            refresh: AsyncMutex::new(()),
        }
    }

    pub fn client(&self) -> &Arc<LinstorClient> {
        &self.client
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Marks `name` as changed by us: the next observation reads it fresh.
    pub fn mark_dirty(&self, name: &str) {
        self.lock().dirty.insert(key(name), Instant::now());
    }

    /// Forces the next observation of every name to refresh (after the backend was down).
    pub fn invalidate(&self) {
        self.lock().full_at = None;
    }

    /// The state of one resource definition, as fresh as the rules above require.
    pub async fn observe(&self, name: &str) -> Result<Observed, LinstorError> {
        let k = key(name);
        let (stale, dirty_since, dirty_count) = {
            let s = self.lock();
            let stale = s.full_at.is_none_or(|t| t.elapsed() > self.ttl);
            (stale, s.dirty.get(&k).copied(), s.dirty.len())
        };
        if stale {
            self.refresh_all(None).await?;
        } else if let Some(since) = dirty_since {
            if dirty_count > DIRTY_FULL_REFRESH {
                self.refresh_all(Some(since)).await?;
            } else {
                self.refresh_one(name).await?;
            }
        }
        let s = self.lock();
        Ok(Observed {
            rd: s.rds.get(&k).cloned(),
            resources: s.resources.get(&k).cloned().unwrap_or_default(),
            snapshots: s.snapshots.get(&k).cloned().unwrap_or_default(),
        })
    }

    /// Lists everything. Concurrent callers share one refresh: a caller that waited skips its own
    /// when a refresh that started after `needed_after` (or within the TTL) completed meanwhile.
    pub async fn refresh_all(&self, needed_after: Option<Instant>) -> Result<(), LinstorError> {
        let _guard = self.refresh.lock().await;
        {
            let s = self.lock();
            if let Some(t) = s.full_at {
                let fresh_enough = match needed_after {
                    Some(n) => t > n,
                    None => t.elapsed() <= self.ttl,
                };
                if fresh_enough {
                    return Ok(());
                }
            }
        }
        let started = Instant::now();
        let rds: Vec<ResourceDefinition> = self
            .client
            .list(
                "/v1/resource-definitions",
                &[("with_volume_definitions", "true".to_string())],
            )
            .await?;
        let resources: Vec<ResourceWithVolumes> =
            self.client.list("/v1/view/resources", &[]).await?;
        let snapshots: Vec<Snapshot> = self.client.list("/v1/view/snapshots", &[]).await?;
        let mut s = self.lock();
        s.rds = rds.into_iter().map(|r| (key(&r.name), r)).collect();
        s.resources.clear();
        for r in resources {
            s.resources.entry(key(&r.name)).or_default().push(r);
        }
        s.snapshots.clear();
        for sn in snapshots {
            s.snapshots
                .entry(key(&sn.resource_name))
                .or_default()
                .push(sn);
        }
        s.full_at = Some(started);
        s.dirty.retain(|_, at| *at >= started);
        Ok(())
    }

    async fn refresh_one(&self, name: &str) -> Result<(), LinstorError> {
        let started = Instant::now();
        let q = |k: &'static str| vec![(k, name.to_string())];
        let mut rq = q("resource_definitions");
        rq.push(("with_volume_definitions", "true".to_string()));
        let rds: Vec<ResourceDefinition> = self.client.get("/v1/resource-definitions", &rq).await?;
        let resources: Vec<ResourceWithVolumes> = self
            .client
            .get("/v1/view/resources", &q("resources"))
            .await?;
        let snapshots: Vec<Snapshot> = self
            .client
            .get("/v1/view/snapshots", &q("resources"))
            .await?;
        let k = key(name);
        let mut s = self.lock();
        match rds.into_iter().find(|r| key(&r.name) == k) {
            Some(rd) => s.rds.insert(k.clone(), rd),
            None => s.rds.remove(&k),
        };
        s.resources.insert(
            k.clone(),
            resources
                .into_iter()
                .filter(|r| key(&r.name) == k)
                .collect(),
        );
        s.snapshots.insert(
            k.clone(),
            snapshots
                .into_iter()
                .filter(|r| key(&r.resource_name) == k)
                .collect(),
        );
        if s.dirty.get(&k).is_some_and(|at| *at < started) {
            s.dirty.remove(&k);
        }
        Ok(())
    }
}
