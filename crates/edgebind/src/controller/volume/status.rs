//! The status a volume reports, computed from what LINSTOR holds (pure).

use crate::crd::conditions::{DEGRADED, Desired, PROGRESSING, READY, Reason};
use crate::crd::quantity;
use crate::crd::reasons::VolumeReason;
use crate::crd::volume::{PersistentVolumeState, Replica, ReplicaRole};

use super::plan::{Observed, inactive_flag, is_diskful};
use super::validate::ValidSpec;

/// Status fields other than conditions, plus the conditions wanted.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Computed {
    pub size: Option<String>,
    pub diskful_replicas: Option<u32>,
    pub replicas: Vec<Replica>,
    pub conditions: Vec<Desired>,
    /// Set by the pass once it has looked at the PV.
    pub persistent_volume: Option<PersistentVolumeState>,
}

pub(crate) fn replicas(observed: &Observed) -> Vec<Replica> {
    let mut out: Vec<Replica> = observed
        .live_resources()
        .map(|r| {
            let role = if r.flags.iter().any(|f| f == "TIE_BREAKER") {
                ReplicaRole::TieBreaker
            } else if is_diskful(r) {
                ReplicaRole::Diskful
            } else {
                ReplicaRole::Diskless
            };
            Replica {
                node: r.node_name.clone(),
                role,
                disk_state: r
                    .state
                    .as_ref()
                    .and_then(|_| r.volumes.iter().find(|v| v.volume_number == 0))
                    .and_then(|v| v.state.as_ref())
                    .and_then(|s| s.disk_state.clone()),
                in_use: r.state.as_ref().and_then(|s| s.in_use),
            }
        })
        .collect();
    out.sort_by(|a, b| a.node.cmp(&b.node));
    out
}

/// Computes status for an owned volume after this pass. `wrote` says whether this pass changed
/// something (then LINSTOR is still catching up).
pub(crate) fn compute(spec: &ValidSpec, observed: &Observed, wrote: bool) -> Computed {
    let replicas = replicas(observed);
    // Evicted, evacuating or deactivated replicas exist but serve no data: they are not
    // healthy, whatever disk state they last reported. Placed replicas are counted as
    // autoplace counts them (`Observed::diskful`: a deactivated one still counts).
    let inactive: Vec<String> = observed
        .live_resources()
        .filter(|r| is_diskful(r))
        .filter_map(|r| inactive_flag(r).map(|f| format!("{} is {f}", r.node_name)))
        .collect();
    let is_inactive = |node: &str| {
        observed
            .live_resources()
            .any(|r| r.node_name == node && inactive_flag(r).is_some())
    };
    let diskful: Vec<&Replica> = replicas
        .iter()
        .filter(|r| r.role == ReplicaRole::Diskful && !is_inactive(&r.node))
        .collect();
    let n = observed.diskful().count() as u32;
    let vd = observed.volume();
    let size_kib = vd.map(|v| v.size_kib);
    let want = spec.place_count().unwrap_or(1);
    let up_to_date = diskful
        .iter()
        .filter(|r| r.disk_state.as_deref() == Some("UpToDate"))
        .count() as u32;
    let offline: Vec<&str> = diskful
        .iter()
        .filter(|r| r.disk_state.is_none())
        .map(|r| r.node.as_str())
        .collect();
    let bad: Vec<String> = diskful
        .iter()
        .filter_map(|r| match r.disk_state.as_deref() {
            Some(s @ ("Outdated" | "Failed" | "DUnknown" | "Diskless")) => {
                Some(format!("{} is {s}", r.node))
            }
            _ => None,
        })
        .collect();
    let syncing = diskful.iter().any(|r| {
        matches!(
            r.disk_state.as_deref(),
            Some("Inconsistent" | "Attaching" | "Negotiating" | "Consistent")
        )
    });
    let resizing = vd.is_some_and(|v| v.flags.iter().any(|f| f == "RESIZE"))
        || size_kib.is_some_and(|s| s < spec.size_kib);

    let (ready, reason, message) = if vd.is_none() {
        (
            false,
            VolumeReason::Creating,
            "creating the volume in LINSTOR".to_string(),
        )
    } else if n == 0 {
        (
            false,
            VolumeReason::Placing,
            "waiting for LINSTOR to place replicas".to_string(),
        )
    } else if up_to_date == 0 {
        (
            false,
            VolumeReason::Syncing,
            format!("{n} replica(s) placed; waiting for one to be UpToDate"),
        )
    } else if resizing {
        (
            true,
            VolumeReason::Resizing,
            format!("usable; growing to {} KiB", spec.size_kib),
        )
    } else {
        (
            true,
            VolumeReason::Ready,
            format!("{up_to_date} of {n} diskful replica(s) UpToDate"),
        )
    };
    let (degraded, d_reason, d_message) = if !offline.is_empty() {
        (
            true,
            VolumeReason::NodeOffline,
            format!(
                "no state from node(s) {}: their satellites are offline",
                offline.join(", ")
            ),
        )
    } else if !inactive.is_empty() {
        (
            true,
            VolumeReason::ReplicaInactive,
            format!(
                "{}; LINSTOR places a replacement where the placement allows",
                inactive.join("; ")
            ),
        )
    } else if !bad.is_empty() {
        (true, VolumeReason::ReplicaNotUpToDate, bad.join("; "))
    } else if vd.is_some() && n < want && !wrote {
        (
            true,
            VolumeReason::TooFewReplicas,
            format!(
                "{n} of {want} replicas placed; LINSTOR may lack nodes or space matching the placement"
            ),
        )
    } else {
        (
            false,
            VolumeReason::AsExpected,
            "all replicas healthy".to_string(),
        )
    };
    let (progressing, p_reason, p_message) = if wrote {
        (
            true,
            VolumeReason::Applying,
            "changes sent to LINSTOR".to_string(),
        )
    } else if syncing {
        (
            true,
            VolumeReason::Syncing,
            "replicas are synchronising".to_string(),
        )
    } else if resizing {
        (
            true,
            VolumeReason::Resizing,
            "LINSTOR is resizing the volume".to_string(),
        )
    } else if vd.is_none() || n < want {
        (
            true,
            VolumeReason::Placing,
            "replicas are being placed".to_string(),
        )
    } else {
        (
            false,
            VolumeReason::Converged,
            "LINSTOR matches the spec".to_string(),
        )
    };
    Computed {
        size: size_kib.map(quantity::format_kib),
        diskful_replicas: vd.map(|_| n),
        replicas,
        persistent_volume: None,
        conditions: vec![
            Desired::new(READY, ready, reason, message),
            Desired::new(DEGRADED, degraded, d_reason, d_message),
            Desired::new(PROGRESSING, progressing, p_reason, p_message),
        ],
    }
}

/// Conditions for a volume that could not be reconciled (invalid spec, conflict, backend down).
pub(crate) fn failed(reason: VolumeReason, message: &str, retrying: bool) -> Vec<Desired> {
    vec![
        Desired::new(READY, false, reason, message),
        Desired::new(
            DEGRADED,
            false,
            VolumeReason::AsExpected,
            "no replica state known",
        ),
        Desired::new(
            PROGRESSING,
            retrying,
            if retrying {
                VolumeReason::Retrying
            } else {
                VolumeReason::WaitingForSpecChange
            },
            if retrying {
                "edgebind retries with backoff"
            } else {
                "fix the spec; edgebind waits for a change"
            },
        ),
    ]
}

/// Refines the conditions with the backend's node states: a `TooFewReplicas` message names the
/// nodes holding replicas and those that cannot take one, and a volume no node can take another
/// replica of is not "being placed" (Progressing False, `WaitingForNodes`): edgebind places the
/// rest when a node comes (back), and makes no call meanwhile.
pub(crate) fn with_nodes(
    c: &mut Computed,
    spec: &ValidSpec,
    observed: &Observed,
    view: &crate::controller::nodes::NodeView,
    wrote: bool,
) {
    let Some(want) = spec.place_count() else {
        return;
    };
    let n = observed.diskful().count() as u32;
    if wrote || n >= want || observed.volume().is_none() {
        return;
    }
    let on: Vec<&str> = observed.diskful().map(|r| r.node_name.as_str()).collect();
    let hosting: Vec<&str> = observed
        .live_resources()
        .map(|r| r.node_name.as_str())
        .collect();
    let free = view.placeable_besides(&hosting);
    let unavailable = view.unavailable();
    let why = if free > 0 {
        format!("{free} node(s) can take one")
    } else if unavailable.is_empty() {
        "no other node can take one now".to_string()
    } else {
        format!(
            "no other node can take one now; out of service: {}",
            unavailable.join(", ")
        )
    };
    for d in c.conditions.iter_mut() {
        if d.type_ == DEGRADED && d.reason == VolumeReason::TooFewReplicas.as_str() {
            d.message = format!(
                "{n} of {want} replicas placed (on {}); {why}",
                if on.is_empty() {
                    "no node".to_string()
                } else {
                    on.join(", ")
                }
            );
        }
        if d.type_ == PROGRESSING && free == 0 {
            *d = Desired::new(
                PROGRESSING,
                false,
                VolumeReason::WaitingForNodes,
                format!(
                    "{n} of {want} replicas placed; {why}; edgebind adds the rest when a node can take them"
                ),
            );
        }
    }
}
