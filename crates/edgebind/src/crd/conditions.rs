//! Standard Kubernetes conditions: setting them without churning `lastTransitionTime`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

pub const READY: &str = "Ready";
pub const DEGRADED: &str = "Degraded";
pub const PROGRESSING: &str = "Progressing";

/// A condition as the reconciler wants it; the transition time is filled in by [`merge`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Desired {
    pub type_: &'static str,
    pub status: bool,
    pub reason: String,
    pub message: String,
}

impl Desired {
    pub fn new(
        type_: &'static str,
        status: bool,
        reason: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            type_,
            status,
            reason: reason.into(),
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
                reason: d.reason.clone(),
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

    #[test]
    fn unchanged_status_keeps_transition_time() {
        let t0 = Time(jiff::Timestamp::from_second(1_000).unwrap());
        let t1 = Time(jiff::Timestamp::from_second(2_000).unwrap());
        let first = merge(
            &[],
            &[Desired::new(READY, false, "Creating", "x")],
            Some(1),
            t0.clone(),
        );
        let second = merge(
            &first,
            &[Desired::new(READY, false, "Creating", "y")],
            Some(1),
            t1.clone(),
        );
        assert_eq!(second[0].last_transition_time, t0);
        assert_eq!(second[0].message, "y");
        let third = merge(
            &second,
            &[Desired::new(READY, true, "Ready", "z")],
            Some(2),
            t1.clone(),
        );
        assert_eq!(third[0].last_transition_time, t1);
        assert_eq!(third[0].observed_generation, Some(2));
    }
}
