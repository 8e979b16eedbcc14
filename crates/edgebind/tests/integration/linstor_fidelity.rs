//! Behaviours of the real LINSTOR controller that edgebind must survive (issue 14), each
//! against a simulator that now does what the server does; where the behaviour depends on the
//! REST API version, against the oldest version edgebind supports and the newest.

use std::time::Duration;

use edgebind::controller::ownership;
use edgebind_sim::linstor::SimConfig;
use kube::api::DeleteParams;
use serde_json::{Value, json};

use crate::support::bed::{Bed, NS, fast_config};
use crate::support::http;

/// Oldest REST API edgebind supports (server 1.24).
const OLDEST: &str = "1.20.0";
/// Newest REST API known (server 1.34).
const NEWEST: &str = "1.28.0";

fn sim_at(rest_api: &str) -> SimConfig {
    SimConfig {
        rest_api_version: rest_api.to_string(),
        controller_version: match rest_api {
            OLDEST => "1.24.0".to_string(),
            "1.25.0" => "1.31.0".to_string(),
            _ => "1.34.0".to_string(),
        },
        ..SimConfig::realistic()
    }
}

fn rd_name(name: &str) -> String {
    edgebind::linstor::naming::volume_name(NS, name)
}

async fn make_snapshot(bed: &Bed, name: &str, volume: &str, policy: &str) {
    let snap: edgebind::crd::EdgeSnapshot = serde_json::from_value(json!({
        "apiVersion": "edgebind.dev/v1alpha1", "kind": "EdgeSnapshot",
        "metadata": {"name": name, "namespace": NS}, "spec": {"volumeRef": volume, "deletionPolicy": policy}
    }))
    .unwrap();
    bed.snapshots()
        .create(&Default::default(), &snap)
        .await
        .unwrap();
    bed.eventually(30, &format!("snapshot {name} ready"), || async {
        let s = bed.snapshots().get(name).await.ok()?;
        s.status
            .as_ref()
            .is_some_and(|st| st.ready_to_use)
            .then_some(())
    })
    .await;
}

fn condition(v: &edgebind::crd::EdgeVolume, type_: &str) -> Option<(String, String, String)> {
    v.status
        .as_ref()?
        .conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// Issue 14 item 1: a restore copies the source resource definition's properties, edgebind's
/// markers included, onto the new one. edgebind must take the restored definition back as its
/// own (not report Conflict and orphan it), also when it crashed right after the restore.
#[tokio::test]
async fn restore_keeps_the_restored_volume_owned_on_oldest_and_newest() {
    for api in [OLDEST, NEWEST] {
        let mut bed = Bed::start_with(sim_at(api), fast_config()).await;
        bed.create_volume("src", json!({"backendRef": "main", "size": "64Mi", "placement": {"placeCount": 2}, "properties": {"team": "src-only"}})).await;
        bed.wait_volume("src", "True", "Ready").await;
        make_snapshot(&bed, "nightly", "src", "Retain").await;

        // The marker rewrite after the restore never answers and the controller dies: the
        // restarted one finds the source's markers on the restored definition.
        let copy = rd_name("copy");
        bed.linstor
            .sim
            .faults()
            .hang(Some("PUT"), &format!("/v1/resource-definitions/{copy}"));
        let v = bed.create_volume("copy", json!({"backendRef": "main", "size": "64Mi", "placement": {"placeCount": 2}, "source": {"snapshot": "nightly"}})).await;
        let src_uid = bed
            .volumes()
            .get("src")
            .await
            .unwrap()
            .metadata
            .uid
            .unwrap();
        bed.eventually(30, "the restore copied the source's markers", || async {
            let rd = bed.linstor.sim.resource_definition(&copy)?;
            (rd["props"][ownership::OWNER_UID] == src_uid.as_str()
                && !bed.linstor.sim.resources(&copy).is_empty())
            .then_some(())
        })
        .await;
        bed.crash_controller().await;
        bed.linstor.sim.faults().clear();
        bed.start_controller();

        bed.wait_volume("copy", "True", "Ready").await;
        let rd = bed.linstor.sim.resource_definition(&copy).unwrap();
        let uid = v.metadata.uid.clone().unwrap();
        assert_eq!(rd["props"][ownership::OWNER_UID], uid.as_str(), "{api}");
        assert_eq!(rd["props"][ownership::OWNER_NAME], "copy", "{api}");
        assert_eq!(
            rd["props"][ownership::RESTORED_FROM],
            format!("{NS}/nightly"),
            "{api}"
        );
        assert!(
            rd["props"].get("Aux/team").is_none(),
            "{api}: the source's own property is not the copy's: {}",
            rd["props"]
        );
        // Owned, so deleting it deletes it (not orphaned).
        bed.volumes()
            .patch(
                "copy",
                &Default::default(),
                &kube::api::Patch::Merge(json!({"spec": {"deletionPolicy": "Delete"}})),
            )
            .await
            .unwrap();
        bed.volumes()
            .delete("copy", &DeleteParams::default())
            .await
            .unwrap();
        bed.eventually(30, "copy RD deleted", || async {
            bed.linstor
                .sim
                .resource_definition(&copy)
                .is_none()
                .then_some(())
        })
        .await;
        bed.assert_contract();
    }
}

/// Issue 14 item 2: snapshot-definition properties need REST API 1.26 (unknown before 1.24,
/// dropped by 1.24 and 1.25) and snapshot modification 1.26. On older servers edgebind records
/// the snapshot's owner on the resource definition, and still releases and deletes it.
#[tokio::test]
async fn snapshots_are_owned_released_and_deleted_on_every_version() {
    for api in [OLDEST, "1.25.0", NEWEST] {
        let bed = Bed::start_with(sim_at(api), fast_config()).await;
        bed.create_volume(
            "db",
            json!({"backendRef": "main", "size": "64Mi", "placement": {"placeCount": 2}}),
        )
        .await;
        bed.wait_volume("db", "True", "Ready").await;
        let rd = rd_name("db");
        make_snapshot(&bed, "keep", "db", "Retain").await;
        make_snapshot(&bed, "drop", "db", "Delete").await;
        let keep = edgebind::linstor::naming::snapshot_name("keep");
        let drop = edgebind::linstor::naming::snapshot_name("drop");
        let snaps = bed.linstor.sim.snapshots(&rd);
        assert_eq!(snaps.len(), 2, "{api}");
        let rd_props = bed.linstor.sim.resource_definition(&rd).unwrap()["props"].clone();
        let record = format!("{}{keep}/uid", ownership::SNAPSHOT_OWNERS);
        if api == NEWEST {
            assert!(
                snaps
                    .iter()
                    .all(|s| s["snapshot_definition_props"][ownership::MANAGED_BY] == "edgebind"),
                "{api}: {snaps:?}"
            );
            assert!(rd_props.get(&record).is_none(), "{api}");
        } else {
            assert!(rd_props.get(&record).is_some(), "{api}: {rd_props}");
        }

        for name in ["keep", "drop"] {
            bed.snapshots()
                .delete(name, &DeleteParams::default())
                .await
                .unwrap();
        }
        bed.eventually(30, "the Delete snapshot is gone", || async {
            let names: Vec<String> = bed
                .linstor
                .sim
                .snapshots(&rd)
                .iter()
                .map(|s| s["name"].as_str().unwrap_or_default().to_string())
                .collect();
            (names == vec![keep.clone()]).then_some(())
        })
        .await;
        bed.eventually(30, "the Retain snapshot is released", || async {
            let rd_props = bed.linstor.sim.resource_definition(&rd)?["props"].clone();
            let snap = bed.linstor.sim.snapshots(&rd).into_iter().next()?;
            let released = snap["snapshot_definition_props"][ownership::RELEASED] == "true"
                || rd_props[format!("{}{keep}/released", ownership::SNAPSHOT_OWNERS)] == "true";
            let dropped_record = rd_props
                .get(format!("{}{drop}/uid", ownership::SNAPSHOT_OWNERS))
                .is_none();
            (released && dropped_record).then_some(())
        })
        .await;
        let rejected: Vec<_> = bed
            .linstor
            .sim
            .exchanges()
            .into_iter()
            .filter(|e| e.status == 400 || e.status == 405)
            .map(|e| format!("{} {} {}", e.method, e.path, e.status))
            .collect();
        assert!(rejected.is_empty(), "{api}: refused calls {rejected:?}");
        bed.assert_contract();
    }
}

/// Issue 14 item 4: the server restores only onto a volume definition of the snapshot's size.
/// A restore into a larger volume whose first attempt failed must restore first and grow after.
#[tokio::test]
async fn restore_into_a_larger_volume_after_a_failed_attempt_restores_then_grows() {
    for api in [OLDEST, NEWEST] {
        let bed = Bed::start_with(sim_at(api), fast_config()).await;
        bed.create_volume(
            "src",
            json!({"backendRef": "main", "size": "64Mi", "placement": {"placeCount": 2}}),
        )
        .await;
        bed.wait_volume("src", "True", "Ready").await;
        make_snapshot(&bed, "s1", "src", "Retain").await;
        let faults = bed.linstor.sim.faults();
        faults.hang(Some("POST"), "snapshot-restore-resource");
        bed.create_volume("big", json!({"backendRef": "main", "size": "128Mi", "placement": {"placeCount": 2}, "source": {"snapshot": "s1"}})).await;
        let big = rd_name("big");
        bed.eventually(30, "the first restore attempt hangs", || async {
            (!bed.linstor.sim.volume_definitions(&big).is_empty()).then_some(())
        })
        .await;
        tokio::time::sleep(Duration::from_secs(6)).await;
        faults.clear();
        let v = bed.wait_volume("big", "True", "Ready").await;
        assert_eq!(
            v.status.unwrap().size.as_deref(),
            Some("128Mi"),
            "{api}: grown after the restore"
        );
        assert_eq!(bed.linstor.sim.resources(&big).len(), 2, "{api}");
        let refused: Vec<_> = bed
            .linstor
            .sim
            .exchanges()
            .into_iter()
            .filter(|e| e.path.contains("snapshot-restore-resource") && e.status >= 400)
            .map(|e| String::from_utf8_lossy(&e.response_body).to_string())
            .collect();
        assert!(refused.is_empty(), "{api}: refused restores {refused:?}");
    }
}

/// Issue 14 item 3: a resource group without `select_filter.place_count` places nothing (spawn
/// does not autoplace, autoplace warns "already deployed on 0 nodes"). edgebind says so and
/// does not re-send empty placements; once the group gets a count, the volume is placed.
#[tokio::test]
async fn resource_group_without_place_count_gets_a_condition_not_endless_autoplace() {
    let bed = Bed::start().await;
    let c = http::client();
    let base = bed.linstor.url();
    let (st, body) = http::call(
        &c,
        "POST",
        &format!("{base}/v1/resource-groups"),
        Some(json!({"name": "noplace", "select_filter": {"storage_pool_list": ["thin"]}})),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    let (st, body) = http::call(
        &c,
        "POST",
        &format!("{base}/v1/resource-groups/noplace/volume-groups"),
        Some(json!({"volume_number": 0})),
    )
    .await;
    assert_eq!(st, 201, "{body}");
    bed.create_volume(
        "grp",
        json!({"backendRef": "main", "size": "64Mi", "placement": {"resourceGroup": "noplace"}}),
    )
    .await;
    let v = bed
        .wait_volume("grp", "False", "ResourceGroupPlacesNothing")
        .await;
    let (_, _, msg) = condition(&v, "Ready").unwrap();
    assert!(msg.contains("place_count"), "{msg}");
    let stats = bed.linstor.sim.stats();
    let placements = || {
        stats.count("POST", "/v1/resource-definitions/{resource}/autoplace")
            + stats.count("POST", "/v1/resource-groups/{resource_group}/spawn")
    };
    let before = placements();
    // Two resync periods: no placement is re-sent.
    tokio::time::sleep(Duration::from_secs(7)).await;
    assert_eq!(placements(), before, "placements re-sent");
    assert_eq!(before, 0, "nothing was sent that could not place");

    let (st, body) = http::call(
        &c,
        "PUT",
        &format!("{base}/v1/resource-groups/noplace"),
        Some(json!({"select_filter": {"place_count": 2}})),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    bed.wait_volume("grp", "True", "Ready").await;
    assert_eq!(bed.linstor.sim.resources(&rd_name("grp")).len(), 2);
}

/// Issue 14 item 7: evicted, evacuating and deactivated replicas are not healthy replicas.
#[tokio::test]
async fn evicted_evacuating_and_inactive_replicas_are_not_healthy() {
    for flags in [
        vec!["INACTIVE", "EVICTED"],
        vec!["EVACUATE"],
        vec!["INACTIVE"],
    ] {
        let bed = Bed::start().await;
        bed.create_volume(
            "db",
            json!({"backendRef": "main", "size": "64Mi", "placement": {"placeCount": 2}}),
        )
        .await;
        bed.wait_volume("db", "True", "Ready").await;
        let rd = rd_name("db");
        let node = bed.linstor.sim.resources(&rd)[0]["node_name"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(bed.linstor.sim.set_resource_flags(&rd, &node, &flags));
        let v = bed
            .eventually(20, "Degraded=True ReplicaInactive", || async {
                let v = bed.volumes().get("db").await.ok()?;
                let (st, reason, _) = condition(&v, "Degraded")?;
                (st == "True" && reason == "ReplicaInactive").then_some(v)
            })
            .await;
        let (_, _, msg) = condition(&v, "Degraded").unwrap();
        assert!(msg.contains(&node), "{flags:?}: {msg}");
        if flags == ["INACTIVE"] {
            // Deactivated by a person: autoplace still counts it, so nothing is added and no
            // placement is sent for it.
            let stats = bed.linstor.sim.stats();
            let before = stats.count("POST", "/v1/resource-definitions/{resource}/autoplace");
            tokio::time::sleep(Duration::from_secs(4)).await;
            assert_eq!(
                stats.count("POST", "/v1/resource-definitions/{resource}/autoplace"),
                before
            );
            assert_eq!(bed.linstor.sim.resources(&rd).len(), 2);
            continue;
        }
        // Evicted or evacuating: autoplace does not count it, a replacement is placed on
        // another node.
        bed.eventually(20, "a replacement replica", || async {
            let rs = bed.linstor.sim.resources(&rd);
            (rs.len() == 3).then_some(())
        })
        .await;
        // The out-of-service replica is not counted: two diskful replicas with the new one.
        bed.eventually(20, "2 diskful replicas counted", || async {
            let v = bed.volumes().get("db").await.ok()?;
            (v.status?.diskful_replicas == Some(2)).then_some(())
        })
        .await;
    }
}

/// Issue 14 item 6: the server stores property keys with empty segments normalised, so such a
/// key would never compare equal: refuse it (and values longer than the SQL backends store).
#[tokio::test]
async fn property_keys_with_empty_segments_and_overlong_values_are_refused() {
    let bed = Bed::start().await;
    for (name, props) in [
        ("dbl", json!({"team//a": "x"})),
        ("trail", json!({"team/": "x"})),
        ("long", json!({"team": "v".repeat(4097)})),
    ] {
        bed.create_volume(name, json!({"backendRef": "main", "size": "64Mi", "placement": {"placeCount": 2}, "properties": props})).await;
        let v = bed.wait_volume(name, "False", "InvalidSpec").await;
        let (_, _, msg) = condition(&v, "Ready").unwrap();
        assert!(msg.contains("team"), "{msg}");
        assert!(
            bed.linstor
                .sim
                .resource_definition(&rd_name(name))
                .is_none()
        );
    }
    // 4096 characters are fine, and the volume converges (no write on a resync).
    bed.create_volume("ok", json!({"backendRef": "main", "size": "64Mi", "placement": {"placeCount": 2}, "properties": {"team/a": "v".repeat(4096)}})).await;
    bed.wait_volume("ok", "True", "Ready").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let writes = bed.linstor.sim.stats().writes();
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(bed.linstor.sim.stats().writes(), writes);
}

/// Issue 14 item 8 and the normalisation of item 6, on the simulator's REST API itself.
#[tokio::test]
async fn simulator_answers_like_the_server_for_put_parse_errors_names_and_props() {
    let bed = Bed::start().await;
    let c = http::client();
    let base = bed.linstor.url();
    let (st, _) = http::call(
        &c,
        "POST",
        &format!("{base}/v1/resource-definitions"),
        Some(json!({"resource_definition": {"name": "rd1"}})),
    )
    .await;
    assert_eq!(st, 201);
    let parse_error = edgebind_sim::linstor::rc::API_CALL_PARSE_ERROR as i64;
    // Unknown field: POST catches the mapping error (400), PUT lets it escape (500, report).
    let (st, body) = http::call(
        &c,
        "POST",
        &format!("{base}/v1/resource-definitions"),
        Some(json!({"resource_definition": {"name": "rd2"}, "bogus": 1})),
    )
    .await;
    assert_eq!(st, 400, "{body}");
    assert_eq!(body[0]["ret_code"], parse_error);
    let (st, body) = http::call(
        &c,
        "PUT",
        &format!("{base}/v1/resource-definitions/rd1"),
        Some(json!({"override_props": {"Aux/a": "1"}, "bogus": 1})),
    )
    .await;
    assert_eq!(st, 500, "{body}");
    assert_eq!(body[0]["ret_code"], parse_error);
    assert_eq!(body[0]["message"], "Unable to parse input json.");
    assert!(body[0]["error_report_ids"][0].is_string(), "{body}");

    // Names DRBD reserves.
    for name in ["all", "Proxy"] {
        let (st, body) = http::call(
            &c,
            "POST",
            &format!("{base}/v1/resource-definitions"),
            Some(json!({"resource_definition": {"name": name}})),
        )
        .await;
        assert_eq!(st, 500, "{name}: {body}");
        let code = body[0]["ret_code"].as_i64().unwrap() as u64;
        assert_eq!(code & 0x7FFF, 202, "FAIL_INVLD_RSC_NAME: {body}");
    }

    // Property values: 4096 characters stored, 4097 refused by the database.
    let (st, body) = http::call(
        &c,
        "PUT",
        &format!("{base}/v1/resource-definitions/rd1"),
        Some(json!({"override_props": {"Aux/v": "x".repeat(4096)}})),
    )
    .await;
    assert_eq!(st, 200, "{body}");
    let (st, body) = http::call(
        &c,
        "PUT",
        &format!("{base}/v1/resource-definitions/rd1"),
        Some(json!({"override_props": {"Aux/v": "x".repeat(4097)}})),
    )
    .await;
    assert_eq!(st, 500, "{body}");
    assert_eq!(
        body[0]["ret_code"].as_i64().unwrap() as u64 & 0x7FFF,
        998,
        "FAIL_UNKNOWN_ERROR: {body}"
    );

    // Keys with empty segments are stored normalised.
    let (st, _) = http::call(
        &c,
        "PUT",
        &format!("{base}/v1/resource-definitions/rd1"),
        Some(json!({"override_props": {"Aux/team//a": "1", "Aux/team/b/": "2"}})),
    )
    .await;
    assert_eq!(st, 200);
    let props = bed.linstor.sim.resource_definition("rd1").unwrap()["props"].clone();
    assert_eq!(props["Aux/team/a"], "1", "{props}");
    assert_eq!(props["Aux/team/b"], "2", "{props}");
    assert!(props.get("Aux/team//a").is_none());
}

/// The cost model: `view/resources` costs the server the whole filtered list on every call,
/// whatever `limit` says, and asks the satellites each time.
#[tokio::test]
async fn view_resources_costs_the_whole_list_per_page() {
    let bed = Bed::start().await;
    let c = http::client();
    let base = bed.linstor.url();
    for i in 0..6 {
        let name = format!("cost{i}");
        for (path, body) in [
            (
                "/v1/resource-definitions".to_string(),
                json!({"resource_definition": {"name": name}}),
            ),
            (
                format!("/v1/resource-definitions/{name}/volume-definitions"),
                json!({"volume_definition": {"volume_number": 0, "size_kib": 65536}}),
            ),
            (
                format!("/v1/resource-definitions/{name}/autoplace"),
                json!({"select_filter": {"place_count": 2}}),
            ),
        ] {
            let (st, b) = http::call(&c, "POST", &format!("{base}{path}"), Some(body)).await;
            assert_eq!(st, 201, "{b}");
        }
    }
    let stats = bed.linstor.sim.stats();
    stats.reset();
    let (_, all) = http::call(&c, "GET", &format!("{base}/v1/view/resources"), None).await;
    let n = all.as_array().unwrap().len() as u64;
    assert_eq!(n, 12);
    let one = stats.work();
    assert_eq!(
        one.objects,
        6 + 12 + 12,
        "RDs scanned + resources built + thin volumes"
    );
    assert_eq!(one.satellite_requests, 3, "each node with thin volumes");
    stats.reset();
    let mut got = 0;
    for page in 0..6 {
        let (_, p) = http::call(
            &c,
            "GET",
            &format!("{base}/v1/view/resources?limit=2&offset={}", page * 2),
            None,
        )
        .await;
        got += p.as_array().map(Vec::len).unwrap_or(0);
    }
    assert_eq!(got, 12);
    let paged = stats.work();
    assert_eq!(
        paged.objects,
        6 * one.objects,
        "every page costs the whole list"
    );
    assert_eq!(paged.satellite_requests, 6 * one.satellite_requests);
    // No cap on `limit`.
    let (_, big) = http::call(
        &c,
        "GET",
        &format!("{base}/v1/view/resources?limit=500"),
        None,
    )
    .await;
    assert_eq!(big.as_array().map(Vec::len), Some(12));
    let _: Value = big;
}

/// Issue 14 item 5: a converged resync reads each list in one call (paging would cost the
/// server the whole list per page) and costs the server O(N) work.
#[tokio::test]
async fn converged_resync_reads_each_list_once_and_costs_linear_server_work() {
    let bed = Bed::start().await;
    // 30 volumes x 2 replicas: more resources than one page of 50 would hold.
    let n = 30;
    for i in 0..n {
        bed.create_volume(
            &format!("v{i}"),
            json!({"backendRef": "main", "size": "8Mi", "placement": {"placeCount": 2}}),
        )
        .await;
    }
    for i in 0..n {
        bed.wait_volume(&format!("v{i}"), "True", "Ready").await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let stats = bed.linstor.sim.stats();
    stats.reset();
    // A little over one resync period (3 s): at least one full refresh.
    tokio::time::sleep(Duration::from_millis(4500)).await;
    assert_eq!(stats.writes(), 0, "{:?}", stats.by_route());
    let rds = stats.count("GET", "/v1/resource-definitions");
    let resources = stats.count("GET", "/v1/view/resources");
    let snapshots = stats.count("GET", "/v1/view/snapshots");
    assert!(resources >= 1, "{:?}", stats.by_route());
    assert_eq!(
        (rds, resources),
        (snapshots, snapshots),
        "one call per list and refresh: {:?}",
        stats.by_route()
    );
    // Per refresh: the resource definitions (scanned by each of the three lists), the 60
    // resources and their 60 thin volumes: a small multiple of N.
    let per_refresh = stats.work().objects / resources;
    assert!(per_refresh <= 10 * n, "{per_refresh} objects per refresh");
    assert_eq!(stats.work().satellite_requests, 3 * resources);
}
