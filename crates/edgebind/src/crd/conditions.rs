//! Standard Kubernetes conditions: setting them without churning `lastTransitionTime`, with
//! typed reasons (one enum per kind, in [`super::reasons`]) instead of free strings.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

/// How a reason bears on the object's phase and on events.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReasonClass {
    /// A normal step or outcome.
    Normal,
    /// A step on the way to Ready: shown in status, not worth an event.
    Progress,
    /// Waiting will not fix it: a person must change the spec or remove what is in the way.
    Terminal,
}

/// A condition or event reason of one kind. `as_str` is the exact string written to the API.
pub trait Reason: Copy + Eq + std::fmt::Debug + Send + Sync + 'static {
    fn as_str(self) -> &'static str;
    fn class(self) -> ReasonClass;
    /// The reason with this string, if the kind has one (for reading status written earlier).
    fn parse(s: &str) -> Option<Self>;
}

/// Declares a kind's reason enum: `Variant` (normal), `Variant: progress`, `Variant: terminal`.
/// The string of each reason is its variant name, so the names are the API.
macro_rules! reasons {
    ($(#[$doc:meta])* pub enum $name:ident { $($(#[$vdoc:meta])* $v:ident $(: $class:ident)?),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vdoc])* $v),+ }
        impl $name {
            /// Every reason, for tests.
            #[cfg(test)]
            pub const ALL: &'static [Self] = &[$(Self::$v),+];
        }
        impl $crate::crd::conditions::Reason for $name {
            fn as_str(self) -> &'static str {
                match self { $(Self::$v => stringify!($v)),+ }
            }
            fn class(self) -> $crate::crd::conditions::ReasonClass {
                match self { $(Self::$v => reasons!(@class $($class)?)),+ }
            }
            fn parse(s: &str) -> Option<Self> {
                match s { $(stringify!($v) => Some(Self::$v),)+ _ => None }
            }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str($crate::crd::conditions::Reason::as_str(*self))
            }
        }
    };
    (@class) => { $crate::crd::conditions::ReasonClass::Normal };
    (@class progress) => { $crate::crd::conditions::ReasonClass::Progress };
    (@class terminal) => { $crate::crd::conditions::ReasonClass::Terminal };
}
pub(crate) use reasons;

pub const READY: &str = "Ready";
/// kstatus' abnormal-true condition (Flux, and tools that follow its conventions): set while
/// Ready is False for a terminal reason, one no retry fixes.
pub const STALLED: &str = "Stalled";
pub const DEGRADED: &str = "Degraded";
/// CloudflareAccount: its tunnel exists and cloudflared is connected to it.
pub const TUNNEL_READY: &str = "TunnelReady";
/// CloudflareAccount: the gateway is registered as a Workers VPC service (`spec.tunnel.workersVpc`).
pub const WORKERS_VPC_READY: &str = "WorkersVpcReady";
pub const PROGRESSING: &str = "Progressing";

/// A condition as the reconciler wants it; the transition time is filled in by [`merge`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub type_: &'static str,
    pub status: bool,
    pub reason: &'static str,
    pub class: ReasonClass,
    pub message: String,
}

impl Desired {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: impl Reason,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.as_str(),
            class: reason.class(),
            message: message.into(),
        }
    }
}

fn status_str(b: bool) -> &'static str {
    if b { "True" } else { "False" }
}

/// Builds the new condition list: an unchanged status keeps its old `lastTransitionTime`, so a
/// converged resync writes byte-identical status (no self-triggered reconcile loops).
pub fn merge(
    old: &[Condition],
    desired: &[Desired],
    generation: Option<i64>,
    now: Time,
) -> Vec<Condition> {
    desired
        .iter()
        .map(|d| {
            let prev = old.iter().find(|c| c.type_ == d.type_);
            let last_transition_time = match prev {
                Some(p) if p.status == status_str(d.status) => p.last_transition_time.clone(),
                _ => now.clone(),
            };
            Condition {
                type_: d.type_.to_string(),
                status: status_str(d.status).to_string(),
                reason: d.reason.to_string(),
                message: d.message.clone(),
                observed_generation: generation,
                last_transition_time,
            }
        })
        .collect()
}

/// Looks up a condition's status by type.
pub fn is_true(conds: &[Condition], type_: &str) -> bool {
    conds.iter().any(|c| c.type_ == type_ && c.status == "True")
}

pub fn find<'a>(conds: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conds.iter().find(|c| c.type_ == type_)
}

pub fn now() -> Time {
    Time(jiff::Timestamp::now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::reasons::VolumeReason;

    #[test]
    fn unchanged_status_keeps_transition_time() {
        let t0 = Time(jiff::Timestamp::from_second(1_000).unwrap());
        let t1 = Time(jiff::Timestamp::from_second(2_000).unwrap());
        let first = merge(
            &[],
            &[Desired::new(READY, false, VolumeReason::Creating, "x")],
            Some(1),
            t0.clone(),
        );
        let second = merge(
            &first,
            &[Desired::new(READY, false, VolumeReason::Creating, "y")],
            Some(1),
            t1.clone(),
        );
        assert_eq!(second[0].last_transition_time, t0);
        assert_eq!(second[0].message, "y");
        let third = merge(
            &second,
            &[Desired::new(READY, true, VolumeReason::Ready, "z")],
            Some(2),
            t1.clone(),
        );
        assert_eq!(third[0].last_transition_time, t1);
        assert_eq!(third[0].observed_generation, Some(2));
    }
}
