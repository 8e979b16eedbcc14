//! Leader election on a `coordination.k8s.io/v1` Lease, so several controller replicas can run
//! and exactly one reconciles.
//!
//! The holder renews the Lease every `retry_period`; a standby takes over once `renewTime +
//! leaseDurationSeconds` has passed. Updates carry the read resourceVersion, so two candidates
//! cannot both win a race. A leader that cannot renew within `renew_deadline` steps down (the
//! process then exits and restarts clean). On shutdown the leader releases the Lease, so a
//! standby takes over at once. Lease election has no fencing: writes to LINSTOR stay idempotent.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, ObjectMeta, PostParams};
use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct LeaseConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseConfig {
    pub fn new(namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }
}

/// Leadership as the rest of the controller sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Leadership {
    Unknown,
    Leader,
    Standby,
}

fn now() -> MicroTime {
    MicroTime(jiff::Timestamp::now())
}

fn expired(spec: &LeaseSpec) -> bool {
    let (Some(renew), Some(secs)) = (&spec.renew_time, spec.lease_duration_seconds) else {
        return true;
    };
    let until = renew.0 + jiff::SignedDuration::from_secs(secs.into());
    until < jiff::Timestamp::now()
}

pub struct Elector {
    api: Api<Lease>,
    cfg: LeaseConfig,
    tx: watch::Sender<Leadership>,
}

impl Elector {
    pub fn new(client: kube::Client, cfg: LeaseConfig) -> (Self, watch::Receiver<Leadership>) {
        let (tx, rx) = watch::channel(Leadership::Unknown);
        (
            Self {
                api: Api::namespaced(client, &cfg.namespace),
                cfg,
                tx,
            },
            rx,
        )
    }

    fn spec(&self, transitions: i32, acquire: Option<MicroTime>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.cfg.identity.clone()),
            lease_duration_seconds: Some(self.cfg.lease_duration.as_secs().max(1) as i32),
            acquire_time: acquire.or_else(|| Some(now())),
            renew_time: Some(now()),
            lease_transitions: Some(transitions),
            ..Default::default()
        }
    }

    /// One attempt to acquire or renew. Ok(true): we hold the lease now.
    async fn try_acquire_or_renew(&self) -> Result<bool, kube::Error> {
        let Some(mut lease) = self.api.get_opt(&self.cfg.name).await? else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(self.cfg.name.clone()),
                    ..Default::default()
                },
                spec: Some(self.spec(0, None)),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.clone().unwrap_or_default();
        let mine = spec.holder_identity.as_deref() == Some(self.cfg.identity.as_str());
        let free = spec.holder_identity.as_deref().is_none_or(str::is_empty) || expired(&spec);
        if !mine && !free {
            return Ok(false);
        }
        let transitions = spec.lease_transitions.unwrap_or(0) + i32::from(!mine);
        lease.spec = Some(self.spec(transitions, if mine { spec.acquire_time } else { None }));
        // `replace` sends our resourceVersion: a concurrent taker gets 409 and loses.
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(e)) if e.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Campaigns and renews until `shutdown`; then releases the lease if held.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let mut last_renew = tokio::time::Instant::now();
        loop {
            let state = match self.try_acquire_or_renew().await {
                Ok(true) => {
                    last_renew = tokio::time::Instant::now();
                    Leadership::Leader
                }
                Ok(false) => Leadership::Standby,
                Err(e) => {
                    tracing::warn!(error = %e, "lease update failed");
                    if *self.tx.borrow() == Leadership::Leader
                        && last_renew.elapsed() < self.cfg.renew_deadline
                    {
                        Leadership::Leader
                    } else {
                        Leadership::Standby
                    }
                }
            };
            let prev = *self.tx.borrow();
            if prev != state {
                tracing::info!(identity = %self.cfg.identity, ?state, "leadership changed");
                crate::metrics::get()
                    .leader
                    .set(i64::from(state == Leadership::Leader));
                let _ = self.tx.send(state);
            }
            tokio::select! {
                _ = &mut shutdown => break,
                _ = tokio::time::sleep(self.cfg.retry_period) => {}
            }
        }
        if *self.tx.borrow() == Leadership::Leader {
            self.release().await;
        }
        crate::metrics::get().leader.set(0);
        let _ = self.tx.send(Leadership::Standby);
    }

    async fn release(&self) {
        if let Ok(Some(mut lease)) = self.api.get_opt(&self.cfg.name).await
            && let Some(spec) = lease.spec.as_mut()
            && spec.holder_identity.as_deref() == Some(self.cfg.identity.as_str())
        {
            spec.holder_identity = None;
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(now());
            if let Err(e) = self
                .api
                .replace(&self.cfg.name, &PostParams::default(), &lease)
                .await
            {
                tracing::warn!(error = %e, "cannot release the lease");
            } else {
                tracing::info!(identity = %self.cfg.identity, "lease released");
            }
        }
    }
}
