//! Behaviour of the LINSTOR simulator over real HTTP: the controller quirks clients rely on,
//! autoplace rules, filters and paging, snapshots, and fault injection.
//! Numbers are written out from `docs/reference/linstor.md` on purpose, not taken from the
//! simulator's own `rc` module, so a wrong constant there fails here.

use serde_json::{Value, json};
use std::time::{Duration, Instant};

use edgebind_sim::linstor::{LinstorSim, RunningSim, SimConfig};

use crate::support::http::{call, call_raw, client};

const MASK_ERROR: u64 = 0xC000_0000_0000_0000;
const MASK_WARN: u64 = 0x8000_0000_0000_0000;

async fn sim() -> RunningSim {
    LinstorSim::start(SimConfig::realistic())
        .await
        .expect("simulator starts")
}

/// ret_code of entry `i` as u64.
fn rc_at(body: &Value, i: usize) -> u64 {
    body[i]["ret_code"]
        .as_i64()
        .unwrap_or_else(|| panic!("no ret_code at {i} in {body}")) as u64
}

fn code(rc: u64) -> u64 {
    rc & 0x7FFF
}

fn is_error(rc: u64) -> bool {
    rc & MASK_ERROR == MASK_ERROR
}

async fn make_rd(c: &reqwest::Client, url: &str, name: &str, size_kib: u64) {
    let (s, b) = call(
        c,
        "POST",
        &format!("{url}/v1/resource-definitions"),
        Some(json!({"resource_definition": {"name": name}})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    let (s, b) = call(
        c,
        "POST",
        &format!("{url}/v1/resource-definitions/{name}/volume-definitions"),
        Some(json!({"volume_definition": {"size_kib": size_kib}})),
    )
    .await;
    assert_eq!(s, 201, "{b}");
}

async fn autoplace(c: &reqwest::Client, url: &str, rd: &str, body: Value) -> (u16, Value) {
    call(
        c,
        "POST",
        &format!("{url}/v1/resource-definitions/{rd}/autoplace"),
        Some(body),
    )
    .await
}

fn diskful_nodes(sim: &LinstorSim, rd: &str) -> Vec<String> {
    let mut v: Vec<String> = sim
        .resources(rd)
        .iter()
        .filter(|r| {
            !r["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "DRBD_DISKLESS"))
        })
        .map(|r| r["node_name"].as_str().unwrap_or_default().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn version_and_health() {
    let s = sim().await;
    let c = client();
    let (st, v) = call(
        &c,
        "GET",
        &format!("{}/v1/controller/version", s.url()),
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(v["version"], "1.33.1");
    assert_eq!(v["rest_api_version"], "1.27.0");
    let (st, _) = call(&c, "GET", &format!("{}/health", s.url()), None).await;
    assert_eq!(st, 200);
    s.stop().await;
}

#[tokio::test]
async fn create_exists_and_case_insensitive_names() {
    let s = sim().await;
    let c = client();
    let url = format!("{}/v1/resource-definitions", s.url());
    let (st, b) = call(
        &c,
        "POST",
        &url,
        Some(json!({"resource_definition": {"name": "pvc-A"}})),
    )
    .await;
    assert_eq!(st, 201);
    assert_eq!(rc_at(&b, 0), 20_447_233, "RD created = 0x1380001");
    assert_eq!(b[0]["obj_refs"]["RscDfn"], "pvc-A");
    assert!(b[0]["created_at"].is_string());
    // Same name, other case: HTTP 500 (not 409) with FAIL_EXISTS_RSC_DFN and op/object bits.
    let (st, b) = call(
        &c,
        "POST",
        &url,
        Some(json!({"resource_definition": {"name": "PVC-a"}})),
    )
    .await;
    assert_eq!(st, 500);
    let rc = rc_at(&b, 0);
    assert!(is_error(rc));
    assert_eq!(code(rc), 501);
    assert_eq!(rc & 0x0300_0000, 0x0100_0000, "MASK_CRT");
    assert_eq!(rc & 0x7C_0000, 0x38_0000, "MASK_RSC_DFN");
    assert!(
        b[0].get("error_report_ids").is_none(),
        "exists errors have no error report"
    );
    // Returned as given at creation, found case-insensitively.
    let (st, v) = call(&c, "GET", &format!("{url}/PVC-A"), None).await;
    assert_eq!(st, 200);
    assert_eq!(v["name"], "pvc-A");
    assert_eq!(v["resource_group_name"], "DfltRscGrp");
    assert!(v.get("flags").is_none(), "empty fields are omitted");
    s.stop().await;
}

#[tokio::test]
async fn missing_objects_get_put_delete() {
    let s = sim().await;
    let c = client();
    let base = s.url();
    let (st, b) = call(
        &c,
        "GET",
        &format!("{base}/v1/resource-definitions/nope"),
        None,
    )
    .await;
    assert_eq!(st, 404);
    assert_eq!(code(rc_at(&b, 0)), 301);
    let (st, b) = call(
        &c,
        "PUT",
        &format!("{base}/v1/resource-definitions/nope"),
        Some(json!({"override_props": {"Aux/a": "b"}})),
    )
    .await;
    assert_eq!(st, 404);
    assert_eq!(code(rc_at(&b, 0)), 301);
    let (st, b) = call(
        &c,
        "DELETE",
        &format!("{base}/v1/resource-definitions/nope"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    let rc = rc_at(&b, 0);
    assert_eq!(rc & MASK_ERROR, MASK_WARN);
    assert_eq!(code(rc), 3000, "WARN_NOT_FOUND");
    let (st, b) = call(
        &c,
        "DELETE",
        &format!("{base}/v1/resource-groups/nope"),
        None,
    )
    .await;
    assert_eq!((st, code(rc_at(&b, 0))), (200, 3000));
    let (st, b) = call(
        &c,
        "GET",
        &format!("{base}/v1/resource-definitions/nope/resources"),
        None,
    )
    .await;
    assert_eq!((st, code(rc_at(&b, 0))), (404, 301));
    let (st, b) = call(
        &c,
        "GET",
        &format!("{base}/v1/resource-definitions/nope/snapshots"),
        None,
    )
    .await;
    assert_eq!((st, code(rc_at(&b, 0))), (404, 301));
    s.stop().await;
}

#[tokio::test]
async fn strict_json_and_null_lists() {
    let s = sim().await;
    let c = client();
    let url = format!("{}/v1/resource-definitions", s.url());
    let (st, b) = call(
        &c,
        "POST",
        &url,
        Some(json!({"resource_definition": {"name": "rd1", "colour": "red"}})),
    )
    .await;
    assert_eq!(st, 400);
    assert_eq!(b[0]["message"], "Unable to parse input json.");
    assert_eq!(rc_at(&b, 0), 0x0FFF_FFFF_FFFF_FFFD | MASK_ERROR);
    // Unknown top-level field, and an unknown field inside the select filter.
    let (st, _) = call(
        &c,
        "POST",
        &url,
        Some(json!({"resource_definition": {"name": "rd1"}, "x": 1})),
    )
    .await;
    assert_eq!(st, 400);
    let (st, _) = call(
        &c,
        "POST",
        &format!("{}/v1/resource-groups", s.url()),
        Some(json!({"name": "rg1", "select_filter": {"place_cnt": 2}})),
    )
    .await;
    assert_eq!(st, 400);
    // Unknown enum value and malformed JSON are parse errors too.
    let (st, _) = call(
        &c,
        "POST",
        &url,
        Some(json!({"resource_definition": {"name": "rd1", "layer_data": [{"type": "ZFS"}]}})),
    )
    .await;
    assert_eq!(st, 400);
    let (st, _) = call_raw(&c, "POST", &url, Some("{not json")).await;
    assert_eq!(st, 400);
    assert!(
        s.sim.resource_definition("rd1").is_none(),
        "nothing created by rejected requests"
    );
    // Explicit null for a list the server dereferences: 500 with an error report.
    let (st, b) = call(
        &c,
        "POST",
        &url,
        Some(json!({"resource_definition": {"name": "rd1", "layer_data": null}})),
    )
    .await;
    assert_eq!(st, 500);
    assert!(is_error(rc_at(&b, 0)));
    let id = b[0]["error_report_ids"][0]
        .as_str()
        .expect("error report id")
        .to_string();
    let (st, r) = call(
        &c,
        "GET",
        &format!("{}/v1/error-reports/{id}", s.url()),
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert!(
        r[0]["text"]
            .as_str()
            .unwrap_or_default()
            .contains("layer_data")
    );
    s.stop().await;
}

#[tokio::test]
async fn invalid_names_and_props() {
    let s = sim().await;
    let c = client();
    let url = format!("{}/v1/resource-definitions", s.url());
    for bad in ["a", "1abc", "has space", "__", &"x".repeat(49)] {
        let (st, b) = call(
            &c,
            "POST",
            &url,
            Some(json!({"resource_definition": {"name": bad}})),
        )
        .await;
        assert_eq!(st, 500, "{bad}");
        assert_eq!(code(rc_at(&b, 0)), 202, "FAIL_INVLD_RSC_NAME for {bad}");
    }
    let (st, b) = call(
        &c,
        "POST",
        &format!("{}/v1/resource-groups", s.url()),
        Some(json!({"name": "9rg"})),
    )
    .await;
    assert_eq!((st, code(rc_at(&b, 0))), (500, 237));
    let (st, b) = call(
        &c,
        "POST",
        &url,
        Some(json!({"resource_definition": {"name": "ok-1", "props": {"Foo/Bar": "x"}}})),
    )
    .await;
    assert_eq!(st, 500);
    assert_eq!(code(rc_at(&b, 0)), 213);
    assert_eq!(b[0]["message"], "The key 'Foo/Bar' is not whitelisted.");
    let (st, _) = call(&c, "POST", &url, Some(json!({"resource_definition": {"name": "ok-1", "props": {"Aux/edgebind.dev/uid": "u1", "DrbdOptions/Resource/quorum": "majority"}}}))).await;
    assert_eq!(st, 201);
    let (st, b) = call(
        &c,
        "PUT",
        &format!("{url}/ok-1"),
        Some(json!({"override_props": {"NotAllowed": "1"}})),
    )
    .await;
    assert_eq!((st, code(rc_at(&b, 0))), (500, 213));
    let (st, _) = call(
        &c,
        "PUT",
        &format!("{url}/ok-1"),
        Some(
            json!({"override_props": {"Aux/x/y": "1"}, "delete_namespaces": ["Aux/edgebind.dev"]}),
        ),
    )
    .await;
    assert_eq!(st, 200);
    let rd = s.sim.resource_definition("ok-1").expect("rd exists");
    assert_eq!(
        rd["props"],
        json!({"Aux/x/y": "1", "DrbdOptions/Resource/quorum": "majority"})
    );
    s.stop().await;
}

#[tokio::test]
async fn resize_grows_never_shrinks() {
    let s = sim().await;
    let c = client();
    make_rd(&c, &s.url(), "vol", 1024 * 1024).await;
    let (st, _) = autoplace(
        &c,
        &s.url(),
        "vol",
        json!({"select_filter": {"place_count": 1, "node_name_list": ["node-a"]}}),
    )
    .await;
    assert_eq!(st, 201);
    let free_before = s.sim.free_kib("node-a", "thin").expect("pool exists");
    assert_eq!(free_before, 500 * 1024 * 1024 - 1024 * 1024);
    let vd = format!(
        "{}/v1/resource-definitions/vol/volume-definitions/0",
        s.url()
    );
    let (st, b) = call(&c, "PUT", &vd, Some(json!({"size_kib": 1000}))).await;
    assert_eq!((st, code(rc_at(&b, 0))), (500, 206));
    let (st, b) = call(&c, "PUT", &vd, Some(json!({"size_kib": 1024 * 1024}))).await;
    assert_eq!(st, 200);
    assert_eq!(code(rc_at(&b, 0)), 1023);
    assert_eq!(rc_at(&b, 0) & MASK_ERROR, MASK_WARN);
    let (st, _) = call(&c, "PUT", &vd, Some(json!({"size_kib": 2 * 1024 * 1024}))).await;
    assert_eq!(st, 200);
    assert_eq!(
        s.sim.volume_definitions("vol")[0]["size_kib"],
        2 * 1024 * 1024
    );
    assert_eq!(
        s.sim.free_kib("node-a", "thin"),
        Some(free_before - 1024 * 1024)
    );
    let (st, b) = call(
        &c,
        "PUT",
        &format!(
            "{}/v1/resource-definitions/vol/volume-definitions/7",
            s.url()
        ),
        Some(json!({"size_kib": 1})),
    )
    .await;
    assert_eq!((st, code(rc_at(&b, 0))), (404, 303));
    // Same VD number again: exists.
    let (st, b) = call(
        &c,
        "POST",
        &format!("{}/v1/resource-definitions/vol/volume-definitions", s.url()),
        Some(json!({"volume_definition": {"volume_number": 0, "size_kib": 10}})),
    )
    .await;
    assert_eq!((st, code(rc_at(&b, 0))), (500, 503));
    s.stop().await;
}

#[tokio::test]
async fn autoplace_rules() {
    let s = sim().await;
    let c = client();
    let u = s.url();
    make_rd(&c, &u, "r1", 1024).await;
    let zone = "Aux/topology/topology.kubernetes.io/zone";
    let (st, b) = autoplace(
        &c,
        &u,
        "r1",
        json!({"select_filter": {"place_count": 2, "replicas_on_different": [zone]}}),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    let nodes = diskful_nodes(&s.sim, "r1");
    assert_eq!(nodes.len(), 2);
    assert!(
        nodes.iter().all(|n| n != "node-d"),
        "diskless-only node never gets a disk"
    );
    // Idempotent: nothing to do is 201 + WARN_RSC_ALREADY_DEPLOYED.
    let (st, b) = autoplace(&c, &u, "r1", json!({"select_filter": {"place_count": 2}})).await;
    assert_eq!(st, 201);
    assert_eq!(code(rc_at(&b, 0)), 1006);
    // A lower place count never removes replicas.
    let (st, b) = autoplace(&c, &u, "r1", json!({"select_filter": {"place_count": 1}})).await;
    assert_eq!((st, code(rc_at(&b, 0))), (201, 1006));
    assert_eq!(diskful_nodes(&s.sim, "r1").len(), 2);
    // Growing to 3 adds the third zone; 4 is impossible with three storage nodes.
    let (st, _) = autoplace(&c, &u, "r1", json!({"select_filter": {"place_count": 3}})).await;
    assert_eq!(st, 201);
    assert_eq!(
        diskful_nodes(&s.sim, "r1"),
        vec!["node-a", "node-b", "node-c"]
    );
    let (st, b) = autoplace(&c, &u, "r1", json!({"select_filter": {"place_count": 4}})).await;
    assert_eq!(st, 500);
    assert_eq!(code(rc_at(&b, 0)), 996);
    assert_eq!(b[0]["message"], "Not enough available nodes");

    // replicas_on_same with one node per zone: two replicas cannot share a zone.
    make_rd(&c, &u, "r2", 1024).await;
    let (st, b) = autoplace(
        &c,
        &u,
        "r2",
        json!({"select_filter": {"place_count": 2, "replicas_on_same": [zone]}}),
    )
    .await;
    assert_eq!((st, code(rc_at(&b, 0))), (500, 996));
    assert!(
        s.sim.resources("r2").is_empty(),
        "failed autoplace creates nothing"
    );
    // node_name_list and storage pool selection.
    let (st, _) = autoplace(&c, &u, "r2", json!({"select_filter": {"place_count": 1, "node_name_list": ["NODE-B"], "storage_pool_list": ["thin"]}})).await;
    assert_eq!(st, 201);
    assert_eq!(diskful_nodes(&s.sim, "r2"), vec!["node-b"]);
    assert_eq!(
        s.sim.resources("r2")[0]["volumes"][0]["storage_pool_name"],
        "thin"
    );
    make_rd(&c, &u, "r3", 1024).await;
    let (st, b) = autoplace(
        &c,
        &u,
        "r3",
        json!({"select_filter": {"place_count": 1, "storage_pool": "fast"}}),
    )
    .await;
    assert_eq!((st, code(rc_at(&b, 0))), (500, 996));
    // not_place_with_rsc keeps r3 off r2's node; diskless_on_remaining adds clients elsewhere.
    let (st, b) = autoplace(&c, &u, "r3", json!({"select_filter": {"place_count": 2, "not_place_with_rsc": ["r2"]}, "diskless_on_remaining": true})).await;
    assert_eq!(st, 201, "{b}");
    assert_eq!(diskful_nodes(&s.sim, "r3"), vec!["node-a", "node-c"]);
    let all: Vec<Value> = s.sim.resources("r3");
    assert_eq!(
        all.len(),
        4,
        "two diskful plus diskless on node-b and node-d"
    );
    let d = all
        .iter()
        .find(|r| r["node_name"] == "node-d")
        .expect("diskless on node-d");
    assert_eq!(d["volumes"][0]["state"]["disk_state"], "Diskless");
    // Too little space anywhere.
    make_rd(&c, &u, "huge", 600 * 1024 * 1024).await;
    let (st, b) = autoplace(&c, &u, "huge", json!({"select_filter": {"place_count": 1}})).await;
    assert_eq!((st, code(rc_at(&b, 0))), (500, 996));
    // Missing select_filter is refused.
    let (st, _) = autoplace(&c, &u, "r2", json!({})).await;
    assert_eq!(st, 500);
    s.stop().await;
}

#[tokio::test]
async fn autoplace_merges_resource_group_filter_and_spawn() {
    let s = sim().await;
    let c = client();
    let u = s.url();
    let zone = "Aux/topology/topology.kubernetes.io/zone";
    let (st, b) = call(&c, "POST", &format!("{u}/v1/resource-groups"), Some(json!({
        "name": "fast", "select_filter": {"place_count": 2, "storage_pool_list": ["thin"], "replicas_on_different": [zone]},
        "props": {"DrbdOptions/Resource/quorum": "majority"}}))).await;
    assert_eq!(st, 201, "{b}");
    assert_eq!(rc_at(&b, 0), 0x0100_0000 | 0x44_0000 | 1);
    let (st, _) = call(
        &c,
        "POST",
        &format!("{u}/v1/resource-groups"),
        Some(json!({"name": "FAST"})),
    )
    .await;
    assert_eq!(st, 500);
    let (st, _) = call(
        &c,
        "POST",
        &format!("{u}/v1/resource-definitions"),
        Some(json!({"resource_definition": {"name": "m1", "resource_group_name": "fast"}})),
    )
    .await;
    assert_eq!(st, 201);
    let (st, _) = call(
        &c,
        "POST",
        &format!("{u}/v1/resource-definitions/m1/volume-definitions"),
        Some(json!({"volume_definition": {"size_kib": 4096}})),
    )
    .await;
    assert_eq!(st, 201);
    // `{}` takes place_count etc. from the resource group.
    let (st, _) = autoplace(&c, &u, "m1", json!({"select_filter": {}})).await;
    assert_eq!(st, 201);
    assert_eq!(diskful_nodes(&s.sim, "m1").len(), 2);
    // Spawn needs one size per volume group.
    let (st, b) = call(
        &c,
        "POST",
        &format!("{u}/v1/resource-groups/fast/volume-groups"),
        Some(json!({"volume_number": 0})),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    let (st, b) = call(
        &c,
        "POST",
        &format!("{u}/v1/resource-groups/fast/spawn"),
        Some(json!({"resource_definition_name": "sp1", "volume_sizes": [1024, 2048]})),
    )
    .await;
    assert_eq!((st, code(rc_at(&b, 0))), (500, 228));
    let (st, b) = call(
        &c,
        "POST",
        &format!("{u}/v1/resource-groups/fast/spawn"),
        Some(json!({"resource_definition_name": "sp1", "volume_sizes": [1024]})),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    assert_eq!(diskful_nodes(&s.sim, "sp1").len(), 2);
    assert_eq!(
        s.sim.resource_definition("sp1").expect("spawned")["resource_group_name"],
        "fast"
    );
    let (st, b) = call(
        &c,
        "POST",
        &format!("{u}/v1/resource-groups/fast/spawn"),
        Some(json!({"resource_definition_name": "SP1", "volume_sizes": [1024]})),
    )
    .await;
    assert_eq!((st, code(rc_at(&b, 0))), (500, 501));
    // A resource group in use cannot be deleted.
    let (st, b) = call(&c, "DELETE", &format!("{u}/v1/resource-groups/fast"), None).await;
    assert_eq!((st, code(rc_at(&b, 0))), (500, 501));
    s.stop().await;
}

#[tokio::test]
async fn list_filters_and_paging() {
    let s = sim().await;
    let c = client();
    let u = s.url();
    for i in 0..5 {
        let owner = if i % 2 == 0 { "team-a" } else { "team-b" };
        let (st, _) = call(&c, "POST", &format!("{u}/v1/resource-definitions"), Some(json!({"resource_definition": {
            "name": format!("rd-{i}"), "props": {"Aux/edgebind.dev/owner": owner, "Aux/edgebind.dev/uid": format!("u{i}")}}}))).await;
        assert_eq!(st, 201);
    }
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|x| x["name"].as_str().unwrap_or_default().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    let (_, v) = call(
        &c,
        "GET",
        &format!("{u}/v1/resource-definitions?props=Aux/edgebind.dev/owner=team-a"),
        None,
    )
    .await;
    assert_eq!(names(&v), vec!["rd-0", "rd-2", "rd-4"]);
    let (_, v) = call(&c, "GET", &format!("{u}/v1/resource-definitions?props=Aux/edgebind.dev/owner=team-a&props=Aux/edgebind.dev/uid=u2"), None).await;
    assert_eq!(names(&v), vec!["rd-2"]);
    let (_, v) = call(
        &c,
        "GET",
        &format!("{u}/v1/resource-definitions?props=Aux/edgebind.dev/missing"),
        None,
    )
    .await;
    assert_eq!(names(&v), Vec::<String>::new());
    let (_, v) = call(
        &c,
        "GET",
        &format!("{u}/v1/resource-definitions?resource_definitions=RD-1&resource_definitions=rd-3"),
        None,
    )
    .await;
    assert_eq!(names(&v), vec!["rd-1", "rd-3"]);
    let (_, v) = call(
        &c,
        "GET",
        &format!("{u}/v1/resource-definitions?limit=2&offset=1"),
        None,
    )
    .await;
    assert_eq!(names(&v), vec!["rd-1", "rd-2"]);
    let (_, v) = call(
        &c,
        "GET",
        &format!("{u}/v1/resource-definitions?limit=0&offset=3"),
        None,
    )
    .await;
    assert_eq!(names(&v).len(), 5, "no paging unless limit > 0");
    let (_, v) = call(
        &c,
        "GET",
        &format!("{u}/v1/nodes?nodes=node-a&nodes=node-d"),
        None,
    )
    .await;
    assert_eq!(names(&v), vec!["node-a", "node-d"]);
    let (_, v) = call(
        &c,
        "GET",
        &format!("{u}/v1/view/storage-pools?storage_pools=thin"),
        None,
    )
    .await;
    assert_eq!(v.as_array().map(Vec::len), Some(3));
    assert_eq!(v[0]["total_capacity"], 500 * 1024 * 1024);
    s.stop().await;
}

#[tokio::test]
async fn snapshots_and_restore() {
    let s = sim().await;
    let c = client();
    let u = s.url();
    make_rd(&c, &u, "src", 8192).await;
    let (st, _) = autoplace(&c, &u, "src", json!({"select_filter": {"place_count": 2}})).await;
    assert_eq!(st, 201);
    let snaps = format!("{u}/v1/resource-definitions/src/snapshots");
    let (st, b) = call(
        &c,
        "POST",
        &snaps,
        Some(json!({"name": "s1", "snapshot_definition_props": {"Aux/edgebind.dev/uid": "x"}})),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    let (st, b) = call(&c, "POST", &snaps, Some(json!({"name": "S1"}))).await;
    assert_eq!((st, code(rc_at(&b, 0))), (500, 514));
    let (st, v) = call(&c, "GET", &format!("{snaps}/s1"), None).await;
    assert_eq!(st, 200);
    assert!(
        v["flags"]
            .as_array()
            .is_some_and(|f| f.iter().any(|x| x == "SUCCESSFUL"))
    );
    assert_eq!(v["volume_definitions"][0]["size_kib"], 8192);
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(2));
    let (_, v) = call(
        &c,
        "GET",
        &format!("{u}/v1/view/snapshots?resources=src"),
        None,
    )
    .await;
    assert_eq!(v.as_array().map(Vec::len), Some(1));
    let (st, _) = call(&c, "GET", &format!("{snaps}/nope"), None).await;
    assert_eq!(st, 404);
    // The RD cannot be deleted while it has snapshots.
    let (st, b) = call(
        &c,
        "DELETE",
        &format!("{u}/v1/resource-definitions/src"),
        None,
    )
    .await;
    assert_eq!((st, code(rc_at(&b, 0))), (500, 514));
    // Restore into a new RD: volume definitions, then resources.
    let (st, _) = call(
        &c,
        "POST",
        &format!("{u}/v1/resource-definitions"),
        Some(json!({"resource_definition": {"name": "dst"}})),
    )
    .await;
    assert_eq!(st, 201);
    let (st, b) = call(
        &c,
        "POST",
        &format!("{u}/v1/resource-definitions/src/snapshot-restore-volume-definition/s1"),
        Some(json!({"to_resource": "dst"})),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    let (st, b) = call(
        &c,
        "POST",
        &format!("{u}/v1/resource-definitions/src/snapshot-restore-volume-definition/s1"),
        Some(json!({"to_resource": "dst"})),
    )
    .await;
    assert_eq!((st, code(rc_at(&b, 0))), (500, 503));
    let (st, b) = call(
        &c,
        "POST",
        &format!("{u}/v1/resource-definitions/src/snapshot-restore-resource/s1"),
        Some(json!({"to_resource": "dst"})),
    )
    .await;
    assert_eq!(st, 200, "{b}");
    assert_eq!(diskful_nodes(&s.sim, "dst"), diskful_nodes(&s.sim, "src"));
    assert_eq!(s.sim.volume_definitions("dst")[0]["size_kib"], 8192);
    // Restoring again: the target already has resources.
    let (st, b) = call(
        &c,
        "POST",
        &format!("{u}/v1/resource-definitions/src/snapshot-restore-resource/s1"),
        Some(json!({"to_resource": "dst"})),
    )
    .await;
    assert_eq!((st, code(rc_at(&b, 0))), (500, 502));
    // Delete snapshot (twice: second is WARN_NOT_FOUND), then the RD goes.
    let (st, _) = call(&c, "DELETE", &format!("{snaps}/s1"), None).await;
    assert_eq!(st, 200);
    let (st, b) = call(&c, "DELETE", &format!("{snaps}/s1"), None).await;
    assert_eq!((st, code(rc_at(&b, 0))), (200, 3000));
    let (st, _) = call(
        &c,
        "DELETE",
        &format!("{u}/v1/resource-definitions/src"),
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert!(s.sim.resource_definition("src").is_none());
    s.stop().await;
}

#[tokio::test]
async fn resource_state_sync_in_use_and_offline() {
    let mut cfg = SimConfig::realistic();
    cfg.sync_delay = Duration::from_millis(1500);
    let s = LinstorSim::start(cfg).await.expect("starts");
    let c = client();
    let u = s.url();
    make_rd(&c, &u, "vv", 1024).await;
    let (st, _) = autoplace(&c, &u, "vv", json!({"select_filter": {"place_count": 2}})).await;
    assert_eq!(st, 201);
    let (_, view) = call(
        &c,
        "GET",
        &format!("{u}/v1/view/resources?resources=vv"),
        None,
    )
    .await;
    let states: Vec<&str> = view
        .as_array()
        .expect("list")
        .iter()
        .map(|r| {
            r["volumes"][0]["state"]["disk_state"]
                .as_str()
                .unwrap_or("")
        })
        .collect();
    assert_eq!(states.len(), 2);
    assert!(
        states.contains(&"UpToDate"),
        "first replica has nobody to sync from: {states:?}"
    );
    assert!(
        states.contains(&"Inconsistent"),
        "second syncs first: {states:?}"
    );
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (_, view) = call(
        &c,
        "GET",
        &format!("{u}/v1/view/resources?resources=vv"),
        None,
    )
    .await;
    assert!(
        view.as_array()
            .expect("list")
            .iter()
            .all(|r| r["volumes"][0]["state"]["disk_state"] == "UpToDate")
    );
    assert_eq!(view[0]["state"]["in_use"], false);
    assert!(
        view[0]["volumes"][0]["device_path"]
            .as_str()
            .is_some_and(|p| p.starts_with("/dev/drbd"))
    );

    let node = view[0]["node_name"].as_str().expect("node").to_string();
    assert!(s.sim.set_in_use("vv", &node, true));
    let (st, b) = call(
        &c,
        "DELETE",
        &format!("{u}/v1/resource-definitions/vv/resources/{node}"),
        None,
    )
    .await;
    assert_eq!((st, code(rc_at(&b, 0))), (500, 997));
    let (st, b) = call(
        &c,
        "DELETE",
        &format!("{u}/v1/resource-definitions/vv"),
        None,
    )
    .await;
    assert_eq!((st, code(rc_at(&b, 0))), (500, 997));
    assert!(s.sim.set_in_use("vv", &node, false));
    assert!(s.sim.set_disk_state("vv", &node, Some("Outdated")));
    assert!(s.sim.set_node_online("node-c", false));
    let (_, view) = call(
        &c,
        "GET",
        &format!("{u}/v1/view/resources?resources=vv&nodes={node}"),
        None,
    )
    .await;
    assert_eq!(view[0]["volumes"][0]["state"]["disk_state"], "Outdated");
    // Offline node: resources lose `state`; autoplace skips the node.
    make_rd(&c, &u, "ww", 1024).await;
    let (st, _) = autoplace(&c, &u, "ww", json!({"select_filter": {"place_count": 2}})).await;
    assert_eq!(st, 201);
    assert_eq!(diskful_nodes(&s.sim, "ww"), vec!["node-a", "node-b"]);
    let (_, n) = call(&c, "GET", &format!("{u}/v1/nodes/node-c"), None).await;
    assert_eq!(n["connection_status"], "OFFLINE");
    let (st, _) = call(
        &c,
        "POST",
        &format!("{u}/v1/resource-definitions/ww/resources/node-c"),
        Some(json!({"resource": {"props": {"StorPoolName": "thin"}}})),
    )
    .await;
    assert_eq!(st, 201);
    let (_, view) = call(
        &c,
        "GET",
        &format!("{u}/v1/view/resources?resources=ww&nodes=node-c"),
        None,
    )
    .await;
    assert!(
        view[0].get("state").is_none(),
        "offline satellite: no state"
    );
    assert!(view[0]["volumes"][0].get("state").is_none());
    // Manual create on an existing replica: exists.
    let (st, b) = call(
        &c,
        "POST",
        &format!("{u}/v1/resource-definitions/ww/resources"),
        Some(json!([{"resource": {"node_name": "node-a"}}])),
    )
    .await;
    assert_eq!((st, code(rc_at(&b, 0))), (500, 502));
    s.stop().await;
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let s = sim().await;
    let c = client();
    let (st, b) = call(&c, "GET", &format!("{}/v1/no-such-thing", s.url()), None).await;
    assert_eq!(st, 404);
    assert_eq!(
        code(rc_at(&b, 0)),
        998,
        "FAIL_UNKNOWN_ERROR, not a FAIL_NOT_FOUND_* code"
    );
    assert_eq!(
        b[0]["message"],
        "Path '/v1/no-such-thing' not found on server."
    );
    let (st, _) = call(
        &c,
        "PATCH",
        &format!("{}/v1/resource-definitions", s.url()),
        None,
    )
    .await;
    assert_eq!(st, 405);
    s.stop().await;
}

#[tokio::test]
async fn concurrent_creates_serialise() {
    let s = sim().await;
    let c = client();
    let url = format!("{}/v1/resource-definitions", s.url());
    let mut tasks = Vec::new();
    for _ in 0..16 {
        let c = c.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            call(
                &c,
                "POST",
                &url,
                Some(json!({"resource_definition": {"name": "race"}})),
            )
            .await
        }));
    }
    let mut created = 0;
    let mut exists = 0;
    for t in tasks {
        let (st, b) = t.await.expect("task");
        match st {
            201 => created += 1,
            500 if code(rc_at(&b, 0)) == 501 => exists += 1,
            other => panic!("unexpected {other}: {b}"),
        }
    }
    assert_eq!((created, exists), (1, 15));
    s.stop().await;
}

#[tokio::test]
async fn faults_latency_errors_hang_unreachable() {
    let s = sim().await;
    let c = client();
    let u = s.url();
    let version = format!("{u}/v1/controller/version");
    let f = s.sim.faults();

    f.set_latency(Some(Duration::from_millis(150)));
    let t = Instant::now();
    let (st, _) = call(&c, "GET", &version, None).await;
    assert_eq!(st, 200);
    assert!(t.elapsed() >= Duration::from_millis(150));
    f.set_latency(None);

    f.fail_next(2, 500);
    let (st, b) = call(&c, "GET", &version, None).await;
    assert_eq!(st, 500);
    assert!(b[0]["error_report_ids"][0].is_string());
    let (st, _) = call(&c, "GET", &version, None).await;
    assert_eq!(st, 500);
    let (st, _) = call(&c, "GET", &version, None).await;
    assert_eq!(st, 200, "only the next N calls fail");
    f.fail_next(1, 503);
    let (st, _) = call(&c, "GET", &version, None).await;
    assert_eq!(st, 503);
    f.fail_ratio(1.0, 500);
    let (st, _) = call(&c, "GET", &version, None).await;
    assert_eq!(st, 500);
    f.fail_ratio(0.0, 500);

    // Hang: the client's own timeout fires.
    f.hang(Some("POST"), "/autoplace");
    let short = reqwest::Client::builder()
        .timeout(Duration::from_millis(300))
        .build()
        .expect("client");
    let t = Instant::now();
    let err = short
        .post(format!("{u}/v1/resource-definitions/x/autoplace"))
        .json(&json!({"select_filter": {}}))
        .send()
        .await
        .expect_err("hung call times out");
    assert!(err.is_timeout(), "{err}");
    assert!(t.elapsed() < Duration::from_secs(3));
    let (st, _) = call(&c, "GET", &version, None).await;
    assert_eq!(st, 200, "other calls still answer");

    // Dropped connection mid-request.
    f.drop_next(1);
    let fresh = client();
    let err = fresh
        .get(&version)
        .send()
        .await
        .expect_err("connection dropped");
    assert!(!err.is_timeout(), "{err}");

    // Unreachable: every connection is closed, then recovery.
    f.set_unreachable(true);
    let fresh = client();
    assert!(fresh.get(&version).send().await.is_err());
    f.set_unreachable(false);
    let (st, _) = call(&client(), "GET", &version, None).await;
    assert_eq!(st, 200);
    f.clear();
    s.stop().await;
}

#[tokio::test]
async fn stats_and_exchanges() {
    let s = sim().await;
    let c = client();
    let u = s.url();
    s.sim.record_exchanges(true);
    make_rd(&c, &u, "st", 1024).await;
    let _ = autoplace(&c, &u, "st", json!({"select_filter": {"place_count": 1}})).await;
    let _ = autoplace(&c, &u, "st", json!({"select_filter": {"place_count": 1}})).await;
    let _ = call(&c, "GET", &format!("{u}/v1/resource-definitions"), None).await;
    let stats = s.sim.stats();
    assert_eq!(
        stats.count("POST", "/v1/resource-definitions/{resource}/autoplace"),
        2
    );
    assert_eq!(stats.count("POST", "/v1/resource-definitions"), 1);
    assert_eq!(stats.reads(), 1);
    assert_eq!(stats.writes(), 4);
    let ex = s.sim.exchanges();
    assert_eq!(ex.len(), 5);
    assert_eq!(ex[0].method, "POST");
    assert_eq!(ex[0].status, 201);
    let req: Value = serde_json::from_slice(ex[0].request_body.as_deref().expect("body recorded"))
        .expect("json");
    assert_eq!(req["resource_definition"]["name"], "st");
    let resp: Value = serde_json::from_slice(&ex[3].response_body).expect("json");
    assert_eq!(code(rc_at(&resp, 0)), 1006);
    stats.reset();
    assert_eq!(stats.total(), 0);
    s.stop().await;
}

/// Serves a simulator for the Python client tests until killed:
/// `LINSTOR_SIM_PORT=3370 cargo test --test integration serve_for_python -- --ignored`.
#[tokio::test]
#[ignore = "long-running server for tests/python; started by tests/python/run.sh"]
async fn serve_for_python() {
    let port: u16 = std::env::var("LINSTOR_SIM_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(3370);
    let sim = LinstorSim::new(SimConfig::realistic());
    let running = sim
        .serve_on(([127, 0, 0, 1], port).into())
        .await
        .expect("bind simulator port");
    println!("LINSTOR simulator listening on {}", running.url());
    running.wait().await;
}

#[tokio::test]
async fn manual_create_is_atomic_and_external_names() {
    let s = sim().await;
    let c = client();
    let u = s.url();
    make_rd(&c, &u, "atom", 1024).await;
    // Second item names an unknown node: the whole request fails and node-a keeps nothing.
    let (st, b) = call(
        &c,
        "POST",
        &format!("{u}/v1/resource-definitions/atom/resources"),
        Some(json!([
            {"resource": {"node_name": "node-a", "props": {"StorPoolName": "thin"}}},
            {"resource": {"node_name": "node-x"}}
        ])),
    )
    .await;
    assert_eq!((st, code(rc_at(&b, 0))), (404, 300));
    assert!(s.sim.resources("atom").is_empty());
    // Without StorPoolName the resource wants DfltStorPool, which these nodes lack.
    let (st, b) = call(
        &c,
        "POST",
        &format!("{u}/v1/resource-definitions/atom/resources/node-a"),
        Some(json!({"resource": {}})),
    )
    .await;
    assert_eq!(
        (st, code(rc_at(&b, 0))),
        (404, 311),
        "all 3xx codes map to 404"
    );
    // An external name that is not a valid LINSTOR name gets a generated valid one.
    let (st, b) = call(
        &c,
        "POST",
        &format!("{u}/v1/resource-definitions"),
        Some(json!({"resource_definition": {"external_name": "ns/my volume"}})),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    let name = b[0]["obj_refs"]["RscDfn"]
        .as_str()
        .expect("generated name")
        .to_string();
    assert_eq!(name, "ns_my_volume");
    assert_eq!(
        s.sim.resource_definition(&name).expect("exists")["external_name"],
        "ns/my volume"
    );
    let (st, b) = call(
        &c,
        "POST",
        &format!("{u}/v1/resource-definitions"),
        Some(json!({"resource_definition": {"external_name": "9".repeat(60)}})),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    assert!(
        b[0]["obj_refs"]["RscDfn"]
            .as_str()
            .is_some_and(|n| n.starts_with("LS_"))
    );
    s.stop().await;
}

/// The router also works in-process, without a socket.
#[tokio::test]
async fn router_in_process() {
    use tower::ServiceExt;
    let sim = LinstorSim::new(SimConfig::realistic());
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/v1/resource-groups")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(
            r#"{"name":"rg-x","select_filter":{"place_count":3}}"#,
        ))
        .expect("request");
    let resp = sim.router().oneshot(req).await.expect("infallible");
    assert_eq!(resp.status().as_u16(), 201);
    let rgs = sim.resource_groups();
    let rg = rgs.iter().find(|g| g["name"] == "rg-x").expect("created");
    assert_eq!(rg["select_filter"]["place_count"], 3);
}

#[tokio::test]
async fn modify_resource_snapshot_sync_status_and_version_gates() {
    let mut cfg = SimConfig::realistic();
    cfg.sync_delay = Duration::from_millis(1500);
    let s = LinstorSim::start(cfg).await.expect("starts");
    let c = client();
    let u = s.url();
    make_rd(&c, &u, "mod", 1024).await;
    let (st, _) = autoplace(
        &c,
        &u,
        "mod",
        json!({"select_filter": {"place_count": 2, "node_name_list": ["node-a", "node-b"]}}),
    )
    .await;
    assert_eq!(st, 201);
    let sync = format!("{u}/v1/resource-definitions/mod/sync-status");
    let (_, v) = call(&c, "GET", &sync, None).await;
    assert_eq!(v["synced_on_all"], false, "second replica still syncing");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    let (_, v) = call(&c, "GET", &sync, None).await;
    assert_eq!(v["synced_on_all"], true);

    let rsc = format!("{u}/v1/resource-definitions/mod/resources/node-a");
    let (st, _) = call(
        &c,
        "PUT",
        &rsc,
        Some(json!({"override_props": {"Aux/edgebind.dev/role": "primary"}})),
    )
    .await;
    assert_eq!(st, 200);
    let (_, r) = call(&c, "GET", &rsc, None).await;
    assert_eq!(r["props"]["Aux/edgebind.dev/role"], "primary");
    let (st, b) = call(
        &c,
        "PUT",
        &format!("{u}/v1/resource-definitions/mod/resources/node-c"),
        Some(json!({"override_props": {}})),
    )
    .await;
    assert_eq!((st, code(rc_at(&b, 0))), (404, 302));
    // drbd_client is a REST API 1.28 field; this simulator speaks 1.27, so it is unknown. On
    // a PUT the mapping error escapes the endpoint: 500 (a POST catches it: 400, below).
    let (st, b) = call(&c, "PUT", &rsc, Some(json!({"drbd_client": true}))).await;
    assert_eq!(st, 500);
    assert_eq!(b[0]["message"], "Unable to parse input json.");
    let (st, _) = call(
        &c,
        "POST",
        &format!("{u}/v1/resource-definitions/mod/resources/node-d"),
        Some(json!({"resource": {"flags": ["DRBD_DISKLESS"]}, "drbd_client": true})),
    )
    .await;
    assert_eq!(st, 400);

    let snaps = format!("{u}/v1/resource-definitions/mod/snapshots");
    let (st, _) = call(&c, "POST", &snaps, Some(json!({"name": "s1"}))).await;
    assert_eq!(st, 201);
    let (st, _) = call(
        &c,
        "PUT",
        &format!("{snaps}/s1"),
        Some(json!({"override_props": {"Aux/k": "v"}})),
    )
    .await;
    assert_eq!(st, 200);
    assert_eq!(
        s.sim.snapshots("mod")[0]["snapshot_definition_props"]["Aux/k"],
        "v"
    );
    let (st, b) = call(
        &c,
        "PUT",
        &format!("{snaps}/nope"),
        Some(json!({"override_props": {}})),
    )
    .await;
    assert_eq!((st, code(rc_at(&b, 0))), (404, 313));
    s.stop().await;

    // A 1.28 server accepts the field.
    let mut cfg = SimConfig::realistic();
    cfg.rest_api_version = "1.28.0".to_string();
    let s = LinstorSim::start(cfg).await.expect("starts");
    make_rd(&c, &s.url(), "new", 1024).await;
    let (st, b) = call(
        &c,
        "POST",
        &format!("{}/v1/resource-definitions/new/resources/node-d", s.url()),
        Some(json!({"resource": {"flags": ["DRBD_DISKLESS"]}, "drbd_client": true})),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    s.stop().await;
}
