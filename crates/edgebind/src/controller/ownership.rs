//! Ownership markers on LINSTOR objects. edgebind changes or deletes only what carries its
//! marker with the owner's uid; anything else is a `Conflict`, never an overwrite.

use crate::linstor::types::Props;

pub const MANAGED_BY: &str = "Aux/edgebind.dev/managed-by";
pub const OWNER_UID: &str = "Aux/edgebind.dev/owner-uid";
pub const OWNER_KIND: &str = "Aux/edgebind.dev/owner-kind";
pub const OWNER_NAMESPACE: &str = "Aux/edgebind.dev/owner-namespace";
pub const OWNER_NAME: &str = "Aux/edgebind.dev/owner-name";
/// Set when the owner was deleted with `deletionPolicy: Retain`.
pub const RELEASED: &str = "Aux/edgebind.dev/released";
/// The user property keys edgebind set last time, so removed ones can be deleted (and keys
/// others set are left alone).
pub const LAST_APPLIED: &str = "Aux/edgebind.dev/last-applied";
/// `<namespace>/<EdgeSnapshot>` a volume was restored from.
pub const RESTORED_FROM: &str = "Aux/edgebind.dev/restored-from";
pub const MANAGER: &str = "edgebind";
/// Before REST API 1.26 a snapshot definition keeps no properties, so edgebind records a
/// snapshot's owner on the snapshot's resource definition, under
/// `<SNAPSHOT_OWNERS><snapshot>/{uid,namespace,name,released}`.
pub const SNAPSHOT_OWNERS: &str = "Aux/edgebind.dev/snapshot-owner/";

/// The Kubernetes object a LINSTOR object belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl Owner {
    pub fn marker(&self) -> Props {
        Props::from([
            (MANAGED_BY.to_string(), MANAGER.to_string()),
            (OWNER_UID.to_string(), self.uid.clone()),
            (OWNER_KIND.to_string(), self.kind.to_string()),
            (OWNER_NAMESPACE.to_string(), self.namespace.clone()),
            (OWNER_NAME.to_string(), self.name.clone()),
        ])
    }
}

fn snapshot_key(snap: &str, field: &str) -> String {
    format!("{SNAPSHOT_OWNERS}{snap}/{field}")
}

/// The record of a snapshot's owner kept on its resource definition (servers before 1.26).
pub fn snapshot_record(snap: &str, owner: &Owner) -> Props {
    Props::from([
        (snapshot_key(snap, "uid"), owner.uid.clone()),
        (snapshot_key(snap, "namespace"), owner.namespace.clone()),
        (snapshot_key(snap, "name"), owner.name.clone()),
    ])
}

/// The key marking that record released (the owner was deleted with `Retain`).
pub fn snapshot_record_released(snap: &str) -> String {
    snapshot_key(snap, "released")
}

/// Every key of that record, for deleting it with the snapshot.
pub fn snapshot_record_keys(snap: &str) -> Vec<String> {
    ["uid", "namespace", "name", "released"]
        .iter()
        .map(|f| snapshot_key(snap, f))
        .collect()
}

/// A snapshot's ownership marker: its own properties when they carry one (REST API 1.26+),
/// else the record on its resource definition, shaped like a marker (`rd_props`); empty when
/// there is neither (then the snapshot is not edgebind's).
pub fn snapshot_marker(snapshot_props: &Props, rd_props: Option<&Props>, snap: &str) -> Props {
    if snapshot_props.contains_key(MANAGED_BY) {
        return snapshot_props.clone();
    }
    let Some(uid) = rd_props.and_then(|p| p.get(&snapshot_key(snap, "uid"))) else {
        return snapshot_props.clone();
    };
    let rd = rd_props.cloned().unwrap_or_default();
    let mut m = Props::from([
        (MANAGED_BY.to_string(), MANAGER.to_string()),
        (OWNER_UID.to_string(), uid.clone()),
    ]);
    for (field, key) in [("namespace", OWNER_NAMESPACE), ("name", OWNER_NAME)] {
        if let Some(v) = rd.get(&snapshot_key(snap, field)) {
            m.insert(key.to_string(), v.clone());
        }
    }
    if rd.get(&snapshot_record_released(snap)).map(String::as_str) == Some("true") {
        m.insert(RELEASED.to_string(), "true".to_string());
    }
    m
}

/// A restore copies the snapshot's copy of the source resource definition's properties onto
/// the target, overriding ours (linstor-server `CtrlSnapshotRestoreApiCallHandler` l.317). The
/// target then names the source volume's owner. True when `props` (the target's) carry exactly
/// the owner uid of that copy (`copied_owner_uid`) and not ours: edgebind made this resource
/// definition for `owner` and restored into it, so it rewrites the marker rather than report a
/// conflict and orphan it.
pub fn restored_over(props: &Props, owner: &Owner, copied_owner_uid: Option<&str>) -> bool {
    let Some(copied) = copied_owner_uid else {
        return false;
    };
    props.get(MANAGED_BY).map(String::as_str) == Some(MANAGER)
        && props.get(OWNER_UID).map(String::as_str) == Some(copied)
        && copied != owner.uid
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ownership {
    /// Nothing there yet.
    Absent,
    /// Ours (marker with our uid).
    Ours,
    /// Left behind by a deleted owner with `Retain`; adoptable on explicit request.
    Released { previous: String },
    /// Not ours: never touched.
    Foreign { why: String },
}

/// Classifies an existing object's properties (`None`: the object does not exist).
pub fn classify(props: Option<&Props>, owner: &Owner) -> Ownership {
    let Some(props) = props else {
        return Ownership::Absent;
    };
    if props.get(MANAGED_BY).map(String::as_str) != Some(MANAGER) {
        return Ownership::Foreign {
            why: "it was not created by edgebind".into(),
        };
    }
    let prev = format!(
        "{}/{}",
        props
            .get(OWNER_NAMESPACE)
            .map(String::as_str)
            .unwrap_or("?"),
        props.get(OWNER_NAME).map(String::as_str).unwrap_or("?")
    );
    match props.get(OWNER_UID) {
        Some(uid) if *uid == owner.uid => Ownership::Ours,
        _ if props.get(RELEASED).map(String::as_str) == Some("true") => {
            Ownership::Released { previous: prev }
        }
        _ => Ownership::Foreign {
            why: format!("it belongs to another edgebind object ({prev})"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(uid: &str) -> Owner {
        Owner {
            kind: "EdgeVolume",
            namespace: "ns".into(),
            name: "v".into(),
            uid: uid.into(),
        }
    }

    #[test]
    fn classification() {
        let me = owner("u1");
        assert_eq!(classify(None, &me), Ownership::Absent);
        assert_eq!(classify(Some(&me.marker()), &me), Ownership::Ours);
        assert!(matches!(
            classify(Some(&Props::new()), &me),
            Ownership::Foreign { .. }
        ));
        let mut other = owner("u0").marker();
        assert!(matches!(
            classify(Some(&other), &me),
            Ownership::Foreign { .. }
        ));
        other.insert(RELEASED.into(), "true".into());
        assert_eq!(
            classify(Some(&other), &me),
            Ownership::Released {
                previous: "ns/v".into()
            }
        );
    }

    #[test]
    fn snapshot_marker_from_the_resource_definition_record() {
        let me = owner("u1");
        let rd = snapshot_record("ebs_x", &me);
        let m = snapshot_marker(&Props::new(), Some(&rd), "ebs_x");
        assert_eq!(classify(Some(&m), &me), Ownership::Ours);
        assert!(matches!(
            classify(
                Some(&snapshot_marker(&Props::new(), Some(&rd), "ebs_y")),
                &me
            ),
            Ownership::Foreign { .. }
        ));
        let mut released = rd.clone();
        released.insert(snapshot_record_released("ebs_x"), "true".into());
        let m = snapshot_marker(&Props::new(), Some(&released), "ebs_x");
        assert!(matches!(
            classify(Some(&m), &owner("u2")),
            Ownership::Released { .. }
        ));
    }

    #[test]
    fn restored_over_only_for_the_copied_owner() {
        let me = owner("u1");
        let copied = owner("u0").marker();
        assert!(restored_over(&copied, &me, Some("u0")));
        assert!(!restored_over(&copied, &me, None));
        assert!(!restored_over(&copied, &me, Some("u9")));
        assert!(!restored_over(&me.marker(), &me, Some("u1")));
    }
}
