//! Self-tests of the OpenAPI contract checker against the real documents in `specs/`.

use crate::support::contract::{Contract, ContractOptions, Exchange, ExchangeLog};
use serde_json::{Value, json};
use std::time::Instant;

const ACCOUNT: &str = "023e105f4ecef8ad9ca31a8372d0c353";
const ZONE: &str = "372e67954025e0ba6aaa6d586b9e0b59";
const JSON: Option<&str> = Some("application/json");

fn linstor() -> &'static Contract {
    Contract::shared_linstor().expect("the LINSTOR document in specs/ loads")
}

fn cloudflare() -> &'static Contract {
    Contract::shared_cloudflare().expect("the Cloudflare document in specs/ loads")
}

fn body(v: Value) -> Vec<u8> {
    serde_json::to_vec(&v).expect("a JSON value serializes")
}

fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Assert a check failed and that some message contains every one of `needles`.
#[track_caller]
fn assert_violation(result: Result<(), Vec<String>>, needles: &[&str]) {
    let violations = match result {
        Ok(()) => panic!("expected a violation mentioning {needles:?}, the check passed"),
        Err(v) => v,
    };
    assert!(
        violations
            .iter()
            .any(|m| needles.iter().all(|n| m.contains(n))),
        "no violation mentions all of {needles:?}; got:\n{}",
        violations.join("\n")
    );
}

#[track_caller]
fn assert_ok(result: Result<(), Vec<String>>) {
    if let Err(v) = result {
        panic!("expected no violation, got:\n{}", v.join("\n"));
    }
}

fn linstor_post(path: &str, v: Value) -> Result<(), Vec<String>> {
    linstor().check_request("POST", path, &[], JSON, Some(&body(v)))
}

fn rd_create() -> Value {
    json!({
        "resource_definition": {
            "name": "vol-1",
            "resource_group_name": "edgebind-fast",
            "props": {"Aux/edgebind.dev/uid": "7c1f0a52-5b1e-4f4e-9d0e-2f3a1c9b8d77"}
        },
        "drbd_peer_slots": 7
    })
}

/// (name, filename, content type, content) of one form part.
type FormPart<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

/// A multipart body as reqwest writes it (CRLF lines, one boundary).
fn multipart(boundary: &str, parts: &[FormPart<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, filename, content_type, content) in parts {
        out.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        let mut disposition = format!("Content-Disposition: form-data; name=\"{name}\"");
        if let Some(f) = filename {
            disposition.push_str(&format!("; filename=\"{f}\""));
        }
        out.extend_from_slice(disposition.as_bytes());
        out.extend_from_slice(b"\r\n");
        if let Some(ct) = content_type {
            out.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(content);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    out
}

fn upload_metadata() -> Value {
    json!({
        "main_module": "worker.js",
        "compatibility_date": "2025-06-01",
        "bindings": [{"type": "plain_text", "name": "GATEWAY_URL", "text": "https://gw.example.com"}],
        "keep_bindings": ["secret_text", "secret_key"]
    })
}

fn check_upload(metadata: &Value, module_name: &str, module_type: &str) -> Result<(), Vec<String>> {
    let boundary = "edgebind-7d3f0e";
    let meta = body(metadata.clone());
    let form = multipart(
        boundary,
        &[
            ("metadata", Some("blob"), JSON, &meta),
            (
                module_name,
                Some(module_name),
                Some(module_type),
                b"export default { fetch() { return new Response('ok') } }",
            ),
        ],
    );
    cloudflare().check_request(
        "PUT",
        &format!("/client/v4/accounts/{ACCOUNT}/workers/scripts/edgebind-gatekeeper"),
        &[],
        Some(&format!("multipart/form-data; boundary={boundary}")),
        Some(&form),
    )
}

// ---- loading ----

#[test]
fn both_documents_load_and_every_schema_compiles() {
    for (name, load) in [
        (
            "linstor",
            Contract::linstor as fn() -> anyhow::Result<Contract>,
        ),
        ("cloudflare", Contract::cloudflare),
    ] {
        let contract = load().expect("document loads");
        let started = Instant::now();
        let failures = contract.precompile_all();
        eprintln!(
            "{name}: load {:?}, compiling every schema {:?}",
            contract.load_time(),
            started.elapsed()
        );
        assert!(failures.is_empty(), "{name}: {}", failures.join("\n"));
    }
}

#[test]
fn base_paths_come_from_the_servers_list() {
    assert_eq!(linstor().base_path(), "");
    assert_eq!(cloudflare().base_path(), "/client/v4");
}

// ---- valid requests pass ----

#[test]
fn linstor_resource_definition_create_passes() {
    assert_ok(linstor_post("/v1/resource-definitions", rd_create()));
}

#[test]
fn linstor_autoplace_with_select_filter_passes() {
    assert_ok(linstor_post(
        "/v1/resource-definitions/vol-1/autoplace",
        json!({
            "select_filter": {
                "place_count": 2,
                "storage_pool_list": ["thin"],
                "replicas_on_different": ["Aux/topology/topology.kubernetes.io/zone"],
                "layer_stack": ["DRBD", "STORAGE"]
            },
            "diskless_on_remaining": false,
            "layer_list": ["DRBD", "STORAGE"]
        }),
    ));
}

#[test]
fn linstor_volume_definition_resize_passes() {
    assert_ok(linstor().check_request(
        "PUT",
        "/v1/resource-definitions/vol-1/volume-definitions/0",
        &[],
        JSON,
        Some(&body(json!({"size_kib": 2_097_152}))),
    ));
}

#[test]
fn cloudflare_route_create_passes() {
    assert_ok(cloudflare().check_request(
        "POST",
        &format!("/client/v4/zones/{ZONE}/workers/routes"),
        &[],
        JSON,
        Some(&body(
            json!({"pattern": "api.example.com/edge/*", "script": "edgebind-gatekeeper"}),
        )),
    ));
}

#[test]
fn cloudflare_module_worker_upload_passes() {
    assert_ok(check_upload(
        &upload_metadata(),
        "worker.js",
        "application/javascript+module",
    ));
}

#[test]
fn cloudflare_secret_put_passes() {
    assert_ok(cloudflare().check_request(
        "PUT",
        &format!("/client/v4/accounts/{ACCOUNT}/workers/scripts/edgebind-gatekeeper/secrets"),
        &[],
        JSON,
        Some(&body(
            json!({"name": "SIGNING_KEY", "text": "not-a-real-key", "type": "secret_text"}),
        )),
    ));
}

// ---- each failure has a clear message ----

#[test]
fn unknown_field_in_a_closed_linstor_request_fails() {
    let mut create = rd_create();
    create["resource_definition"]["drbd_client"] = json!(true);
    assert_violation(
        linstor_post("/v1/resource-definitions", create),
        &[
            "resourceDefinitionCreate",
            "/resource_definition",
            "drbd_client",
        ],
    );
}

#[test]
fn unknown_fields_pass_when_requests_are_open() {
    let open = Contract::load(
        &crate::support::contract::specs_dir().join("linstor-rest-v1.yaml"),
        ContractOptions::default(),
    )
    .expect("document loads");
    let mut create = rd_create();
    create["resource_definition"]["drbd_client"] = json!(true);
    assert_ok(open.check_request(
        "POST",
        "/v1/resource-definitions",
        &[],
        JSON,
        Some(&body(create)),
    ));
}

#[test]
fn wrong_type_fails() {
    assert_violation(
        linstor().check_request(
            "PUT",
            "/v1/resource-definitions/vol-1/volume-definitions/0",
            &[],
            JSON,
            Some(&body(json!({"size_kib": "2G"}))),
        ),
        &["volumeDefinitionModify", "/size_kib", "integer"],
    );
}

#[test]
fn missing_required_field_fails() {
    assert_violation(
        linstor_post(
            "/v1/resource-definitions/vol-1/autoplace",
            json!({"layer_list": ["DRBD", "STORAGE"]}),
        ),
        &["resourceAutoplace", "select_filter", "required"],
    );
}

#[test]
fn unknown_path_fails() {
    assert_violation(
        linstor_post("/v1/resource-definition", rd_create()),
        &["unknown path", "/v1/resource-definition"],
    );
}

#[test]
fn unknown_method_fails() {
    assert_violation(
        linstor().check_request(
            "PATCH",
            "/v1/resource-definitions/vol-1",
            &[],
            JSON,
            Some(&body(json!({}))),
        ),
        &[
            "unknown method PATCH",
            "/v1/resource-definitions/{resource}",
        ],
    );
}

#[test]
fn unknown_query_parameter_fails() {
    assert_violation(
        linstor().check_request(
            "GET",
            "/v1/resource-definitions",
            &q(&[("resource_definition", "vol-1")]),
            None,
            None,
        ),
        &[
            "unknown query parameter 'resource_definition'",
            "resource_definitions",
        ],
    );
}

#[test]
fn null_where_the_schema_is_not_nullable_fails() {
    let mut create = rd_create();
    create["resource_definition"]["resource_group_name"] = Value::Null;
    assert_violation(
        linstor_post("/v1/resource-definitions", create),
        &["/resource_definition/resource_group_name", "null"],
    );
}

#[test]
fn undeclared_response_status_fails() {
    assert_violation(
        linstor().check_response("POST", "/v1/resource-definitions", 204, None, b""),
        &["response status 204 is not declared", "201"],
    );
    assert_violation(
        cloudflare().check_response(
            "POST",
            &format!("/client/v4/zones/{ZONE}/workers/routes"),
            503,
            JSON,
            &body(json!({"success": false, "errors": [], "messages": [], "result": null})),
        ),
        &["response status 503 is not declared", "4XX"],
    );
}

// ---- query and path parameters ----

#[test]
fn repeated_query_parameters_are_arrays_and_types_are_checked() {
    let c = linstor();
    assert_ok(c.check_request(
        "GET",
        "/v1/resource-definitions",
        &q(&[
            ("resource_definitions", "vol-1"),
            ("resource_definitions", "vol-2"),
            ("with_volume_definitions", "true"),
            ("props", "Aux/edgebind.dev/owner=ns/name"),
            ("limit", "10"),
        ]),
        None,
        None,
    ));
    assert_violation(
        c.check_request(
            "GET",
            "/v1/resource-definitions",
            &q(&[("with_volume_definitions", "yes")]),
            None,
            None,
        ),
        &["with_volume_definitions", "not a boolean"],
    );
    assert_violation(
        c.check_request("GET", "/v1/resource-definitions?limit=51", &[], None, None),
        &["query parameter 'limit'", "maximum"],
    );
    assert_violation(
        c.check_request(
            "GET",
            "/v1/resource-definitions?limit=1&limit=2",
            &[],
            None,
            None,
        ),
        &["'limit'", "given 2 times"],
    );
}

#[test]
fn path_parameters_are_typed() {
    assert_violation(
        linstor().check_request(
            "PUT",
            "/v1/resource-definitions/vol-1/volume-definitions/first",
            &[],
            JSON,
            Some(&body(json!({"size_kib": 1}))),
        ),
        &["path parameter 'volume_number'", "not an integer"],
    );
}

#[test]
fn required_query_parameter_missing_fails() {
    // The only required query parameter in either document.
    let c = linstor();
    assert_ok(c.check_request(
        "DELETE",
        "/v1/remotes",
        &q(&[("remote_name", "s3-backup")]),
        None,
        None,
    ));
    assert_violation(
        c.check_request("DELETE", "/v1/remotes", &[], None, None),
        &["required query parameter 'remote_name' is missing"],
    );
}

// ---- path matching ----

#[test]
fn literal_segments_win_over_templates() {
    let c = linstor();
    // Both `/v1/resource-definitions/properties/info` and
    // `/v1/resource-definitions/{resource}/resources` have this shape; the literal one wins.
    let label = c
        .operation_label("GET", "/v1/resource-definitions/properties/info")
        .expect("matches");
    assert!(
        label.starts_with("GET /v1/resource-definitions/properties/info ("),
        "{label}"
    );
    let label = c
        .operation_label("GET", "/v1/resource-definitions/vol-1/resources")
        .expect("matches");
    assert!(
        label.starts_with("GET /v1/resource-definitions/{resource}/resources ("),
        "{label}"
    );
}

#[test]
fn cloudflare_paths_need_the_base_path_unless_told_otherwise() {
    let route = json!({"pattern": "api.example.com/*", "script": "edgebind-gatekeeper"});
    let bare = format!("/zones/{ZONE}/workers/routes");
    assert_violation(
        cloudflare().check_request("POST", &bare, &[], JSON, Some(&body(route.clone()))),
        &["outside the server base path /client/v4"],
    );
    let lenient = Contract::cloudflare()
        .expect("document loads")
        .with_base_path_optional();
    assert_ok(lenient.check_request("POST", &bare, &[], JSON, Some(&body(route))));
}

// ---- multipart ----

#[test]
fn multipart_metadata_is_validated_against_the_spec_schema() {
    let mut metadata = upload_metadata();
    metadata["keep_bindings"] = json!("secret_text");
    assert_violation(
        check_upload(&metadata, "worker.js", "application/javascript+module"),
        &["multipart part 'metadata'", "/keep_bindings", "array"],
    );
}

#[test]
fn multipart_main_module_must_name_a_part() {
    assert_violation(
        check_upload(
            &upload_metadata(),
            "index.js",
            "application/javascript+module",
        ),
        &["main_module names part 'worker.js'"],
    );
}

#[test]
fn multipart_module_content_type_must_be_declared() {
    assert_violation(
        check_upload(&upload_metadata(), "worker.js", "application/x-shellscript"),
        &["multipart part 'worker.js'", "content type"],
    );
}

#[test]
fn malformed_multipart_is_a_violation_not_a_panic() {
    let path = format!("/client/v4/accounts/{ACCOUNT}/workers/scripts/edgebind-gatekeeper");
    let truncated = b"--b\r\nContent-Disposition: form-data; name=\"metadata\"\r\n\r\n{\"main";
    assert_violation(
        cloudflare().check_request(
            "PUT",
            &path,
            &[],
            Some("multipart/form-data; boundary=b"),
            Some(truncated),
        ),
        &["no closing boundary"],
    );
    assert_violation(
        cloudflare().check_request("PUT", &path, &[], Some("multipart/form-data"), Some(b"x")),
        &["no boundary"],
    );
}

// ---- responses ----

#[test]
fn linstor_error_bodies_may_be_lists_or_one_object() {
    let c = linstor();
    let entry = json!({
        "ret_code": -4_611_686_018_406_940_171_i64,
        "message": "A resource definition with the name 'vol-1' already exists",
        "obj_refs": {"RscDfn": "vol-1"}
    });
    assert_ok(c.check_response(
        "POST",
        "/v1/resource-definitions",
        500,
        JSON,
        &body(entry.clone()),
    ));
    assert_ok(c.check_response(
        "POST",
        "/v1/resource-definitions",
        500,
        JSON,
        &body(json!([entry])),
    ));
    assert_violation(
        c.check_response(
            "POST",
            "/v1/resource-definitions",
            500,
            JSON,
            &body(json!([{"message": "no ret_code"}])),
        ),
        &["ret_code"],
    );
}

#[test]
fn linstor_undeclared_error_status_must_match_the_ret_code() {
    let c = linstor();
    // FAIL_NOT_FOUND_RSC_DFN (301) on a modify that declares only 200.
    let not_found = body(json!([{
        "ret_code": (0xC000_0000_0000_0000_u64 | 0x0200_0000 | 0x38_0000 | 301) as i64,
        "message": "Resource definition 'vol-9' not found."
    }]));
    assert_ok(c.check_response(
        "PUT",
        "/v1/resource-definitions/vol-9",
        404,
        JSON,
        &not_found,
    ));
    assert_violation(
        c.check_response(
            "PUT",
            "/v1/resource-definitions/vol-9",
            500,
            JSON,
            &not_found,
        ),
        &["code 301", "maps to 404"],
    );
    // FAIL_EXISTS_RSC (502) on resource create: 500, never 409.
    let exists = body(json!([{
        "ret_code": (0xC000_0000_0000_0000_u64 | 0x0100_0000 | 0x34_0000 | 502) as i64,
        "message": "Resource 'vol-1' on node 'n1' already exists."
    }]));
    assert_ok(c.check_response(
        "PUT",
        "/v1/resource-definitions/vol-1/resources/n1",
        500,
        JSON,
        &exists,
    ));
    assert_violation(
        c.check_response("PUT", "/v1/resource-definitions/vol-9", 409, JSON, &exists),
        &["status 409 is not declared"],
    );
}

#[test]
fn linstor_single_object_get_answers_the_object() {
    let c = linstor();
    assert_ok(c.check_request("GET", "/v1/resource-definitions/vol-1", &[], None, None));
    let rd = json!({
        "name": "vol-1",
        "resource_group_name": "edgebind-fast",
        "props": {"Aux/edgebind.dev/uid": "u"},
        "flags": [],
        "uuid": "e8ef8d6b-17bc-42f0-9367-4aae40c78ecb"
    });
    assert_ok(c.check_response(
        "GET",
        "/v1/resource-definitions/vol-1",
        200,
        JSON,
        &body(rd.clone()),
    ));
    assert_violation(
        c.check_response(
            "GET",
            "/v1/resource-definitions/vol-1",
            200,
            JSON,
            &body(json!({"name": 7})),
        ),
        &["/name", "string"],
    );
    assert_violation(
        c.check_request(
            "GET",
            "/v1/resource-definitions/vol-1",
            &q(&[("with_volume_definitions", "true")]),
            None,
            None,
        ),
        &["unknown query parameter 'with_volume_definitions'"],
    );
}

#[test]
fn closed_responses_merge_all_of_before_closing() {
    let closed = Contract::load(
        &crate::support::contract::specs_dir().join("linstor-rest-v1.yaml"),
        ContractOptions {
            closed_requests: true,
            closed_responses: true,
        },
    )
    .expect("document loads");
    // ResourceWithVolumes = allOf [Resource, {volumes, ...}]: fields of both members must pass.
    let resource = json!({"name": "vol-1", "node_name": "n1", "flags": [], "volumes": []});
    assert_ok(closed.check_response(
        "GET",
        "/v1/view/resources",
        200,
        JSON,
        &body(json!([resource])),
    ));
    let mut extra = resource.clone();
    extra["surprise"] = json!(1);
    assert_violation(
        closed.check_response(
            "GET",
            "/v1/view/resources",
            200,
            JSON,
            &body(json!([extra])),
        ),
        &["/0", "surprise"],
    );
    // The open default lets additions through.
    assert_ok(linstor().check_response(
        "GET",
        "/v1/view/resources",
        200,
        JSON,
        &body(json!([{"name": "vol-1", "surprise": 1}])),
    ));
}

#[test]
fn cloudflare_deviations_are_accepted_and_nothing_more() {
    let c = cloudflare();
    let routes = format!("/client/v4/zones/{ZONE}/workers/routes");
    // Error code below the spec's minimum of 1000 (cloudflare.md §0).
    let failure = json!({
        "success": false,
        "errors": [{"code": 971, "message": "Please wait and consider throttling your request speed"}],
        "messages": [],
        "result": null
    });
    assert_ok(c.check_response("POST", &routes, 429, JSON, &body(failure.clone())));
    let mut not_null = failure;
    not_null["result"] = json!({});
    assert_violation(
        c.check_response("POST", &routes, 429, JSON, &body(not_null)),
        &["/result"],
    );
    // secrets-bulk: null deletes a secret.
    assert_ok(c.check_request(
        "PATCH",
        &format!("/client/v4/accounts/{ACCOUNT}/workers/scripts/edgebind-gatekeeper/secrets-bulk"),
        &[],
        Some("application/merge-patch+json"),
        Some(&body(json!({"secrets": {
            "SIGNING_KEY_NEXT": {"name": "SIGNING_KEY_NEXT", "text": "x", "type": "secret_text"},
            "SIGNING_KEY_OLD": null
        }}))),
    ));
    // DELETE with no body, although the document marks a schemaless body required.
    assert_ok(c.check_request(
        "DELETE",
        &format!("{routes}/9a7806061c88ada191ed06f989cc3dac"),
        &[],
        None,
        None,
    ));
    // A body where the operation declares none is still a violation.
    assert_violation(
        c.check_request(
            "DELETE",
            &format!(
                "/client/v4/accounts/{ACCOUNT}/workers/scripts/edgebind-gatekeeper/secrets/SIGNING_KEY"
            ),
            &[],
            JSON,
            Some(b"{}"),
        ),
        &["takes no request body"],
    );
}

#[test]
fn secret_responses_need_no_write_only_value() {
    assert_ok(cloudflare().check_response(
        "PUT",
        &format!("/client/v4/accounts/{ACCOUNT}/workers/scripts/edgebind-gatekeeper/secrets"),
        200,
        JSON,
        &body(json!({
            "success": true, "errors": [], "messages": [],
            "result": {"name": "SIGNING_KEY", "type": "secret_text"}
        })),
    ));
}

#[test]
fn response_content_type_and_body_are_checked() {
    let c = linstor();
    assert_violation(
        c.check_response(
            "GET",
            "/v1/controller/version",
            200,
            Some("text/html"),
            b"<html>",
        ),
        &["content type 'text/html' is not declared"],
    );
    assert_violation(
        c.check_response("GET", "/v1/controller/version", 200, JSON, b"{not json"),
        &["not JSON"],
    );
    assert_ok(c.check_response(
        "GET",
        "/v1/controller/version",
        200,
        Some("application/json; charset=utf-8"),
        &body(json!({"version": "1.34.0", "git_hash": "abc", "build_time": "t", "rest_api_version": "1.28.0"})),
    ));
}

// ---- batches ----

#[test]
fn exchange_log_reports_each_bad_exchange_by_index() {
    let good = Exchange {
        method: "POST".into(),
        path: "/v1/resource-definitions".into(),
        query: vec![],
        request_content_type: Some("application/json".into()),
        request_body: Some(body(rd_create())),
        status: 201,
        response_content_type: Some("application/json".into()),
        response_body: body(
            json!([{"ret_code": 20_447_233, "message": "New resource definition 'vol-1' created."}]),
        ),
    };
    let mut bad = good.clone();
    bad.path = "/v1/resource-definitions/vol-1/volume-definitions?bogus=1".into();
    bad.request_body = Some(body(
        json!({"volume_definition": {"size_kib": -1, "extra": true}}),
    ));
    let log = ExchangeLog::new(linstor());
    assert!(log.check_all(std::slice::from_ref(&good)).is_empty());
    let violations = log.check_all(&[good, bad]);
    assert!(!violations.is_empty());
    assert!(
        violations.iter().all(|v| v.starts_with("#1 POST ")),
        "{violations:#?}"
    );
    assert!(
        violations.iter().any(|v| v.contains("'bogus'")),
        "{violations:#?}"
    );
    assert!(
        violations.iter().any(|v| v.contains("extra")),
        "{violations:#?}"
    );
}

#[test]
fn linstor_volume_layer_data_of_a_real_resource_view_passes() {
    let storage_volume = json!({
        "volume_number": 0,
        "device_path": "/dev/vg/vol-1_00000",
        "allocated_size_kib": 1_052_672,
        "usable_size_kib": 1_052_672,
        "disk_state": "[]"
    });
    let resource = json!({
        "name": "vol-1",
        "node_name": "n1",
        "volumes": [{
            "volume_number": 0,
            "storage_pool_name": "thin",
            "provider_kind": "LVM_THIN",
            "device_path": "/dev/drbd1000",
            "allocated_size_kib": 1_052_672,
            "layer_data_list": [{"type": "STORAGE", "data": storage_volume}]
        }]
    });
    assert_ok(linstor().check_response(
        "GET",
        "/v1/view/resources",
        200,
        JSON,
        &body(json!([resource])),
    ));
}

#[test]
fn all_of_members_merge_before_closing_in_requests_and_nullable_widens_type() {
    let spec = r##"
openapi: 3.0.2
info: {title: mini, version: "1"}
servers: [{url: "http://localhost:1/api"}]
paths:
  /things:
    post:
      requestBody:
        content:
          application/json:
            schema: {$ref: '#/components/schemas/Ext'}
      responses:
        '201': {description: created}
components:
  schemas:
    Base:
      type: object
      required: [a]
      properties:
        a: {type: string}
        id: {type: string, readOnly: true}
    Ext:
      allOf:
        - $ref: '#/components/schemas/Base'
        - type: object
          required: [id]
          properties:
            b: {type: integer, nullable: true}
"##;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("mini.yaml");
    std::fs::write(&path, spec).expect("write spec");
    let c = Contract::load(
        &path,
        ContractOptions {
            closed_requests: true,
            closed_responses: false,
        },
    )
    .expect("mini spec loads");
    let post = |v: Value| c.check_request("POST", "/api/things", &[], JSON, Some(&body(v)));
    // Both members' properties pass; `id` is readOnly, so not required in a request.
    assert_ok(post(json!({"a": "x", "b": 1})));
    assert_ok(post(json!({"a": "x", "b": null})));
    assert_violation(post(json!({"a": "x", "c": 1})), &["'c' was unexpected"]);
    assert_violation(post(json!({"a": null})), &["/a", "null"]);
    assert_violation(post(json!({"b": 1})), &["\"a\" is a required property"]);
    assert_violation(
        c.check_response("POST", "/api/things", 201, JSON, b"{}"),
        &["declares no body"],
    );
}

#[test]
fn violations_never_echo_body_values() {
    // A secret with a wrong type: the message names the place and the type, not the value.
    let result = cloudflare().check_request(
        "PUT",
        &format!("/client/v4/accounts/{ACCOUNT}/workers/scripts/edgebind-gatekeeper/secrets"),
        &[],
        JSON,
        Some(&body(
            json!({"name": "SIGNING_KEY", "text": "hunter2-secret-value", "type": "secret_txt"}),
        )),
    );
    let violations = result.expect_err("an unknown secret type is a violation");
    assert!(
        violations.iter().all(|v| !v.contains("hunter2")),
        "{violations:#?}"
    );
}
