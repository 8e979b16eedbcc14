"""LINBIT's official client (python-linstor) against the edgebind LINSTOR simulator.

Return codes are compared with the client's own constants (linstor.consts), so the test checks
the simulator against LINBIT's numbers, not against itself.
"""

import uuid

import linstor
import pytest
from linstor import consts

ZONE = "Aux/topology/topology.kubernetes.io/zone"


def code(rc):
    """The comparable part of a ret_code: type bits plus code, without op/object bits."""
    return rc & (consts.MASK_BITS_TYPE | consts.MASK_BITS_CODE)


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture()
def lin(sim_url):
    client = linstor.Linstor(sim_url, timeout=30)
    client.connect()
    yield client
    client.disconnect()


def assert_success(replies):
    assert replies, "no reply"
    errors = [r for r in replies if r.is_error()]
    assert not errors, [str(r) for r in errors]


def test_connect_reports_version(lin):
    assert lin.connected
    v = lin.controller_version()
    assert v.rest_api_version == "1.27.0"
    assert v.version == "1.33.1"


def test_nodes_and_storage_pools(lin):
    nodes = lin.node_list_raise().nodes
    names = sorted(n.name for n in nodes)
    assert names == ["node-a", "node-b", "node-c", "node-d"]
    zones = {n.name: n.props.get(ZONE) for n in nodes}
    assert zones["node-a"] == "zone-a"
    pools = lin.storage_pool_list_raise(filter_by_stor_pools=["thin"]).storage_pools
    assert sorted(p.node_name for p in pools) == ["node-a", "node-b", "node-c"]
    assert all(p.free_space.total_capacity == 500 * 1024 * 1024 for p in pools)


def test_resource_group_spawn_and_views(lin):
    rg = unique("rg")
    rd = unique("spawned")
    assert_success(lin.resource_group_create(
        rg, place_count=2, storage_pool="thin", replicas_on_different=[ZONE],
        property_dict={"DrbdOptions/Resource/quorum": "majority"}))
    assert_success(lin.volume_group_create(rg))
    assert_success(lin.resource_group_spawn(rg, rd, ["1G"]))
    rgs = lin.resource_group_list_raise(filter_by_resource_groups=[rg]).resource_groups
    assert [g.name for g in rgs] == [rg]
    assert rgs[0].select_filter.place_count == 2

    rsc = lin.resource_list_raise(filter_by_resources=[rd]).resources
    assert len(rsc) == 2
    zones = {lin.node_list_raise(filter_by_nodes=[r.node_name]).nodes[0].props[ZONE] for r in rsc}
    assert len(zones) == 2, "replicas in different zones"
    vols = lin.volume_list_raise(filter_by_resources=[rd]).resources
    for r in vols:
        assert r.volumes[0].storage_pool_name == "thin"
        assert r.volumes[0].device_path.startswith("/dev/drbd")
        assert r.volumes[0].state.disk_state == "UpToDate"
    dfn = lin.resource_dfn_list_raise(filter_by_resource_definitions=[rd],
                                      query_volume_definitions=True).resource_definitions
    assert dfn[0].resource_group_name == rg
    assert dfn[0].volume_definitions[0].size == 1024 * 1024


def test_step_by_step_autoplace_and_props(lin):
    rd = unique("vol")
    assert_success(lin.resource_dfn_create(rd))
    assert_success(lin.volume_dfn_create(rd, 2 * 1024 * 1024))
    assert_success(lin.resource_auto_place(rd, 2, storage_pool="thin", replicas_on_different=[ZONE]))
    again = lin.resource_auto_place(rd, 2)
    assert any(code(r.ret_code) == consts.WARN_RSC_ALREADY_DEPLOYED for r in again)
    assert len(lin.resource_list_raise(filter_by_resources=[rd]).resources) == 2

    too_many = lin.resource_auto_place(rd, 5)
    assert any(code(r.ret_code) == consts.FAIL_NOT_ENOUGH_NODES for r in too_many)

    assert_success(lin.resource_dfn_modify(rd, {"Aux/edgebind.dev/uid": "abc"}))
    found = lin.resource_dfn_list_raise(filter_by_props=["Aux/edgebind.dev/uid=abc"]).resource_definitions
    assert [d.name for d in found] == [rd]
    assert_success(lin.resource_dfn_modify(rd, {}, delete_props=["Aux/edgebind.dev/uid"]))
    assert lin.resource_dfn_list_raise(filter_by_props=["Aux/edgebind.dev/uid=abc"]).resource_definitions == []

    bad = lin.resource_dfn_modify(rd, {"Not/Whitelisted": "1"})
    assert any(code(r.ret_code) == consts.FAIL_INVLD_PROP for r in bad)


def test_errors_use_linbit_codes(lin):
    rd = unique("dup")
    assert_success(lin.resource_dfn_create(rd))
    dup = lin.resource_dfn_create(rd.upper())
    assert dup[0].is_error()
    assert code(dup[0].ret_code) == consts.FAIL_EXISTS_RSC_DFN
    assert dup[0].ret_code & consts.MASK_RSC_DFN == consts.MASK_RSC_DFN

    missing = lin.resource_dfn_delete(unique("missing"))
    assert not any(r.is_error() for r in missing)
    assert any(code(r.ret_code) == consts.WARN_NOT_FOUND for r in missing)

    rg_dup = unique("rg")
    assert_success(lin.resource_group_create(rg_dup))
    again = lin.resource_group_create(rg_dup)
    assert code(again[0].ret_code) == consts.FAIL_EXISTS_RSC_GRP


def test_snapshots_restore_and_delete(lin):
    src = unique("src")
    dst = unique("dst")
    assert_success(lin.resource_dfn_create(src))
    assert_success(lin.volume_dfn_create(src, 4096))
    assert_success(lin.resource_auto_place(src, 2))
    assert_success(lin.snapshot_create(None, src, "snap1"))
    snaps = lin.snapshot_dfn_list_raise(filter_by_resources=[src]).snapshots
    assert [s.snapshot_name for s in snaps] == ["snap1"]
    assert "SUCCESSFUL" in snaps[0].flags
    assert len(snaps[0].nodes) == 2

    blocked = lin.resource_dfn_delete(src)
    assert any(code(r.ret_code) == consts.FAIL_EXISTS_SNAPSHOT_DFN for r in blocked)

    assert_success(lin.resource_dfn_create(dst))
    assert_success(lin.snapshot_volume_definition_restore(src, "snap1", dst))
    assert_success(lin.snapshot_resource_restore(None, src, "snap1", dst))
    restored = lin.resource_list_raise(filter_by_resources=[dst]).resources
    assert len(restored) == 2
    twice = lin.snapshot_resource_restore(None, src, "snap1", dst)
    assert any(code(r.ret_code) == consts.FAIL_EXISTS_RSC for r in twice)

    assert_success(lin.snapshot_delete(src, "snap1"))
    assert_success(lin.resource_dfn_delete(src))
    assert lin.resource_dfn_list_raise(filter_by_resource_definitions=[src]).resource_definitions == []


def test_manual_resources_and_deletes(lin):
    rd = unique("man")
    assert_success(lin.resource_dfn_create(rd))
    assert_success(lin.volume_dfn_create(rd, 1024))
    assert_success(lin.resource_create([
        linstor.ResourceData("node-a", rd, storage_pool="thin"),
        linstor.ResourceData("node-d", rd, diskless=True),
    ]))
    rsc = {r.node_name: r for r in lin.resource_list_raise(filter_by_resources=[rd]).resources}
    assert set(rsc) == {"node-a", "node-d"}
    assert "DRBD_DISKLESS" in rsc["node-d"].flags
    # The last diskful replica cannot go while a diskless one is attached.
    refused = lin.resource_delete("node-a", rd)
    assert any(code(r.ret_code) == consts.FAIL_IN_USE for r in refused)
    assert_success(lin.resource_delete("node-d", rd))
    assert_success(lin.resource_delete("node-a", rd))
    gone = lin.resource_delete("node-a", rd)
    assert any(code(r.ret_code) == consts.WARN_NOT_FOUND for r in gone)
    assert_success(lin.volume_dfn_delete(rd, 0))
    assert_success(lin.resource_dfn_delete(rd))


def test_restore_copies_properties_and_needs_the_snapshot_size(lin):
    """Issue 14 items 1 and 4, as LINBIT's client sees them: a restore copies the source's
    resource-definition properties onto the target (overriding its own), and refuses a volume
    definition of another size than the snapshot's (FAIL_INVLD_VLM_SIZE)."""
    src = unique("src")
    dst = unique("dst")
    big = unique("big")
    assert_success(lin.resource_dfn_create(src))
    assert_success(lin.resource_dfn_modify(src, {"Aux/owner": "source", "Aux/only-src": "1"}))
    assert_success(lin.volume_dfn_create(src, 4096))
    assert_success(lin.resource_auto_place(src, 2))
    assert_success(lin.snapshot_create(None, src, "snap1"))

    assert_success(lin.resource_dfn_create(dst))
    assert_success(lin.resource_dfn_modify(dst, {"Aux/owner": "target", "Aux/only-dst": "1"}))
    assert_success(lin.snapshot_volume_definition_restore(src, "snap1", dst))
    assert_success(lin.snapshot_resource_restore(None, src, "snap1", dst))
    props = lin.resource_dfn_list_raise(filter_by_resource_definitions=[dst]).resource_definitions[0].properties
    assert props["Aux/owner"] == "source"
    assert props["Aux/only-src"] == "1"
    assert props["Aux/only-dst"] == "1"

    assert_success(lin.resource_dfn_create(big))
    assert_success(lin.volume_dfn_create(big, 8192))
    refused = lin.snapshot_resource_restore(None, src, "snap1", big)
    assert any(code(r.ret_code) == consts.FAIL_INVLD_VLM_SIZE for r in refused), [str(r) for r in refused]
    assert lin.resource_list_raise(filter_by_resources=[big]).resources == []


def test_property_keys_are_stored_normalised_and_reserved_names_refused(lin):
    """Issue 14 items 6 and 8: empty key segments are dropped as PropsContainer does; `all`
    and `proxy` are reserved resource names."""
    rd = unique("norm")
    assert_success(lin.resource_dfn_create(rd))
    assert_success(lin.resource_dfn_modify(rd, {"Aux/team//a": "1", "Aux/team/b/": "2"}))
    props = lin.resource_dfn_list_raise(filter_by_resource_definitions=[rd]).resource_definitions[0].properties
    assert props.get("Aux/team/a") == "1"
    assert props.get("Aux/team/b") == "2"
    assert "Aux/team//a" not in props
    for name in ["all", "proxy"]:
        replies = lin.resource_dfn_create(name)
        assert any(code(r.ret_code) == consts.FAIL_INVLD_RSC_NAME for r in replies), name
