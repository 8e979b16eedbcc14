//! The planner, on every situation the issue names: create, grow, more replicas, converged,
//! conflicts, released objects, restores and deletions.

use serde_json::json;

use super::plan::*;
use super::validate::{ValidSpec, validate};
use crate::controller::ownership::{self, Owner};
use crate::crd::volume::EdgeVolumeSpec;
use crate::linstor::ops::OpKind;
use crate::linstor::types::*;
use crate::linstor::version::{ApiVersion, Features};

fn owner() -> Owner {
    Owner {
        kind: "EdgeVolume",
        namespace: "ns".into(),
        name: "db".into(),
        uid: "uid-1".into(),
    }
}

fn spec(v: serde_json::Value) -> ValidSpec {
    let s: EdgeVolumeSpec = serde_json::from_value(v).expect("fixture");
    validate(&s).expect("valid fixture")
}

fn explicit() -> ValidSpec {
    spec(
        json!({"backendRef": "b", "size": "1Gi", "placement": {"placeCount": 2, "storagePools": ["thin"]}, "properties": {"team": "a"}}),
    )
}

const NEW: Features = Features {
    api: ApiVersion(1, 27, 0),
    spawn_with_props: true,
    snapshot_props: true,
};
const OLD: Features = Features {
    api: ApiVersion(1, 21, 0),
    spawn_with_props: false,
    snapshot_props: false,
};

fn run(spec: &ValidSpec, observed: &Observed, features: Features) -> VolumePlan {
    plan(&PlanInput {
        owner: &owner(),
        name: "eb-ns_db",
        spec,
        features,
        observed,
        adopt_released: false,
        source: None,
        placeable: None,
        request_id: None,
    })
}

fn ops(p: VolumePlan) -> Vec<crate::linstor::Op> {
    match p {
        VolumePlan::Ops(o) => o,
        VolumePlan::Conflict(m) => panic!("unexpected conflict: {m}"),
    }
}

fn owned_rd(size_kib: u64) -> ResourceDefinition {
    let mut props = owner().marker();
    props.insert("Aux/team".into(), "a".into());
    props.insert(ownership::LAST_APPLIED.into(), r#"["Aux/team"]"#.into());
    ResourceDefinition {
        name: "eb-ns_db".into(),
        props,
        volume_definitions: vec![VolumeDefinition {
            volume_number: 0,
            size_kib,
            ..Default::default()
        }],
        ..Default::default()
    }
}

fn replica(node: &str, disk: &str) -> ResourceWithVolumes {
    ResourceWithVolumes {
        name: "eb-ns_db".into(),
        node_name: node.into(),
        state: Some(ResourceState {
            in_use: Some(false),
        }),
        volumes: vec![Volume {
            volume_number: 0,
            state: Some(VolumeState {
                disk_state: Some(disk.into()),
            }),
            ..Default::default()
        }],
        ..Default::default()
    }
}

#[test]
fn create_is_three_writes_with_marker() {
    let o = ops(run(&explicit(), &Observed::default(), NEW));
    assert_eq!(o.len(), 3);
    assert_eq!(o[0].path, "/v1/resource-definitions");
    let props = &o[0].body.as_ref().unwrap()["resource_definition"]["props"];
    assert_eq!(props[ownership::OWNER_UID], "uid-1");
    assert_eq!(props["Aux/team"], "a");
    assert_eq!(
        o[1].body.as_ref().unwrap()["volume_definition"]["size_kib"],
        1 << 20
    );
    assert_eq!(o[2].path, "/v1/resource-definitions/eb-ns_db/autoplace");
    assert_eq!(
        o[2].body.as_ref().unwrap()["select_filter"],
        json!({"place_count": 2, "storage_pool_list": ["thin"]})
    );
    assert!(o.iter().all(|op| op.kind == OpKind::Create));
    // Never a null in a request body.
    for op in &o {
        assert!(
            !serde_json::to_string(&op.body).unwrap().contains("null"),
            "{op:?}"
        );
    }
}

#[test]
fn resource_group_spawns_in_one_write_or_three_on_old_servers() {
    let s = spec(json!({"backendRef": "b", "size": "1Gi", "placement": {"resourceGroup": "fast"}}));
    let o = ops(run(&s, &Observed::default(), NEW));
    assert_eq!(o.len(), 1);
    assert_eq!(o[0].path, "/v1/resource-groups/fast/spawn");
    assert_eq!(
        o[0].body.as_ref().unwrap()["volume_sizes"],
        json!([1 << 20])
    );
    let o = ops(run(&s, &Observed::default(), OLD));
    assert_eq!(o.len(), 3, "no spawn props before REST API 1.22");
    assert_eq!(
        o[0].body.as_ref().unwrap()["resource_definition"]["resource_group_name"],
        "fast"
    );
    assert_eq!(o[2].body.as_ref().unwrap(), &json!({"select_filter": {}}));
}

#[test]
fn converged_makes_no_writes() {
    let obs = Observed {
        rd: Some(owned_rd(1 << 20)),
        resources: vec![replica("a", "UpToDate"), replica("b", "UpToDate")],
        snapshots: vec![],
    };
    assert!(ops(run(&explicit(), &obs, NEW)).is_empty());
}

#[test]
fn grows_never_shrinks() {
    let obs = Observed {
        rd: Some(owned_rd(1 << 19)),
        resources: vec![replica("a", "UpToDate"), replica("b", "UpToDate")],
        snapshots: vec![],
    };
    let o = ops(run(&explicit(), &obs, NEW));
    assert_eq!(o.len(), 1);
    assert_eq!(
        (o[0].method, o[0].path.as_str()),
        (
            "PUT",
            "/v1/resource-definitions/eb-ns_db/volume-definitions/0"
        )
    );
    assert_eq!(o[0].body.as_ref().unwrap()["size_kib"], 1 << 20);
    // LINSTOR bigger than the spec (grown elsewhere): left alone.
    let obs = Observed {
        rd: Some(owned_rd(1 << 21)),
        ..obs
    };
    assert!(ops(run(&explicit(), &obs, NEW)).is_empty());
}

#[test]
fn raises_replicas_and_never_removes() {
    let obs = Observed {
        rd: Some(owned_rd(1 << 20)),
        resources: vec![replica("a", "UpToDate")],
        snapshots: vec![],
    };
    let o = ops(run(&explicit(), &obs, NEW));
    assert_eq!(o.len(), 1);
    assert!(o[0].path.ends_with("/autoplace"));
    let obs = Observed {
        resources: vec![
            replica("a", "UpToDate"),
            replica("b", "UpToDate"),
            replica("c", "UpToDate"),
        ],
        ..obs
    };
    assert!(
        ops(run(&explicit(), &obs, NEW)).is_empty(),
        "three replicas for two wanted: nothing removed"
    );
}

#[test]
fn replacement_replicas_are_asked_for_only_as_far_as_nodes_can_take_them() {
    let three = spec(
        json!({"backendRef": "b", "size": "1Gi", "placement": {"placeCount": 3, "storagePools": ["thin"]}, "properties": {"team": "a"}}),
    );
    let obs = Observed {
        rd: Some(owned_rd(1 << 20)),
        resources: vec![replica("a", "UpToDate")],
        snapshots: vec![],
    };
    let with = |placeable| {
        ops(plan(&PlanInput {
            owner: &owner(),
            name: "eb-ns_db",
            spec: &three,
            features: NEW,
            observed: &obs,
            adopt_released: false,
            source: None,
            placeable,
            request_id: None,
        }))
    };
    let count = |o: &[crate::linstor::Op]| {
        o.iter()
            .find(|op| op.path.ends_with("/autoplace"))
            .and_then(|op| op.body.as_ref())
            .map(|b| b["select_filter"]["place_count"].clone())
    };
    // Unknown node state: the declared count.
    assert_eq!(count(&with(None)), Some(json!(3)));
    // Two nodes can take one: the declared count.
    assert_eq!(count(&with(Some(2))), Some(json!(3)));
    // One: 1 -> 2 now (autoplace places all or nothing), the rest later.
    assert_eq!(count(&with(Some(1))), Some(json!(2)));
    // None: no call at all.
    assert_eq!(count(&with(Some(0))), None);
    assert!(with(Some(0)).is_empty());
}

#[test]
fn property_changes_use_last_applied() {
    let s = spec(
        json!({"backendRef": "b", "size": "1Gi", "placement": {"placeCount": 2, "storagePools": ["thin"]}, "properties": {"owner": "x"}}),
    );
    let mut rd = owned_rd(1 << 20);
    rd.props.insert("Aux/someone-else".into(), "keep".into());
    let obs = Observed {
        rd: Some(rd),
        resources: vec![replica("a", "UpToDate"), replica("b", "UpToDate")],
        snapshots: vec![],
    };
    let o = ops(run(&s, &obs, NEW));
    assert_eq!(o.len(), 1);
    let body = o[0].body.as_ref().unwrap();
    assert_eq!(body["override_props"]["Aux/owner"], "x");
    assert_eq!(
        body["delete_props"],
        json!(["Aux/team"]),
        "only keys edgebind set are removed"
    );
}

#[test]
fn foreign_object_is_a_conflict() {
    let rd = ResourceDefinition {
        name: "EB-NS_DB".into(),
        ..Default::default()
    };
    let obs = Observed {
        rd: Some(rd),
        ..Default::default()
    };
    assert!(
        matches!(run(&explicit(), &obs, NEW), VolumePlan::Conflict(m) if m.contains("not created by edgebind"))
    );
    let mut other = owned_rd(1);
    other
        .props
        .insert(ownership::OWNER_UID.into(), "uid-0".into());
    let obs = Observed {
        rd: Some(other),
        ..Default::default()
    };
    assert!(matches!(
        run(&explicit(), &obs, NEW),
        VolumePlan::Conflict(_)
    ));
}

#[test]
fn released_needs_explicit_adoption() {
    let mut rd = owned_rd(1 << 20);
    rd.props
        .insert(ownership::OWNER_UID.into(), "old-uid".into());
    rd.props.insert(ownership::RELEASED.into(), "true".into());
    let obs = Observed {
        rd: Some(rd),
        ..Default::default()
    };
    let s = explicit();
    assert!(matches!(run(&s, &obs, NEW), VolumePlan::Conflict(m) if m.contains("adopt-released")));
    let o = ops(plan(&PlanInput {
        owner: &owner(),
        name: "eb-ns_db",
        spec: &s,
        features: NEW,
        observed: &obs,
        adopt_released: true,
        source: None,
        placeable: None,
        request_id: None,
    }));
    assert_eq!(o.len(), 1);
    let body = o[0].body.as_ref().unwrap();
    assert_eq!(body["override_props"][ownership::OWNER_UID], "uid-1");
    assert_eq!(body["delete_props"], json!([ownership::RELEASED]));
}

#[test]
fn restore_creates_then_restores_never_into_existing_data() {
    let s = spec(
        json!({"backendRef": "b", "size": "1Gi", "placement": {"placeCount": 2}, "source": {"snapshot": "s1"}}),
    );
    let src = RestoreSource {
        id: "ns/s1".into(),
        resource: "eb-ns_src".into(),
        snapshot: "ebs_s1".into(),
        nodes: vec!["a".into(), "b".into()],
        size_kib: None,
        copied_owner_uid: None,
    };
    let me = owner();
    let empty = Observed::default();
    let input = |obs: &'_ Observed| {
        plan(&PlanInput {
            owner: &me,
            name: "eb-ns_db",
            spec: &s,
            features: NEW,
            observed: obs,
            adopt_released: false,
            source: Some(&src),
            placeable: None,
            request_id: None,
        })
    };
    let o = ops(input(&empty));
    assert_eq!(o.len(), 3);
    assert_eq!(
        o[0].body.as_ref().unwrap()["resource_definition"]["props"][ownership::RESTORED_FROM],
        "ns/s1"
    );
    assert!(
        o[1].path
            .ends_with("/snapshot-restore-volume-definition/ebs_s1")
    );
    assert!(o[2].path.ends_with("/snapshot-restore-resource/ebs_s1"));
    assert_eq!(
        o[2].body.as_ref().unwrap(),
        &json!({"to_resource": "eb-ns_db", "nodes": ["a", "b"]})
    );
    // Restored and placed: nothing more, and never a second restore.
    let mut rd = owned_rd(1 << 20);
    rd.props
        .insert(ownership::RESTORED_FROM.into(), "ns/s1".into());
    let obs = Observed {
        rd: Some(rd),
        resources: vec![replica("a", "UpToDate"), replica("b", "UpToDate")],
        snapshots: vec![],
    };
    let o = ops(input(&obs));
    assert!(o.iter().all(|op| !op.path.contains("restore")), "{o:?}");
}

fn restore_source(size_kib: Option<u64>, copied: Option<&str>) -> RestoreSource {
    RestoreSource {
        id: "ns/s1".into(),
        resource: "eb-ns_src".into(),
        snapshot: "ebs_s1".into(),
        nodes: vec!["a".into(), "b".into()],
        size_kib,
        copied_owner_uid: copied.map(str::to_string),
    }
}

fn plan_restore(s: &ValidSpec, src: &RestoreSource, obs: &Observed) -> VolumePlan {
    plan(&PlanInput {
        owner: &owner(),
        name: "eb-ns_db",
        spec: s,
        features: NEW,
        observed: obs,
        adopt_released: false,
        source: Some(src),
        placeable: None,
        request_id: None,
    })
}

#[test]
fn restore_into_a_larger_volume_restores_first_and_recreates_a_grown_volume_definition() {
    let s = spec(
        json!({"backendRef": "b", "size": "2Gi", "placement": {"placeCount": 2}, "properties": {"team": "a"}, "source": {"snapshot": "s1"}}),
    );
    let src = restore_source(Some(1 << 20), None);
    let mut rd = owned_rd(1 << 20);
    rd.props
        .insert(ownership::RESTORED_FROM.into(), "ns/s1".into());
    // Volume definition at the snapshot's size, no replicas yet: restore, do not grow.
    let obs = Observed {
        rd: Some(rd.clone()),
        ..Default::default()
    };
    let o = ops(plan_restore(&s, &src, &obs));
    assert!(
        o.iter().all(|op| !op.path.contains("volume-definitions/0")),
        "{o:?}"
    );
    assert!(
        o.last()
            .unwrap()
            .path
            .ends_with("/snapshot-restore-resource/ebs_s1")
    );
    // Grown before the restore (by an older edgebind): recreate it at the snapshot's size.
    rd.volume_definitions[0].size_kib = 2 << 20;
    let obs = Observed {
        rd: Some(rd.clone()),
        ..Default::default()
    };
    let o = ops(plan_restore(&s, &src, &obs));
    let kinds: Vec<(&str, &str)> = o
        .iter()
        .map(|op| (op.method, op.path.rsplit('/').nth(1).unwrap_or_default()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("DELETE", "volume-definitions"),
            ("POST", "snapshot-restore-volume-definition"),
            ("POST", "snapshot-restore-resource")
        ],
        "{o:?}"
    );
    // Restored: now grow.
    rd.volume_definitions[0].size_kib = 1 << 20;
    let obs = Observed {
        rd: Some(rd),
        resources: vec![replica("a", "UpToDate"), replica("b", "UpToDate")],
        snapshots: vec![],
    };
    let o = ops(plan_restore(&s, &src, &obs));
    assert_eq!(o.len(), 1, "{o:?}");
    assert_eq!(o[0].body.as_ref().unwrap()["size_kib"], 2 << 20);
}

#[test]
fn restored_over_markers_are_rewritten_not_a_conflict() {
    let s = spec(
        json!({"backendRef": "b", "size": "1Gi", "placement": {"placeCount": 2}, "source": {"snapshot": "s1"}}),
    );
    // What the restore left: the source volume's marker and properties over ours.
    let source_owner = Owner {
        uid: "uid-src".into(),
        name: "src".into(),
        ..owner()
    };
    let mut props = source_owner.marker();
    props.insert("Aux/team".into(), "src".into());
    props.insert(ownership::LAST_APPLIED.into(), r#"["Aux/team"]"#.into());
    props.insert(ownership::RESTORED_FROM.into(), "ns/s1".into());
    props.insert(
        format!("{}ebs_old/uid", ownership::SNAPSHOT_OWNERS),
        "uid-snap".into(),
    );
    let rd = ResourceDefinition {
        name: "eb-ns_db".into(),
        props,
        volume_definitions: owned_rd(1 << 20).volume_definitions,
        ..Default::default()
    };
    let obs = Observed {
        rd: Some(rd),
        resources: vec![replica("a", "UpToDate"), replica("b", "UpToDate")],
        snapshots: vec![],
    };
    // Without the snapshot's record of the copied owner: another owner's, a conflict.
    assert!(matches!(
        plan_restore(&s, &restore_source(Some(1 << 20), None), &obs),
        VolumePlan::Conflict(_)
    ));
    let o = ops(plan_restore(
        &s,
        &restore_source(Some(1 << 20), Some("uid-src")),
        &obs,
    ));
    assert_eq!(o.len(), 1, "{o:?}");
    let body = o[0].body.as_ref().unwrap();
    assert_eq!(body["override_props"][ownership::OWNER_UID], "uid-1");
    assert_eq!(body["override_props"][ownership::OWNER_NAME], "db");
    assert_eq!(body["override_props"][ownership::RESTORED_FROM], "ns/s1");
    let deleted: Vec<&str> = body["delete_props"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    assert!(deleted.contains(&"Aux/team"), "{deleted:?}");
    assert!(
        deleted.contains(&format!("{}ebs_old/uid", ownership::SNAPSHOT_OWNERS).as_str()),
        "{deleted:?}"
    );
}

#[test]
fn cleanup_retain_marks_released_and_delete_removes_snapshots_first() {
    let snap = |managed: bool| Snapshot {
        name: "ebs_x".into(),
        resource_name: "eb-ns_db".into(),
        snapshot_definition_props: if managed {
            Owner {
                kind: "EdgeSnapshot",
                namespace: "ns".into(),
                name: "x".into(),
                uid: "s".into(),
            }
            .marker()
        } else {
            Props::new()
        },
        ..Default::default()
    };
    let obs = Observed {
        rd: Some(owned_rd(1)),
        resources: vec![replica("a", "UpToDate")],
        snapshots: vec![snap(true)],
    };
    let retain = plan_cleanup(&owner(), "eb-ns_db", false, &obs).unwrap();
    assert_eq!(retain.len(), 1);
    assert_eq!(
        retain[0].body.as_ref().unwrap()["override_props"][ownership::RELEASED],
        "true"
    );
    let del = plan_cleanup(&owner(), "eb-ns_db", true, &obs).unwrap();
    assert_eq!(
        del.iter()
            .map(|o| (o.method, o.path.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (
                "DELETE",
                "/v1/resource-definitions/eb-ns_db/snapshots/ebs_x"
            ),
            ("DELETE", "/v1/resource-definitions/eb-ns_db"),
        ]
    );
    let foreign = Observed {
        snapshots: vec![snap(false)],
        ..obs.clone()
    };
    assert!(
        plan_cleanup(&owner(), "eb-ns_db", true, &foreign).is_err(),
        "foreign snapshots block, never deleted"
    );
    // Gone already, or not ours: nothing to do.
    assert!(
        plan_cleanup(&owner(), "eb-ns_db", true, &Observed::default())
            .unwrap()
            .is_empty()
    );
    let not_ours = Observed {
        rd: Some(ResourceDefinition {
            name: "eb-ns_db".into(),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(
        plan_cleanup(&owner(), "eb-ns_db", true, &not_ours)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn status_reports_progress_degradation_and_readiness() {
    use super::status::compute;
    use crate::crd::conditions::{DEGRADED, READY};
    let find = |c: &super::status::Computed, t: &str| {
        c.conditions.iter().find(|d| d.type_ == t).cloned().unwrap()
    };
    let s = explicit();
    let c = compute(&s, &Observed::default(), true);
    assert_eq!(
        (find(&c, READY).status, find(&c, READY).reason),
        (false, "Creating")
    );
    let obs = Observed {
        rd: Some(owned_rd(1 << 20)),
        resources: vec![replica("a", "UpToDate"), replica("b", "Outdated")],
        snapshots: vec![],
    };
    let c = compute(&s, &obs, false);
    assert!(find(&c, READY).status);
    assert_eq!(
        (find(&c, DEGRADED).status, find(&c, DEGRADED).reason),
        (true, "ReplicaNotUpToDate")
    );
    assert_eq!(c.size.as_deref(), Some("1Gi"));
    assert_eq!(c.diskful_replicas, Some(2));
    let mut offline = replica("b", "UpToDate");
    offline.state = None;
    let obs = Observed {
        resources: vec![replica("a", "UpToDate"), offline],
        ..obs
    };
    assert_eq!(
        find(&compute(&s, &obs, false), DEGRADED).reason,
        "NodeOffline"
    );
}

#[test]
fn validation_errors_are_actionable() {
    let bad = |v: serde_json::Value| -> String {
        let s: EdgeVolumeSpec = serde_json::from_value(v).unwrap();
        validate(&s).unwrap_err()
    };
    assert!(bad(json!({"backendRef": "b", "size": "1Ki"})).contains("4Mi minimum"));
    assert!(
        bad(json!({"backendRef": "b", "size": "1Gi", "placement": {"resourceGroup": "bad name"}}))
            .contains("not a valid LINSTOR name")
    );
    assert!(bad(json!({"backendRef": "b", "size": "1Gi", "placement": {"layerList": ["storage", "drbd"]}})).contains("must end with storage"));
}
