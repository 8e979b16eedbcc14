//! The phase of an EdgeVolume or EdgeSnapshot: the one-word summary the gateway answers with
//! (docs/edge-protocol.md §4) and `status.phase` shows. Derived in one place from the deletion
//! mark and the Ready condition's typed reason, so the gateway and status cannot disagree.
//!
//! ```text
//!   Pending ──Ready=True──▶ Ready ──Ready=False──▶ Pending
//!      │  ▲                   │
//!      │  └──spec fixed───┐   │ terminal reason (Conflict, InvalidSpec, ...)
//!      └─terminal reason─▶ Failed ◀┘
//!   any ──deletionTimestamp──▶ Deleting (final)
//! ```

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::conditions::{READY, Reason, ReasonClass, find};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum Phase {
    /// Being created or changed, or waiting for something that will come by itself.
    Pending,
    /// Usable.
    Ready,
    /// Waiting will not help: the Ready condition says what a person must change.
    Failed,
    /// Marked for deletion; edgebind is cleaning up.
    Deleting,
}

impl Phase {
    /// The phase of an object of the kind whose reasons are `R`.
    pub fn of<R: Reason>(deleting: bool, conditions: &[Condition]) -> Phase {
        if deleting {
            return Phase::Deleting;
        }
        match find(conditions, READY) {
            Some(c) if c.status == "True" => Phase::Ready,
            Some(c) if R::parse(&c.reason).is_some_and(|r| r.class() == ReasonClass::Terminal) => {
                Phase::Failed
            }
            _ => Phase::Pending,
        }
    }

    /// Whether the controller can move an object from `self` to `next`. Deletion is final;
    /// every other phase can follow any other (a node is lost, a conflicting object appears
    /// or goes away, a spec is fixed).
    pub fn can_become(self, next: Phase) -> bool {
        self == next || self != Phase::Deleting
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "Pending",
            Phase::Ready => "Ready",
            Phase::Failed => "Failed",
            Phase::Deleting => "Deleting",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::super::reasons::{SnapshotReason, VolumeReason};
    use super::*;

    fn ready(status: bool, reason: &str) -> Vec<Condition> {
        vec![Condition {
            type_: READY.into(),
            status: if status { "True" } else { "False" }.into(),
            reason: reason.into(),
            message: String::new(),
            observed_generation: None,
            last_transition_time: super::super::conditions::now(),
        }]
    }

    #[test]
    fn every_phase_is_reached_from_some_volume_status() {
        let mut seen = BTreeSet::new();
        seen.insert(Phase::of::<VolumeReason>(false, &[]).as_str());
        for r in VolumeReason::ALL {
            for status in [true, false] {
                for deleting in [true, false] {
                    let p = Phase::of::<VolumeReason>(deleting, &ready(status, r.as_str()));
                    seen.insert(p.as_str());
                }
            }
        }
        assert_eq!(
            seen,
            BTreeSet::from(["Deleting", "Failed", "Pending", "Ready"])
        );
    }

    #[test]
    fn terminal_reasons_fail_and_others_wait() {
        let v =
            |reason: VolumeReason| Phase::of::<VolumeReason>(false, &ready(false, reason.as_str()));
        assert_eq!(v(VolumeReason::Conflict), Phase::Failed);
        assert_eq!(v(VolumeReason::InvalidSpec), Phase::Failed);
        assert_eq!(v(VolumeReason::ResourceGroupNotFound), Phase::Failed);
        assert_eq!(v(VolumeReason::Creating), Phase::Pending);
        assert_eq!(v(VolumeReason::LinstorUnreachable), Phase::Pending);
        assert_eq!(v(VolumeReason::NotEnoughNodes), Phase::Pending);
        let s = |reason: SnapshotReason| {
            Phase::of::<SnapshotReason>(false, &ready(false, reason.as_str()))
        };
        assert_eq!(s(SnapshotReason::Failed), Phase::Failed);
        assert_eq!(s(SnapshotReason::WaitingForVolume), Phase::Pending);
        // A reason this version does not know (written by a newer one) never reads as Failed.
        assert_eq!(
            Phase::of::<VolumeReason>(false, &ready(false, "SomethingNew")),
            Phase::Pending
        );
        assert_eq!(
            Phase::of::<VolumeReason>(true, &ready(true, "Ready")),
            Phase::Deleting
        );
    }

    #[test]
    fn deletion_is_final() {
        use Phase::*;
        for p in [Pending, Ready, Failed] {
            assert!(p.can_become(Deleting));
            assert!(!Deleting.can_become(p));
            assert!(Failed.can_become(p) && p.can_become(Failed));
        }
    }
}
