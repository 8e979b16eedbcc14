//! What one LINSTOR backend holds, read in bulk.
//!
//! Volumes do not GET their own state: one refresh lists resource definitions, the resource
//! view and the snapshot view, and every volume of the backend reads from it. A volume
//! edgebind just wrote to is "dirty" and gets a fresh read, batched: one filtered read of each
//! list serves every name dirty at that moment (up to `DIRTY_BATCH`). So a converged resync
//! costs three list calls per backend whatever the number of volumes (unpaged: each page would
//! cost the server the whole list, see `LinstorClient::list`), and a bulk create costs a
//! fraction of a read per volume.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex as AsyncMutex;

use super::volume::plan::Observed;
use crate::linstor::types::{ResourceDefinition, ResourceWithVolumes, Snapshot};
use crate::linstor::{LinstorClient, LinstorError};

/// Names read fresh in one filtered call (repeated query parameters; keeps URLs short).
const DIRTY_BATCH: usize = 40;

#[derive(Default)]
struct State {
    rds: HashMap<String, ResourceDefinition>,
    resources: HashMap<String, Vec<ResourceWithVolumes>>,
    snapshots: HashMap<String, Vec<Snapshot>>,
    /// Start time of the last complete full refresh (writes before it are in it).
    full_at: Option<Instant>,
    /// When that refresh finished: the TTL counts from here, so a refresh that takes longer than
    /// the TTL (tens of thousands of objects) does not make the cache stale at once.
    full_done: Option<Instant>,
    /// Number of full refreshes completed, so callers that waited for one can tell it happened.
    generation: u64,
    /// Names written since: key -> (name as given, time of the write).
    dirty: HashMap<String, (String, Instant)>,
}

pub struct Inventory {
    client: Arc<LinstorClient>,
    ttl: Duration,
    state: std::sync::Mutex<State>,
    refresh: AsyncMutex<()>,
}

/// A resource definition without the growth slack of its lists.
fn compact_rd(mut rd: ResourceDefinition) -> ResourceDefinition {
    rd.flags.shrink_to_fit();
    rd.volume_definitions.shrink_to_fit();
    for vd in &mut rd.volume_definitions {
        vd.flags.shrink_to_fit();
    }
    rd
}

/// A resource without the growth slack of its lists.
fn compact_resource(mut r: ResourceWithVolumes) -> ResourceWithVolumes {
    r.flags.shrink_to_fit();
    r.volumes.shrink_to_fit();
    r
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
        self.lock()
            .dirty
            .insert(key(name), (name.to_string(), Instant::now()));
    }

    /// Forces the next observation of every name to refresh (after the backend was down).
    pub fn invalidate(&self) {
        let mut s = self.lock();
        s.full_at = None;
        s.full_done = None;
    }

    /// The state of one resource definition, as fresh as the rules above require.
    pub async fn observe(&self, name: &str) -> Result<Observed, LinstorError> {
        let k = key(name);
        let (stale, dirty) = {
            let s = self.lock();
            (
                s.full_done.is_none_or(|t| t.elapsed() > self.ttl),
                s.dirty.contains_key(&k),
            )
        };
        if stale {
            self.refresh_all(None).await?;
        } else if dirty {
            self.refresh_dirty(&k).await?;
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
        let seen = self.lock().generation;
        let _guard = self.refresh.lock().await;
        {
            let s = self.lock();
            // Another caller completed a full refresh while this one waited: use it. (Without
            // this, callers queued behind a slow refresh each ran their own, one after another.)
            if needed_after.is_none() && s.generation != seen {
                return Ok(());
            }
            let fresh_enough = match needed_after {
                Some(n) => s.full_at.is_some_and(|t| t > n),
                None => s.full_done.is_some_and(|t| t.elapsed() <= self.ttl),
            };
            if fresh_enough {
                return Ok(());
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
        s.rds = rds
            .into_iter()
            .map(|r| (key(&r.name), compact_rd(r)))
            .collect();
        s.resources.clear();
        for r in resources {
            s.resources
                .entry(key(&r.name))
                .or_default()
                .push(compact_resource(r));
        }
        s.snapshots.clear();
        for sn in snapshots {
            s.snapshots
                .entry(key(&sn.resource_name))
                .or_default()
                .push(sn);
        }
        // Vectors grow by doubling (a volume's two replicas take room for four): at tens of
        // thousands of volumes the slack is a large part of the inventory.
        s.resources.values_mut().for_each(Vec::shrink_to_fit);
        s.snapshots.values_mut().for_each(Vec::shrink_to_fit);
        s.full_at = Some(started);
        s.full_done = Some(Instant::now());
        s.generation += 1;
        s.dirty.retain(|_, (_, at)| *at >= started);
        drop(s);
        // The pages just read and the previous inventory are freed: give the memory back.
        crate::memory::trim();
        Ok(())
    }

    /// Reads the dirty names, `k` among them, with one filtered call per list. Callers that
    /// waited for a batch covering them return at once.
    async fn refresh_dirty(&self, k: &str) -> Result<(), LinstorError> {
        let _guard = self.refresh.lock().await;
        let batch: Vec<(String, String)> = {
            let s = self.lock();
            let Some((name, _)) = s.dirty.get(k) else {
                return Ok(());
            };
            let mut others: Vec<(&String, &(String, Instant))> =
                s.dirty.iter().filter(|(dk, _)| dk.as_str() != k).collect();
            others.sort_by_key(|(_, (_, at))| *at);
            std::iter::once((k.to_string(), name.clone()))
                .chain(
                    others
                        .into_iter()
                        .map(|(dk, (n, _))| (dk.clone(), n.clone())),
                )
                .take(DIRTY_BATCH)
                .collect()
        };
        let started = Instant::now();
        let filter = |param: &'static str| -> Vec<(&'static str, String)> {
            batch.iter().map(|(_, n)| (param, n.clone())).collect()
        };
        let mut rq = filter("resource_definitions");
        rq.push(("with_volume_definitions", "true".to_string()));
        let rds: Vec<ResourceDefinition> =
            self.client.list("/v1/resource-definitions", &rq).await?;
        let resources: Vec<ResourceWithVolumes> = self
            .client
            .list("/v1/view/resources", &filter("resources"))
            .await?;
        let snapshots: Vec<Snapshot> = self
            .client
            .list("/v1/view/snapshots", &filter("resources"))
            .await?;
        let mut s = self.lock();
        for (bk, _) in &batch {
            s.rds.remove(bk);
            s.resources.insert(bk.clone(), Vec::new());
            s.snapshots.insert(bk.clone(), Vec::new());
        }
        for rd in rds {
            let rk = key(&rd.name);
            if batch.iter().any(|(bk, _)| *bk == rk) {
                s.rds.insert(rk, compact_rd(rd));
            }
        }
        for r in resources {
            if let Some(v) = s
                .resources
                .get_mut(&key(&r.name))
                .filter(|_| batch.iter().any(|(bk, _)| *bk == key(&r.name)))
            {
                v.push(compact_resource(r));
            }
        }
        for sn in snapshots {
            if let Some(v) = s
                .snapshots
                .get_mut(&key(&sn.resource_name))
                .filter(|_| batch.iter().any(|(bk, _)| *bk == key(&sn.resource_name)))
            {
                v.push(sn);
            }
        }
        for (bk, _) in &batch {
            if let Some(v) = s.resources.get_mut(bk) {
                v.shrink_to_fit();
            }
            // No snapshots: no entry (one key per volume otherwise, for nothing).
            if s.snapshots.get(bk).is_some_and(Vec::is_empty) {
                s.snapshots.remove(bk);
            }
        }
        for (bk, _) in &batch {
            if s.dirty.get(bk).is_some_and(|(_, at)| *at < started) {
                s.dirty.remove(bk);
            }
        }
        Ok(())
    }
}
