//! The PersistentVolume of an EdgeVolume (pure): what it must look like for linstor-csi, and
//! the write that makes the cluster's PV match. The controller executes the write; `edgebind
//! plan` prints it.
//!
//! What linstor-csi needs of a volume it did not create (piraeusdatastore/linstor-csi v1.12.0,
//! 44aa98af; details in `docs/reference/linstor-csi-static-pv.md`):
//! - `volumeHandle` = the resource definition's name, volume 0 (`volume.ParseVolumeId`); no
//!   `Aux/csi-*` property is required (`FindByID`).
//! - `volumeAttributes` with the marker `linstor.csi.linbit.com/uses-volume-context`, so the node
//!   plugin takes the context from the PV instead of looking for a legacy RD property; then
//!   `remote-access-policy` must parse (`pkg/volume/remoteaccess.go` `UnmarshalText`: "true" is
//!   "from anywhere") and `mount-options` / `post-mount-xfs-opts` may be empty
//!   (`pkg/driver/volume_context.go` `VolumeContextFromMap`).
//! - The driver never formats: LINSTOR's satellite makes the filesystem named by the
//!   `FileSystem/Type` property (linstor-server `MkfsUtils.makeFileSystemOnMarked`, @0f1644b5),
//!   which the controller therefore sets on the resource definition.
//! - Reclaim policy `Retain`: with `Delete`, releasing the claim makes csi-provisioner call
//!   `DeleteVolume`, which deletes the resource definition without any ownership check.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    CSIPersistentVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeSpec,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::ObjectMeta;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::controller::ownership::Owner;
use crate::crd::quantity;
use crate::crd::volume::{FsType, PersistentVolumeRequest, PvAccessMode, PvVolumeMode};

pub const CSI_DRIVER: &str = "linstor.csi.linbit.com";
/// The uid of the EdgeVolume a PV belongs to: edgebind changes or deletes only PVs carrying it.
pub const OWNER_UID_ANNOTATION: &str = "edgebind.dev/owner-uid";
/// `<namespace>/<name>` of that EdgeVolume, for people.
pub const OWNER_ANNOTATION: &str = "edgebind.dev/owner";
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// The LINSTOR property that makes the satellite create the filesystem.
pub const FS_TYPE_PROP: &str = "FileSystem/Type";

const CTX_MARKER: &str = "linstor.csi.linbit.com/uses-volume-context";
const CTX_MOUNT_OPTIONS: &str = "linstor.csi.linbit.com/mount-options";
const CTX_XFS_OPTS: &str = "linstor.csi.linbit.com/post-mount-xfs-opts";
const CTX_REMOTE_ACCESS: &str = "linstor.csi.linbit.com/remote-access-policy";

/// Longest object name Kubernetes accepts (a DNS subdomain).
const NAME_MAX: usize = 253;

/// The PV's name: `edgebind.<namespace>.<name>`. Injective, since a namespace has no dot; a
/// hash of both when that is longer than a name may be.
pub fn pv_name(namespace: &str, name: &str) -> String {
    let plain = format!("edgebind.{namespace}.{name}");
    if plain.len() <= NAME_MAX {
        return plain;
    }
    let h = Sha256::digest(format!("{namespace}/{name}").as_bytes());
    let hex: String = h.iter().take(16).map(|b| format!("{b:02x}")).collect();
    format!("edgebind.{hex}")
}

/// The filesystem LINSTOR should make, when the PV mounts one.
pub fn fs_type(req: &PersistentVolumeRequest) -> Option<FsType> {
    match req.volume_mode {
        Some(PvVolumeMode::Block) => None,
        _ => Some(req.fs_type.unwrap_or(FsType::Ext4)),
    }
}

fn access_mode(m: PvAccessMode) -> &'static str {
    match m {
        PvAccessMode::ReadWriteOnce => "ReadWriteOnce",
        PvAccessMode::ReadWriteOncePod => "ReadWriteOncePod",
        PvAccessMode::ReadOnlyMany => "ReadOnlyMany",
        PvAccessMode::ReadWriteMany => "ReadWriteMany",
    }
}

/// The PV for a volume whose resource definition `linstor_name` holds `size_kib` (LINSTOR's
/// volume definition size: the PV never claims more than LINSTOR has).
pub fn desired(
    owner: &Owner,
    req: &PersistentVolumeRequest,
    linstor_name: &str,
    size_kib: u64,
) -> PersistentVolume {
    let fs = fs_type(req);
    PersistentVolume {
        metadata: ObjectMeta {
            name: Some(pv_name(&owner.namespace, &owner.name)),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_string(),
                "edgebind".to_string(),
            )])),
            annotations: Some(BTreeMap::from([
                (OWNER_UID_ANNOTATION.to_string(), owner.uid.clone()),
                (
                    OWNER_ANNOTATION.to_string(),
                    format!("{}/{}", owner.namespace, owner.name),
                ),
            ])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([(
                "storage".to_string(),
                Quantity(quantity::format_kib(size_kib)),
            )])),
            access_modes: Some(vec![
                access_mode(req.access_mode.unwrap_or(PvAccessMode::ReadWriteOnce)).to_string(),
            ]),
            volume_mode: Some(
                match req.volume_mode {
                    Some(PvVolumeMode::Block) => "Block",
                    _ => "Filesystem",
                }
                .to_string(),
            ),
            persistent_volume_reclaim_policy: Some("Retain".to_string()),
            storage_class_name: Some(req.storage_class_name.clone().unwrap_or_default()),
            claim_ref: req.claim_name.as_ref().map(|c| ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: Some(owner.namespace.clone()),
                name: Some(c.clone()),
                ..Default::default()
            }),
            csi: Some(CSIPersistentVolumeSource {
                driver: CSI_DRIVER.to_string(),
                volume_handle: linstor_name.to_string(),
                fs_type: fs.map(|f| f.as_str().to_string()),
                // DRBD attaches a diskless replica on whatever node the pod lands on, so the
                // PV carries no node affinity and allows access from anywhere.
                volume_attributes: Some(BTreeMap::from([
                    (CTX_MARKER.to_string(), "true".to_string()),
                    (CTX_MOUNT_OPTIONS.to_string(), String::new()),
                    (CTX_XFS_OPTS.to_string(), String::new()),
                    (CTX_REMOTE_ACCESS.to_string(), "true".to_string()),
                ])),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// The kind of a PV write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PvVerb {
    Create,
    /// A JSON merge patch.
    Patch,
    Delete,
}

/// A write to the cluster's PVs.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PvOp {
    pub verb: PvVerb,
    pub name: String,
    /// The object (create) or the merge patch (patch).
    #[serde(skip_serializing_if = "Value::is_null")]
    pub body: Value,
    pub summary: String,
}

#[derive(Clone, Debug, PartialEq)]
pub enum PvPlan {
    /// A PV of that name that edgebind did not create for this volume.
    Conflict(String),
    /// The write to make, if any.
    Write(Option<PvOp>),
}

/// Whether `pv` is the one edgebind made for `owner_uid`.
pub fn is_ours(pv: &PersistentVolume, owner_uid: &str) -> bool {
    pv.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(OWNER_UID_ANNOTATION))
        .is_some_and(|u| u == owner_uid)
}

/// The write that turns `existing` into `want`. Only what a PV allows to change after creation
/// is compared: the capacity (it grows with the volume) and the claim it is pre-bound to (only
/// while the binder has not bound it: a bound PV's claimRef is the binder's).
pub fn plan(
    existing: Option<&PersistentVolume>,
    want: &PersistentVolume,
    owner_uid: &str,
) -> PvPlan {
    let name = want.metadata.name.clone().unwrap_or_default();
    let Some(pv) = existing else {
        return PvPlan::Write(Some(PvOp {
            verb: PvVerb::Create,
            name: name.clone(),
            body: serde_json::to_value(want).unwrap_or(Value::Null),
            summary: format!("create PersistentVolume {name} for the CSI driver {CSI_DRIVER}"),
        }));
    };
    if !is_ours(pv, owner_uid) {
        return PvPlan::Conflict(format!(
            "PersistentVolume {name} exists and was not created by edgebind for this EdgeVolume; edgebind leaves it untouched. Delete or rename it"
        ));
    }
    let (Some(have), Some(spec)) = (pv.spec.as_ref(), want.spec.as_ref()) else {
        return PvPlan::Write(None);
    };
    let mut patch = serde_json::Map::new();
    let mut what = Vec::new();
    let size = |s: &PersistentVolumeSpec| {
        s.capacity
            .as_ref()
            .and_then(|c| c.get("storage"))
            .and_then(|q| quantity::parse_bytes(&q.0).ok())
    };
    if let (Some(h), Some(w)) = (size(have), size(spec))
        && w > h
    {
        patch.insert(
            "capacity".into(),
            json!({"storage": spec.capacity.as_ref().and_then(|c| c.get("storage"))}),
        );
        what.push(format!("grow to {}", quantity::format_kib(w / 1024)));
    }
    let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
    let claim = |s: &PersistentVolumeSpec| {
        s.claim_ref
            .as_ref()
            .map(|c| (c.namespace.clone(), c.name.clone()))
    };
    if phase != Some("Bound") && claim(have) != claim(spec) {
        patch.insert(
            "claimRef".into(),
            serde_json::to_value(&spec.claim_ref).unwrap_or(Value::Null),
        );
        what.push(match &spec.claim_ref {
            Some(c) => format!(
                "pre-bind to claim {}",
                c.name.as_deref().unwrap_or_default()
            ),
            None => "drop the pre-bound claim".into(),
        });
    }
    if patch.is_empty() {
        return PvPlan::Write(None);
    }
    PvPlan::Write(Some(PvOp {
        verb: PvVerb::Patch,
        name: name.clone(),
        body: json!({"spec": patch}),
        summary: format!("update PersistentVolume {name}: {}", what.join(", ")),
    }))
}

/// Whether deleting the volume may go ahead with respect to its PV.
#[derive(Clone, Debug, PartialEq)]
pub enum PvDeletion {
    /// No PV of ours: nothing to do.
    Nothing,
    /// A claim is bound to it: deleting now would pull the storage from under a workload.
    Blocked(String),
    /// Delete it (after the storage, per deletionPolicy).
    Delete(PvOp),
}

pub fn plan_delete(existing: Option<&PersistentVolume>, owner_uid: &str) -> PvDeletion {
    let Some(pv) = existing.filter(|pv| is_ours(pv, owner_uid)) else {
        return PvDeletion::Nothing;
    };
    let name = pv.metadata.name.clone().unwrap_or_default();
    let phase = pv.status.as_ref().and_then(|s| s.phase.as_deref());
    if phase == Some("Bound") {
        let claim = pv
            .spec
            .as_ref()
            .and_then(|s| s.claim_ref.as_ref())
            .map(|c| {
                format!(
                    "{}/{}",
                    c.namespace.as_deref().unwrap_or_default(),
                    c.name.as_deref().unwrap_or_default()
                )
            })
            .unwrap_or_else(|| "a claim".into());
        return PvDeletion::Blocked(format!(
            "PersistentVolume {name} is bound to claim {claim}; delete the claim (and the pods using it) first, then edgebind deletes the volume"
        ));
    }
    PvDeletion::Delete(PvOp {
        verb: PvVerb::Delete,
        name: name.clone(),
        body: Value::Null,
        summary: format!("delete PersistentVolume {name}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PersistentVolumeStatus;

    fn owner() -> Owner {
        Owner {
            kind: "EdgeVolume",
            namespace: "team-a".into(),
            name: "db".into(),
            uid: "u1".into(),
        }
    }

    fn req(v: Value) -> PersistentVolumeRequest {
        serde_json::from_value(v).expect("a request")
    }

    fn with_phase(mut pv: PersistentVolume, phase: &str) -> PersistentVolume {
        pv.status = Some(PersistentVolumeStatus {
            phase: Some(phase.into()),
            ..Default::default()
        });
        pv
    }

    #[test]
    fn the_pv_is_what_linstor_csi_needs_for_a_volume_it_did_not_create() {
        let pv = desired(
            &owner(),
            &req(json!({"claimName": "data", "storageClassName": "linstor-static"})),
            "eb-team-a_db",
            1 << 20,
        );
        let j = serde_json::to_value(&pv).expect("JSON");
        assert_eq!(j["metadata"]["name"], "edgebind.team-a.db");
        assert_eq!(j["metadata"]["annotations"][OWNER_UID_ANNOTATION], "u1");
        let spec = &j["spec"];
        assert_eq!(spec["capacity"]["storage"], "1Gi");
        assert_eq!(spec["persistentVolumeReclaimPolicy"], "Retain");
        assert_eq!(spec["accessModes"], json!(["ReadWriteOnce"]));
        assert_eq!(spec["volumeMode"], "Filesystem");
        assert_eq!(spec["storageClassName"], "linstor-static");
        assert_eq!(
            spec["claimRef"],
            json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim", "namespace": "team-a", "name": "data"})
        );
        assert_eq!(spec["csi"]["driver"], CSI_DRIVER);
        assert_eq!(spec["csi"]["volumeHandle"], "eb-team-a_db");
        assert_eq!(spec["csi"]["fsType"], "ext4");
        assert_eq!(spec["csi"]["volumeAttributes"][CTX_REMOTE_ACCESS], "true");
        assert_eq!(spec["csi"]["volumeAttributes"][CTX_MARKER], "true");
        assert!(spec.get("nodeAffinity").is_none());

        let block = desired(
            &owner(),
            &req(json!({"volumeMode": "Block", "accessMode": "ReadWriteMany"})),
            "eb-team-a_db",
            1024,
        );
        let j = serde_json::to_value(&block).expect("JSON");
        assert_eq!(j["spec"]["volumeMode"], "Block");
        assert!(j["spec"]["csi"].get("fsType").is_none());
        assert_eq!(j["spec"]["storageClassName"], "");
        assert!(j["spec"].get("claimRef").is_none());
    }

    #[test]
    fn names_are_valid_and_distinct() {
        assert_ne!(pv_name("a-b", "c"), pv_name("a", "b-c"));
        // A namespace is a DNS label (no dot): the first dot after the prefix ends it.
        assert_eq!(pv_name("a", "b.c"), "edgebind.a.b.c");
        let long = "x".repeat(253);
        let n = pv_name("team-a", &long);
        assert!(n.len() <= NAME_MAX && n.starts_with("edgebind."));
        assert_ne!(n, pv_name("team-b", &long));
    }

    #[test]
    fn an_existing_pv_is_grown_and_pre_bound_but_never_taken_over() {
        let r = req(json!({"claimName": "data"}));
        let small = desired(&owner(), &r, "rd", 1 << 20);
        let big = desired(&owner(), &r, "rd", 2 << 20);
        assert!(matches!(
            plan(None, &small, "u1"),
            PvPlan::Write(Some(PvOp {
                verb: PvVerb::Create,
                ..
            }))
        ));
        assert_eq!(plan(Some(&small), &small, "u1"), PvPlan::Write(None));
        let PvPlan::Write(Some(op)) = plan(Some(&small), &big, "u1") else {
            panic!("a patch");
        };
        assert_eq!(op.body, json!({"spec": {"capacity": {"storage": "2Gi"}}}));
        // Never shrunk (LINSTOR cannot shrink; a smaller view is a stale read).
        assert_eq!(plan(Some(&big), &small, "u1"), PvPlan::Write(None));
        // Another owner's PV of that name.
        assert!(matches!(
            plan(Some(&small), &small, "u2"),
            PvPlan::Conflict(_)
        ));
        // Claim changed while not bound: re-pointed; once bound, the binder's.
        let other = desired(&owner(), &req(json!({"claimName": "other"})), "rd", 1 << 20);
        let PvPlan::Write(Some(op)) = plan(Some(&small), &other, "u1") else {
            panic!("a patch");
        };
        assert_eq!(op.body["spec"]["claimRef"]["name"], "other");
        assert_eq!(
            plan(Some(&with_phase(small.clone(), "Bound")), &other, "u1"),
            PvPlan::Write(None)
        );
    }

    #[test]
    fn deletion_waits_while_a_claim_is_bound() {
        let pv = desired(&owner(), &req(json!({"claimName": "data"})), "rd", 1024);
        let PvDeletion::Blocked(msg) = plan_delete(Some(&with_phase(pv.clone(), "Bound")), "u1")
        else {
            panic!("blocked");
        };
        assert!(msg.contains("team-a/data"), "{msg}");
        for phase in ["Available", "Released", "Pending"] {
            assert!(matches!(
                plan_delete(Some(&with_phase(pv.clone(), phase)), "u1"),
                PvDeletion::Delete(_)
            ));
        }
        assert_eq!(plan_delete(Some(&pv), "other"), PvDeletion::Nothing);
        assert_eq!(plan_delete(None, "u1"), PvDeletion::Nothing);
    }
}
